-- (ACLs compared as sorted lists: the order of entries is not meaningful.)
-- Versions and upgrades: CREATE EXTENSION installs 1.3 (meisa--1.3.sql, one
-- fully schema-qualified script); the update scripts are 1.0 -> 1.1, 1.1 ->
-- 1.2, the direct 1.0 -> 1.2 and 1.2 -> 1.3, so ALTER EXTENSION meisa UPDATE
-- takes 1.0--1.2 + 1.2--1.3 from 1.0 (the shortest path) and 1.1--1.2 +
-- 1.2--1.3 from 1.1.  CREATE EXTENSION meisa VERSION '1.0' -> ALTER
-- EXTENSION meisa UPDATE keeps the data, registers the identity sequences
-- for pg_dump, adds meisa.check_invariants(), and leaves behaviour and
-- privileges as a fresh install has them; so do 1.1 -> UPDATE and 1.2 ->
-- UPDATE.  (test/hardening/upgrade.sh compares the whole catalogs.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;

SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT version FROM pg_available_extension_versions WHERE name = 'meisa' ORDER BY 1;
SELECT source, target, path FROM pg_extension_update_paths('meisa') WHERE path IS NOT NULL ORDER BY 1, 2;

-- The objects and privileges of a fresh install, to compare after the walk.
CREATE TEMP TABLE fresh_objects AS
SELECT pg_describe_object(d.classid, d.objid, 0) AS object
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
 WHERE d.deptype = 'e';
CREATE TEMP TABLE fresh_acl AS
SELECT c.oid::regclass::text AS object, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(c.relacl) i) AS acl
  FROM pg_class c WHERE c.relnamespace = 'meisa'::regnamespace
UNION ALL
SELECT p.oid::regprocedure::text, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(p.proacl) i)
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa';
CREATE TEMP TABLE fresh_config AS
SELECT unnest(extconfig)::regclass::text AS object FROM pg_extension WHERE extname = 'meisa';

-- Walk the chain: install 1.0, write data, update.
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
CREATE EXTENSION meisa VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT to_regprocedure('meisa.check_invariants()') IS NULL AS no_check_invariants_in_1_0;
-- 1.0 registers the tables for pg_dump but not their identity sequences
SELECT count(*) AS sequences_registered_in_1_0
  FROM pg_extension e, unnest(e.extconfig) c
 WHERE e.extname = 'meisa' AND c::regclass IN (SELECT oid FROM pg_class WHERE relkind = 'S');

INSERT INTO meisa.templates (key, kind, subject, text)
VALUES ('up_welcome', 'marketing', 'Welcome {{first_name}}', 'Hello {{first_name}}');
INSERT INTO meisa.automations (name, trigger, actions)
VALUES ('up_tag_new', 'contact_created', '[{"add_tag": "new"}]');
SELECT meisa_upsert('{"email": "before@example.com", "external_id": "u-1", "first_name": "Bea"}') ->> 'created' AS created_in_1_0;

ALTER EXTENSION meisa UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';

-- same objects, privileges and dump registrations as a fresh 1.3 install
SELECT object AS missing_after_update FROM fresh_objects
EXCEPT SELECT pg_describe_object(d.classid, d.objid, 0)
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa' WHERE d.deptype = 'e'
ORDER BY 1;
SELECT pg_describe_object(d.classid, d.objid, 0) AS extra_after_update
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa' WHERE d.deptype = 'e'
EXCEPT SELECT object FROM fresh_objects
ORDER BY 1;
SELECT object, acl AS acl_differs_after_update FROM (
  SELECT c.oid::regclass::text AS object, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(c.relacl) i) AS acl
    FROM pg_class c WHERE c.relnamespace = 'meisa'::regnamespace
  UNION ALL
  SELECT p.oid::regprocedure::text, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(p.proacl) i)
    FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
  EXCEPT SELECT object, acl FROM fresh_acl) x
ORDER BY 1;
SELECT object AS config_differs_after_update FROM (
  (SELECT unnest(extconfig)::regclass::text AS object FROM pg_extension WHERE extname = 'meisa'
   EXCEPT SELECT object FROM fresh_config)
  UNION ALL
  (SELECT object FROM fresh_config
   EXCEPT SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'meisa')) x
ORDER BY 1;

