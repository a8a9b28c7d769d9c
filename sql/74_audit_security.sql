-- Regression tests of the security audit (issue 6, items 5 and 6):
--  1. meisa.smtp_url refuses credentials (user:password@): unlike the file
--     meisa.smtp_password_file names it is readable by every role.
--  2. meisa--1.1--1.2.sql: the views are bound to pg_catalog functions even
--     when a role with CREATE on the install schema planted count(bigint) and
--     lag(integer, integer, integer) there before CREATE EXTENSION (1.0 calls
--     them unqualified: the planted ones were exact matches), and
--  3. every view is a security_barrier view: a reader's leaky function in
--     WHERE no longer sees rows the view filters out.
--  4. the default version (1.3): a fresh CREATE EXTENSION meisa (from
--     meisa--1.3.sql) and the update from 1.0 (the direct meisa--1.0--1.2.sql,
--     then meisa--1.2--1.3.sql) bind no planted function, and
--     automation_stats has last_run.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
DROP ROLE IF EXISTS regress_a6_evil;
DROP ROLE IF EXISTS regress_a6_reader;
RESET client_min_messages;

-- 2. -------------------------------------------------------------------
CREATE ROLE regress_a6_evil;
GRANT CREATE ON SCHEMA public TO regress_a6_evil;
SET ROLE regress_a6_evil;
CREATE TABLE public.a6_hits (what text, who text);
GRANT INSERT ON public.a6_hits TO PUBLIC;
CREATE FUNCTION public.a6_count_sf(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.a6_hits VALUES ('count(bigint)', current_user);
  RETURN $1 OPERATOR(pg_catalog.+) 1;
END $$;
CREATE AGGREGATE public.count(bigint) (SFUNC = public.a6_count_sf, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION public.lag(integer, integer, integer) RETURNS integer LANGUAGE plpgsql WINDOW AS $$
BEGIN
  INSERT INTO public.a6_hits VALUES ('lag(integer, integer, integer)', current_user);
  RETURN 0;
END $$;
RESET ROLE;
-- 1.1 explicitly (1.0 + meisa--1.0--1.1.sql): the planted functions are
-- exact matches for 1.0's unqualified count(r.id) and lag(...)
CREATE EXTENSION meisa VERSION '1.1';

-- 1. -------------------------------------------------------------------
-- (after CREATE EXTENSION: the library is loaded, the setting is defined)
SET meisa.smtp_url = 'smtp://bob:hunter2@mail.example.com:587';
SET meisa.smtp_url = 'smtps://bob@mail.example.com';
SET meisa.smtp_url = 'smtp://mail.example.com:587/acme@example.com';  -- '@' in the path (EHLO name) is not a credential
SHOW meisa.smtp_url;
SET meisa.smtp_url = 'smtp://mail.example.com:587';
SHOW meisa.smtp_url;
RESET meisa.smtp_url;


-- 2. (continued) -----------------------------------------------------
CREATE VIEW a6_view_functions AS
SELECT c.relname AS view, p.oid::regprocedure AS function
  FROM pg_depend d
  JOIN pg_rewrite rw ON rw.oid = d.objid
  JOIN pg_class c ON c.oid = rw.ev_class
  JOIN pg_proc p ON p.oid = d.refobjid
 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_proc'::regclass
   AND p.pronamespace <> 'pg_catalog'::regnamespace
   AND c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = 'meisa');
-- 1.1: the planted functions are part of the views
SELECT view, function FROM a6_view_functions ORDER BY 1;
SELECT relname, relacl FROM pg_class WHERE relnamespace = 'meisa'::regnamespace AND relkind = 'v' ORDER BY 1;
CREATE TEMP TABLE a6_acl_11 AS
  SELECT relname, relacl::text AS acl FROM pg_class WHERE relnamespace = 'meisa'::regnamespace AND relkind = 'v';
ALTER EXTENSION meisa UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
-- 1.2: only pg_catalog functions
SELECT view, function FROM a6_view_functions ORDER BY 1;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('a6_tpl', 'marketing', 'S', 'T');
INSERT INTO meisa.sequences (name) VALUES ('a6_seq');
INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template) SELECT id, 2, '1 day', 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a6_rule', 'contact_created', '[{"enroll": "a6_seq"}]');
SELECT meisa_upsert('{"email": "a6@example.com"}') ->> 'created' AS created;
SELECT name, matched, done FROM meisa.automation_stats;
SELECT sequence, position, entered, active, sent, completed FROM meisa.sequence_funnel ORDER BY position;
SELECT count(*) AS planted_functions_ran FROM public.a6_hits;
-- same columns and ACLs as 1.1, and every view a security_barrier view
SELECT c.relname, c.reloptions, c.relacl::text = a.acl AS same_acl
  FROM pg_class c JOIN a6_acl_11 a USING (relname)
 WHERE c.relnamespace = 'meisa'::regnamespace AND c.relkind = 'v' ORDER BY 1;

