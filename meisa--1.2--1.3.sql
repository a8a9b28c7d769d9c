\echo Use "ALTER EXTENSION meisa UPDATE TO '1.3'" to load this file. \quit
-- meisa 1.2 -> 1.3 upgrade script.  ALTER EXTENSION meisa UPDATE takes it
-- from 1.2, after meisa--1.0--1.2.sql from 1.0 and after meisa--1.1--1.2.sql
-- from 1.1; every path must end in the catalog of a fresh 1.3 install
-- (meisa--1.3.sql; test/hardening/upgrade.sh compares them).  What 1.3
-- changes is listed per section below.
-- Everything below is schema-qualified (operators as OPERATOR(pg_catalog.=),
-- functions as pg_catalog.f(...), casts to pg_catalog types): this script,
-- like every extension script, runs as superuser with the install schema in
-- search_path, and pg_catalog wins only for exact matches.
