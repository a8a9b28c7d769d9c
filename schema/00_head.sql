-- meisa 1.0 install script, assembled by the Makefile from schema/*.sql
-- (one part per concern; parts are concatenated in file-name order).
\echo Use "CREATE EXTENSION meisa" to load this file. \quit

-- Data, views and internal functions live in schema meisa; the application
-- API (meisa_*) lives in the schema the extension is installed into.
CREATE SCHEMA meisa;
COMMENT ON SCHEMA meisa IS 'meisa: contacts, automations, sequences, templates and the outbox';

-- The three privilege sets (DESIGN §7), as NOLOGIN roles the DBA grants to
-- roles of their choice: GRANT meisa_app TO my_app;  Roles are cluster-wide,
-- so they are created only when missing and survive DROP EXTENSION.
DO $roles$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'meisa_app') THEN
    CREATE ROLE meisa_app NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'meisa_admin') THEN
    CREATE ROLE meisa_admin NOLOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'meisa_reader') THEN
    CREATE ROLE meisa_reader NOLOGIN;
  END IF;
END
$roles$;