-- 1.1 registers every identity sequence of a registered table
SELECT s.oid::regclass AS identity_sequence,
       s.oid = ANY (e.extconfig) AS registered_for_dump
  FROM pg_class s JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.deptype IN ('i', 'a')
  JOIN pg_class t ON t.oid = d.refobjid, pg_extension e
 WHERE e.extname = 'meisa' AND s.relkind = 'S' AND t.relnamespace = 'meisa'::regnamespace
 ORDER BY s.oid::regclass::text;

-- data written under 1.0 is intact and the API keeps working
SELECT email, external_id, first_name, tags FROM meisa.contacts ORDER BY id;
-- the 'created' activity rows 1.0 stored are gone; meisa.contact_activity
-- derives the same entries (and the tag added by up_tag_new is an update)
SELECT kind, count(*) FROM meisa.activity GROUP BY kind ORDER BY kind;
SELECT kind, detail FROM meisa.contact_activity WHERE kind IN ('created', 'tag_added') ORDER BY kind, detail::text;
SELECT meisa_upsert('{"email": "before@example.com", "first_name": "Beatrice"}') -> 'changed' AS changed_after_update;
SELECT meisa_upsert('{"email": "after@example.com"}') ->> 'created' AS created_after_update;
SELECT email, first_name, tags FROM meisa.contacts ORDER BY id;
SELECT a.name, count(r.*) AS runs FROM meisa.automations a
  LEFT JOIN meisa.automation_runs r ON r.automation_id = a.id AND r.status = 'done'
 GROUP BY a.name ORDER BY 1;

-- meisa.check_invariants(): healthy data has no violations ...
SELECT invariant, violations FROM meisa.check_invariants();
-- ... and a planted violation is reported
INSERT INTO meisa.messages (contact_id, to_email, kind, subject, status, message_id)
SELECT id, email, 'marketing', 'planted', 'sending', '<planted@meisa>' FROM meisa.contacts WHERE email = 'after@example.com';
SELECT invariant, violations FROM meisa.check_invariants();
DELETE FROM meisa.messages WHERE subject = 'planted';

-- privileges after the update: PUBLIC nothing, admin may check invariants
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_meisa_up_admin;
DROP ROLE IF EXISTS regress_meisa_up_app;
RESET client_min_messages;
CREATE ROLE regress_meisa_up_admin IN ROLE meisa_admin;
CREATE ROLE regress_meisa_up_app IN ROLE meisa_app;
SELECT has_function_privilege('public', 'meisa.check_invariants()', 'EXECUTE') AS public_can_check,
       has_function_privilege('regress_meisa_up_admin', 'meisa.check_invariants()', 'EXECUTE') AS admin_can_check,
       has_function_privilege('regress_meisa_up_app', 'meisa.check_invariants()', 'EXECUTE') AS app_can_check;
SET ROLE regress_meisa_up_admin;
SELECT count(*) AS admin_violations FROM meisa.check_invariants();
RESET ROLE;
SET ROLE regress_meisa_up_app;
SELECT count(*) FROM meisa.check_invariants();
SELECT meisa_upsert('{"email": "app-after@example.com"}') ->> 'created' AS app_created_after_update;
RESET ROLE;

-- 1.2: automation_stats has last_run (the same value as last_run_at) as its
-- last column
SELECT attnum, attname, format_type(atttypid, atttypmod) FROM pg_attribute
 WHERE attrelid = 'meisa.automation_stats'::regclass AND attnum > 0 ORDER BY attnum;
SELECT name, last_run = last_run_at AS same, last_run IS NOT NULL AS has_run FROM meisa.automation_stats ORDER BY 1;

-- updating to the current version is a no-op; an unknown version is refused,
-- and so is a downgrade
ALTER EXTENSION meisa UPDATE TO '1.3';
ALTER EXTENSION meisa UPDATE TO '9.9';
ALTER EXTENSION meisa UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'meisa';

