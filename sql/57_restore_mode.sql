-- Restoring a dump (pg_dump/pg_restore set check_function_bodies = false):
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
-- Contacts loaded by a restore keep their dumped values: no normalisation,
-- no activity row, no automation run (those rows are restored as data).
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('tagger', 'contact_created', '[{"add_tag": "new"}]');
SET check_function_bodies = false;
INSERT INTO meisa.contacts (id, email, tags, created_at, updated_at)
  VALUES (41, 'restored@example.com', '{x}', '2026-01-01', '2026-01-02');
RESET check_function_bodies;
SELECT id, email, tags, created_at, updated_at FROM meisa.contacts;
SELECT count(*) AS activity_rows FROM meisa.activity;
SELECT count(*) AS automation_runs FROM meisa.automation_runs;
-- with the check back on, writes are tracked and fire automations again
INSERT INTO meisa.contacts (email) VALUES ('  Live@Example.com ');
SELECT email, tags FROM meisa.contacts WHERE id <> 41;
SELECT kind FROM meisa.activity ORDER BY id;
SELECT count(*) AS automation_runs FROM meisa.automation_runs;
