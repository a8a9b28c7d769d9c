-- The extension installs and drops cleanly, in a database that is not postgres.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT current_database() <> 'postgres' AS not_postgres_db;
-- tables live in schema meisa
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'meisa' AND c.relkind = 'r' ORDER BY 1;
-- the privilege sets exist
SELECT rolname FROM pg_roles WHERE rolname LIKE 'meisa\_%' ORDER BY 1;
DROP EXTENSION meisa;
SELECT count(*) FROM pg_namespace WHERE nspname = 'meisa';
CREATE EXTENSION meisa;
