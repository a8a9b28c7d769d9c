-- Restoring a dump (pg_dump/pg_restore set check_function_bodies = false):
-- automations may then name sequences and templates that are restored after
-- them; the rule language itself is still checked.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
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

-- Foreign keys in restore mode.  pg_restore -j loads the data of meisa's
-- tables in any order (pg_dump records no dependency between the data of an
-- extension's tables), so a restored row may name a contact, automation,
-- sequence or template that another worker has not loaded yet.  In restore
-- mode an INSERT or COPY into a table with a foreign key runs with
-- session_replication_role = replica for that statement; every other write
-- is checked.
-- normally refused (foreign key)
INSERT INTO meisa.events (contact_id, name) VALUES (5000, 'signup');
SET check_function_bodies = false;
-- a worker's COPY of automation_runs before automations and contacts
COPY meisa.automation_runs (id, automation_id, contact_id, trigger, status, at) FROM stdin;
7001	7000	5000	contact_created	done	2026-01-01 00:00:00+00
7002	7000	\N	contact_created	failed	2026-01-01 00:00:01+00
\.
INSERT INTO meisa.events (id, contact_id, name, occurred_at, created_at)
  VALUES (6001, 5000, 'signup', '2026-01-01', '2026-01-01');
INSERT INTO meisa.sequence_steps (id, sequence_id, position, template) VALUES (8001, 8000, 1, 'later_tpl');
-- the switch ends with the statement
SHOW session_replication_role;
RESET check_function_bodies;
-- rows whose referenced rows are not there (yet) are reported
SELECT invariant, violations, example FROM meisa.check_invariants() ORDER BY 1;
-- the referenced rows arrive, as the other workers load them
SET check_function_bodies = false;
INSERT INTO meisa.contacts (id, email, created_at, updated_at) VALUES (5000, 'later@example.com', '2026-01-01', '2026-01-01');
INSERT INTO meisa.automations (id, name, trigger, actions) VALUES (7000, 'later_rule', 'contact_updated', '[{"add_tag": "x"}]');
INSERT INTO meisa.sequences (id, name) VALUES (8000, 'later_seq');
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('later_tpl', 'marketing', 'S', 'T');
RESET check_function_bodies;
SELECT invariant, violations, example FROM meisa.check_invariants() ORDER BY 1;
SELECT r.id, a.name, c.email, r.status FROM meisa.automation_runs r
  JOIN meisa.automations a ON a.id = r.automation_id LEFT JOIN meisa.contacts c ON c.id = r.contact_id
 WHERE r.id > 7000 ORDER BY r.id;

-- later statements of the same transaction are checked again
BEGIN;
SET LOCAL check_function_bodies = false;
INSERT INTO meisa.notifications (contact_id, channel, message) VALUES (5001, 'ops', 'restored');
SET LOCAL check_function_bodies = true;
SHOW session_replication_role;
INSERT INTO meisa.notifications (contact_id, channel, message) VALUES (5002, 'ops', 'live');
ROLLBACK;
-- a restore-mode statement that fails: the switch ends with its subtransaction
BEGIN;
SET LOCAL check_function_bodies = false;
SAVEPOINT s;
INSERT INTO meisa.events (contact_id, name) VALUES (5001, NULL);
ROLLBACK TO s;
SHOW session_replication_role;
SET LOCAL check_function_bodies = true;
INSERT INTO meisa.events (contact_id, name) VALUES (5001, 'checked');
ROLLBACK;
SHOW session_replication_role;
-- a session in replica mode already stays there (the end trigger only undoes
-- its own switch)
SET session_replication_role = replica;
SET check_function_bodies = false;
INSERT INTO meisa.notifications (id, contact_id, channel, message) VALUES (9001, 5000, 'ops', 'replica');
SHOW session_replication_role;
RESET check_function_bodies;
RESET session_replication_role;
-- for a role that is not a superuser, check_function_bodies = off changes nothing
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_restore_admin;
RESET client_min_messages;
CREATE ROLE regress_restore_admin IN ROLE meisa_admin;
SET ROLE regress_restore_admin;
SET check_function_bodies = false;
INSERT INTO meisa.sequence_steps (sequence_id, position, template) VALUES (8000, 2, 'no_such_template');
RESET check_function_bodies;
RESET ROLE;
DROP ROLE regress_restore_admin;
SELECT count(*) AS steps FROM meisa.sequence_steps;

-- every meisa table with a foreign key has both restore triggers (the end
-- trigger enabled REPLICA), and every foreign key its invariant
SELECT c.relname AS lacks_restore_triggers FROM pg_class c
 WHERE c.relnamespace = 'meisa'::regnamespace AND c.relkind = 'r'
   AND EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'f')
   AND (NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = c.relname || '_restore_load'
                     AND t.tgfoid = 'meisa.restore_load()'::regprocedure AND t.tgtype = 6 AND t.tgenabled = 'O')
     OR NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = c.relname || '_restore_load_end'
                     AND t.tgfoid = 'meisa.restore_load()'::regprocedure AND t.tgtype = 4 AND t.tgenabled = 'R'))
 ORDER BY 1;
SELECT tgrelid::regclass AS table_with_restore_triggers, count(*) FROM pg_trigger
 WHERE tgfoid = 'meisa.restore_load()'::regprocedure GROUP BY 1 ORDER BY tgrelid::regclass::text;
SELECT k.conname AS foreign_key_without_invariant FROM pg_constraint k
 WHERE k.connamespace = 'meisa'::regnamespace AND k.contype = 'f'
   AND strpos((SELECT prosrc FROM pg_proc WHERE oid = 'meisa.check_invariants()'::regprocedure), '(' || k.conname || ')') = 0
 ORDER BY 1;
-- meisa.restore_load() is a statement trigger for INSERT only
CREATE TEMP TABLE restore_misuse (x int);
CREATE TRIGGER restore_misuse_row BEFORE INSERT ON restore_misuse FOR EACH ROW EXECUTE FUNCTION meisa.restore_load();
INSERT INTO restore_misuse VALUES (1);
DROP TABLE restore_misuse;

-- Restore mode is for restores only: a non-superuser session that turns
-- check_function_bodies off (migration tools and SQL-file loaders do) must
-- not switch off change tracking and automations for its API calls.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_meisa_fz_app;
RESET client_min_messages;
CREATE ROLE regress_meisa_fz_app IN ROLE meisa_app;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('fz_created', 'contact_created', '[{"add_tag": "tracked"}]');
SET ROLE regress_meisa_fz_app;
SET check_function_bodies = false;
SELECT meisa_upsert('{"email": "  Bodies@Example.com ", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT meisa_add_tag('bodies@example.com', 'vip') IS NOT NULL AS tagged;
RESET check_function_bodies;
RESET ROLE;
SELECT email, tags FROM meisa.contacts WHERE email = 'bodies@example.com';
SELECT a.kind FROM meisa.activity a JOIN meisa.contacts c ON c.id = a.contact_id
 WHERE c.email = 'bodies@example.com' ORDER BY a.id;
DROP ROLE regress_meisa_fz_app;
