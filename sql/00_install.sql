-- The extension installs and drops cleanly, in a database that is not postgres.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
RESET client_min_messages;
CREATE TEMP TABLE roles_before AS SELECT rolname FROM pg_roles;
CREATE EXTENSION meisa;
-- CREATE EXTENSION creates no role (roles are cluster-wide)
SELECT count(*) AS new_roles FROM pg_roles WHERE rolname NOT IN (SELECT rolname FROM roles_before);
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT current_database() <> 'postgres' AS not_postgres_db;
-- tables live in schema meisa
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'meisa' AND c.relkind = 'r' ORDER BY 1;
-- the roles the rest of this suite grants the three privilege sets to
-- (meisa.grant after each CREATE EXTENSION meisa)
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'meisa_app') THEN CREATE ROLE meisa_app NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'meisa_admin') THEN CREATE ROLE meisa_admin NOLOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'meisa_reader') THEN CREATE ROLE meisa_reader NOLOGIN; END IF;
END $$;
DROP EXTENSION meisa;
SELECT count(*) FROM pg_namespace WHERE nspname = 'meisa';
CREATE EXTENSION meisa;

-- CREATE EXTENSION meisa SCHEMA x: the API lives in x, data stays in meisa,
-- and everything (API, triggers, automations) works with x on the path or not
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
CREATE SCHEMA app;
CREATE EXTENSION meisa SCHEMA app;
SELECT p.pronamespace::regnamespace AS schema, count(*) AS api_functions
  FROM pg_proc p WHERE p.proname LIKE 'meisa\_%' GROUP BY 1;
SELECT count(*) AS meisa_tables FROM pg_tables WHERE schemaname = 'meisa';
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
  VALUES ('vip', 'tag_added', 'vip', '[{"add_tag": "seen"}, {"set_field": {"custom_fields.vip": true}}]');
SELECT app.meisa_upsert('{"email": "s@example.com", "tag_names": ["vip"]}')->'changed';
SET search_path = app;
SELECT meisa_add_tag('s@example.com', 'x'), meisa_track('ev', '{"email": "s@example.com"}') IS NOT NULL AS tracked,
       meisa_unsubscribe('s@example.com'), meisa_resubscribe('s@example.com');
RESET search_path;
SELECT email, tags, custom_fields, subscribed FROM meisa.contacts;
SELECT status, count(*) FROM meisa.automation_runs GROUP BY 1;
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
DROP SCHEMA app;
SELECT count(*) AS roles_kept FROM pg_roles WHERE rolname IN ('meisa_app', 'meisa_admin', 'meisa_reader');
CREATE EXTENSION meisa;
