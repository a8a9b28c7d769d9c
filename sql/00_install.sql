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