-- 1.1 -> UPDATE (meisa--1.1--1.2.sql + meisa--1.2--1.3.sql): the same
-- objects, privileges and dump registrations as a fresh 1.3 install, data kept
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
CREATE EXTENSION meisa VERSION '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT meisa_upsert('{"email": "in-1-1@example.com"}') ->> 'created' AS created_in_1_1;
ALTER EXTENSION meisa UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT count(*) AS objects_differ_after_1_1_update FROM (
  (SELECT object FROM fresh_objects
   EXCEPT SELECT pg_describe_object(d.classid, d.objid, 0)
     FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa' WHERE d.deptype = 'e')
  UNION ALL
  (SELECT pg_describe_object(d.classid, d.objid, 0)
     FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa' WHERE d.deptype = 'e'
   EXCEPT SELECT object FROM fresh_objects)) x;
SELECT object, acl AS acl_differs_after_1_1_update FROM (
  SELECT c.oid::regclass::text AS object, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(c.relacl) i) AS acl
    FROM pg_class c WHERE c.relnamespace = 'meisa'::regnamespace
  UNION ALL
  SELECT p.oid::regprocedure::text, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(p.proacl) i)
    FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
  EXCEPT SELECT object, acl FROM fresh_acl) x
ORDER BY 1;
SELECT count(*) AS config_differs_after_1_1_update FROM (
  (SELECT unnest(extconfig)::regclass::text AS object FROM pg_extension WHERE extname = 'meisa'
   EXCEPT SELECT object FROM fresh_config)
  UNION ALL
  (SELECT object FROM fresh_config
   EXCEPT SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'meisa')) x;
SELECT email FROM meisa.contacts ORDER BY id;
SELECT attname FROM pg_attribute
 WHERE attrelid = 'meisa.automation_stats'::regclass AND attnum > 0 ORDER BY attnum DESC LIMIT 1;

-- 1.2 -> UPDATE (meisa--1.2--1.3.sql): the same objects, privileges and dump
-- registrations as a fresh 1.3 install, data kept
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
CREATE EXTENSION meisa VERSION '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT meisa_upsert('{"email": "in-1-2@example.com"}') ->> 'created' AS created_in_1_2;
ALTER EXTENSION meisa UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT count(*) AS objects_differ_after_1_2_update FROM (
  (SELECT object FROM fresh_objects
   EXCEPT SELECT pg_describe_object(d.classid, d.objid, 0)
     FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa' WHERE d.deptype = 'e')
  UNION ALL
  (SELECT pg_describe_object(d.classid, d.objid, 0)
     FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa' WHERE d.deptype = 'e'
   EXCEPT SELECT object FROM fresh_objects)) x;
SELECT object, acl AS acl_differs_after_1_2_update FROM (
  SELECT c.oid::regclass::text AS object, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(c.relacl) i) AS acl
    FROM pg_class c WHERE c.relnamespace = 'meisa'::regnamespace
  UNION ALL
  SELECT p.oid::regprocedure::text, (SELECT string_agg(i::text, ',' ORDER BY i::text) FROM unnest(p.proacl) i)
    FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
    JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
  EXCEPT SELECT object, acl FROM fresh_acl) x
ORDER BY 1;
SELECT count(*) AS config_differs_after_1_2_update FROM (
  (SELECT unnest(extconfig)::regclass::text AS object FROM pg_extension WHERE extname = 'meisa'
   EXCEPT SELECT object FROM fresh_config)
  UNION ALL
  (SELECT object FROM fresh_config
   EXCEPT SELECT unnest(extconfig)::regclass::text FROM pg_extension WHERE extname = 'meisa')) x;
SELECT email FROM meisa.contacts ORDER BY id;
SELECT attname FROM pg_attribute
 WHERE attrelid = 'meisa.automation_stats'::regclass AND attnum > 0 ORDER BY attnum DESC LIMIT 1;

-- the roles of 1.2 keep every privilege of their set, and those grants are
-- no longer initial privileges of the extension (so pg_dump writes them)
SELECT r.set_name, count(*) FILTER (WHERE NOT meisa.privilege_held(('meisa_' || r.set_name)::regrole,
                                                                      p.object_type, p.object_name, p.privilege)) AS missing
  FROM unnest(ARRAY['app', 'admin', 'reader']) AS r(set_name), meisa.privileges(r.set_name) p
 GROUP BY 1 ORDER BY 1;
SELECT count(*) AS init_privs_naming_legacy_roles
  FROM pg_init_privs ip, aclexplode(ip.initprivs) x
 WHERE x.grantee IN (SELECT oid FROM pg_roles WHERE rolname IN ('meisa_app', 'meisa_admin', 'meisa_reader'));

DROP ROLE regress_meisa_up_admin, regress_meisa_up_app;
