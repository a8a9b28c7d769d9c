-- Restoring a dump: pg_dump/pg_restore set check_function_bodies = false, and
-- automations may then name sequences and templates that are restored after
-- them; the rule language itself is still checked.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
\set VERBOSITY terse
-- normally an unknown sequence is refused (42704)
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a', 'contact_created', '[{"enroll": "later"}]');
\echo :LAST_ERROR_SQLSTATE
SET check_function_bodies = false;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a', 'contact_created', '[{"enroll": "later"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('b', 'contact_created', '[{"send_email": "later"}]');
-- a malformed rule is still refused (22023)
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('c', 'contact_created', '[{"enrol": "later"}]');
\echo :LAST_ERROR_SQLSTATE
RESET check_function_bodies;
SELECT name, actions FROM meisa.automations ORDER BY name;