-- 3. -------------------------------------------------------------------
-- A bounce is activity that meisa.contact_activity does not show.
SELECT meisa_record_bounce('a6@example.com', 'soft', 'mailbox full (private detail)');
CREATE ROLE regress_a6_reader IN ROLE meisa_reader;
SET ROLE regress_a6_reader;
CREATE TEMP TABLE a6_seen (detail jsonb);
CREATE FUNCTION pg_temp.a6_leak(jsonb) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
  INSERT INTO a6_seen VALUES ($1);
  RETURN true;
END $$;
SELECT count(*) AS visible_rows FROM meisa.contact_activity WHERE kind = 'created' AND pg_temp.a6_leak(detail);
-- the leaky function saw only the rows the view returns: no bounce detail
SELECT count(*) AS rows_seen_by_leak, count(*) FILTER (WHERE detail ? 'detail') AS bounce_details_seen FROM a6_seen;
-- leakproof comparisons still reach the scan (no slower polling by contact)
EXPLAIN (COSTS OFF) SELECT email FROM meisa.unsubscribed_emails WHERE email = 'a6@example.com';
RESET ROLE;
DROP TABLE a6_seen;
DROP FUNCTION pg_temp.a6_leak(jsonb);

-- 4. -------------------------------------------------------------------
-- the planted count(bigint) and lag(integer, integer, integer) are still in
-- public: a fresh install of 1.3 binds only pg_catalog functions
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
TRUNCATE public.a6_hits;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT view, function FROM a6_view_functions ORDER BY 1;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('a6_tpl', 'marketing', 'S', 'T');
INSERT INTO meisa.sequences (name) VALUES ('a6_seq');
INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a6_rule', 'contact_created', '[{"enroll": "a6_seq"}]');
SELECT meisa_upsert('{"email": "a6@example.com"}') ->> 'created' AS created;
SELECT name, matched, done, last_run = last_run_at AS last_run_is_last_run_at, last_run IS NOT NULL AS has_last_run
  FROM meisa.automation_stats;
SELECT sequence, position, entered, active, sent, completed FROM meisa.sequence_funnel ORDER BY position;
SELECT count(*) AS planted_functions_ran FROM public.a6_hits;
SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'meisa'::regnamespace AND relkind = 'v' ORDER BY 1;
-- 1.0 binds them; the update from 1.0 (the shortest path: the direct
-- 1.0 -> 1.2, then 1.2 -> 1.3) re-binds the views to pg_catalog
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
CREATE EXTENSION meisa VERSION '1.0';
SELECT view, function FROM a6_view_functions ORDER BY 1;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('a6_tpl', 'marketing', 'S', 'T');
INSERT INTO meisa.sequences (name) VALUES ('a6_seq');
INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a6_rule', 'contact_created', '[{"enroll": "a6_seq"}]');
SELECT meisa_upsert('{"email": "a6@example.com"}') ->> 'created' AS created;
TRUNCATE public.a6_hits;
SELECT name, matched FROM meisa.automation_stats;
SELECT count(*) AS funnel_rows FROM meisa.sequence_funnel;
-- (in 1.0 the planted functions run when the views are read)
SELECT what, count(*) FROM public.a6_hits GROUP BY 1 ORDER BY 1;
SELECT path FROM pg_extension_update_paths('meisa') WHERE source = '1.0' AND target = '1.3';
ALTER EXTENSION meisa UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT view, function FROM a6_view_functions ORDER BY 1;
TRUNCATE public.a6_hits;
SELECT name, matched, done, last_run = last_run_at AS last_run_is_last_run_at FROM meisa.automation_stats;
SELECT sequence, position, entered, active, sent, completed FROM meisa.sequence_funnel ORDER BY position;
SELECT count(*) AS planted_functions_ran FROM public.a6_hits;

-- clean up (cluster-wide roles)
SET client_min_messages = warning;
DROP VIEW a6_view_functions;
DROP EXTENSION meisa CASCADE;
DROP AGGREGATE public.count(bigint);
DROP FUNCTION public.a6_count_sf(bigint, bigint), public.lag(integer, integer, integer);
DROP TABLE public.a6_hits;
REVOKE CREATE ON SCHEMA public FROM regress_a6_evil;
DROP ROLE regress_a6_evil, regress_a6_reader;
RESET client_min_messages;
