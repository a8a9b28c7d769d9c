-- Cascades: actions fire further automations; an automation runs at most
-- once per contact per top-level call and depth is capped by
-- meisa.max_cascade_depth; hitting the bound is recorded as 'stopped'.
-- Failure isolation: a failing automation is recorded as 'failed' with the
-- error and its actions are undone; the caller's write and the other
-- automations still commit.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DROP SCHEMA IF EXISTS t54 CASCADE;
CREATE SCHEMA t54;
RESET client_min_messages;
SET search_path = t54, public;

CREATE FUNCTION runs() RETURNS TABLE (name text, trigger text, status text, actions_done int, depth int, error text)
  LANGUAGE sql AS $$ SELECT a.name, r.trigger, r.status, r.actions_done, r.depth, r.error
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.depth, r.id $$;

SHOW meisa.max_cascade_depth;

-- a chain t0 -> t1 -> ... -> t5 through tag_added
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
  SELECT 'chain ' || i, 'tag_added', 't' || i, jsonb_build_array(jsonb_build_object('add_tag', 't' || (i + 1)))
    FROM generate_series(0, 5) i;
SELECT meisa_upsert('{"email": "ann@example.com"}') ->> 'created' AS created;
SELECT meisa_add_tag('ann@example.com', 't0');
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT * FROM runs();

-- the depth cap stops the chain and records where
TRUNCATE meisa.automation_runs;
SET meisa.max_cascade_depth = 3;
SELECT meisa_upsert('{"email": "bob@example.com", "tag_names": ["t0"]}') ->> 'created' AS created;
SELECT tags FROM meisa.contacts WHERE email = 'bob@example.com';
SELECT * FROM runs();
RESET meisa.max_cascade_depth;
SET meisa.max_cascade_depth = 0;
SET meisa.max_cascade_depth = 101;

-- a loop: two automations undoing each other stop after one round each
TRUNCATE meisa.automation_runs;
DELETE FROM meisa.automations;
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('ping', 'tag_added', 'ping', '[{"remove_tag": "ping"}, {"add_tag": "pong"}]'),
  ('pong', 'tag_added', 'pong', '[{"remove_tag": "pong"}, {"add_tag": "ping"}]');
SELECT meisa_add_tag('ann@example.com', 'ping');
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT * FROM runs();
-- a self-trigger: contact_updated that updates the contact again
TRUNCATE meisa.automation_runs;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('self', 'contact_updated', '{"field": "custom_fields.n", "changed": true}', '[{"set_field": {"custom_fields.m": "x"}}, {"add_tag": "self"}]'),
  ('loop', 'contact_updated', NULL, '[{"add_tag": "loop"}, {"remove_tag": "loop"}]');
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"n": 1}}') -> 'changed' AS changed;
SELECT tags, custom_fields FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT * FROM runs();
-- each top-level call starts a new bound
TRUNCATE meisa.automation_runs;
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"n": 2}}') -> 'changed' AS changed;
SELECT name, status, depth FROM runs() WHERE status = 'done';

-- failure isolation: 'broken' enrols into a sequence that was deleted after
-- the rule was saved; its first action is undone; the write and 'fine' commit
TRUNCATE meisa.automation_runs;
DELETE FROM meisa.automations;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('tips', 'marketing', 'Tips', 'Hi');
INSERT INTO meisa.sequences (name) VALUES ('doomed');
INSERT INTO meisa.automations (name, trigger, conditions, actions, position) VALUES
  ('broken', 'contact_updated', '{"field": "custom_fields.plan", "changed_to": "pro"}',
   '[{"add_tag": "half-done"}, {"set_field": {"custom_fields.x": 1}}, {"enroll": "doomed"}]', 1),
  ('fine', 'contact_updated', '{"field": "custom_fields.plan", "changed_to": "pro"}', '[{"add_tag": "fine"}]', 2),
  ('mail', 'contact_updated', '{"field": "custom_fields.plan", "changed_to": "pro"}', '[{"send_email": "tips"}]', 3);
DELETE FROM meisa.sequences WHERE name = 'doomed';
DELETE FROM meisa.templates WHERE key = 'tips';
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS changed;
SELECT tags, custom_fields FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT name, trigger, status, actions_done, depth, error FROM runs();
-- the same from plain SQL inside a transaction that goes on and commits
TRUNCATE meisa.automation_runs;
BEGIN;
UPDATE meisa.contacts SET custom_fields = custom_fields || '{"plan": "pro"}' WHERE email = 'bob@example.com';
SELECT tags, custom_fields FROM meisa.contacts WHERE email = 'bob@example.com';
COMMIT;
SELECT tags, custom_fields FROM meisa.contacts WHERE email = 'bob@example.com';
SELECT name, status, actions_done FROM runs();
-- a rule stored while the validator was bypassed is recorded as failed, not an error
TRUNCATE meisa.automation_runs;
ALTER TABLE meisa.automations DISABLE TRIGGER automations_validate;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('unchecked', 'tag_added', '{"field": "nope", "eq": 1}', '[{"add_tag": "x"}]');
ALTER TABLE meisa.automations ENABLE TRIGGER automations_validate;
SELECT meisa_add_tag('ann@example.com', 'anything');
SELECT name, status, actions_done, error FROM runs();
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
-- an error of the caller's own statement still rolls everything back
TRUNCATE meisa.automation_runs;
BEGIN;
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "free"}}') -> 'changed' AS changed;
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS changed;
SELECT count(*) AS runs_in_transaction FROM meisa.automation_runs;
SELECT 1 / 0;
ROLLBACK;
SELECT count(*) AS runs_after_rollback FROM meisa.automation_runs;
SELECT custom_fields ->> 'plan' AS plan FROM meisa.contacts WHERE email = 'ann@example.com';

-- A failed automation's subtransaction is rolled back, and so is what its
-- cascade remembered: an automation that ran (and was rolled back) inside
-- it is not "already ran" afterwards.  Here a-before's add_tag cascades at
-- depth 1 into b-broken, whose own add_tag cascades at depth 2 into c-after;
-- b-broken then fails (a CR/LF subject), rolling c-after's run back.  c-after
-- still runs (at depth 1) instead of being "stopped" without ever acting.
RESET search_path;
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
CREATE FUNCTION runs() RETURNS TABLE (name text, trigger text, status text, actions_done int, depth int, error text)
  LANGUAGE sql AS $$ SELECT a.name, r.trigger, r.status, r.actions_done, r.depth, r.error
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id $$;
INSERT INTO meisa.templates (key, kind, subject, html) VALUES
  ('crlf', 'marketing', 'Hi {{{custom_fields.s}}}', '<p>x</p>');
INSERT INTO meisa.automations (name, trigger, position, actions) VALUES
  ('a-before', 'contact_updated', 0, '[{"add_tag": "before"}]'),
  ('b-broken', 'contact_updated', 1,
   '[{"add_tag": "partial"}, {"notify": {"channel": "x", "message": "m"}}, {"send_email": "crlf"}]'),
  ('c-after', 'contact_updated', 2, '[{"add_tag": "after"}]');
SELECT meisa_upsert('{"email": "ann@example.com"}') ->> 'created' AS created;
SELECT meisa_upsert(jsonb_build_object('email', 'ann@example.com',
                    'custom_fields', jsonb_build_object('s', E'x\r\nBcc: evil@example.com'))) ->> 'changed' AS changed;
-- the write committed; a-before and c-after acted, b-broken left nothing
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT count(*) AS notifications FROM meisa.notifications;
SELECT count(*) AS messages FROM meisa.messages;
SELECT * FROM runs();
SELECT name, matched, done, failed, stopped FROM meisa.automation_stats ORDER BY automation_id;
DELETE FROM meisa.automations;
DELETE FROM meisa.contacts;
DROP FUNCTION runs();

-- a cascade that only changes the contact is applied before the write: the
-- contact is written once per call (not 4 times), with the same activity
-- rows and runs as one UPDATE per action leaves
CREATE FUNCTION runs() RETURNS TABLE (name text, trigger text, status text, actions_done int, depth int, error text)
  LANGUAGE sql AS $$ SELECT a.name, r.trigger, r.status, r.actions_done, r.depth, r.error
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id $$;
TRUNCATE meisa.automation_runs;
INSERT INTO meisa.automations (name, trigger, conditions, actions, position) VALUES
  ('signed in', 'contact_updated', '{"field": "custom_fields.signin_count", "changed": true}',
   '[{"add_tag": "active"}, {"set_field": {"custom_fields.stage": "active"}}]', 1),
  ('active', 'tag_added', NULL, '[{"set_field": {"custom_fields.seen": true}}]', 2),
  ('staged', 'contact_updated', '{"field": "custom_fields.stage", "changed_to": "active"}',
   '[{"remove_tag": "new"}]', 3);
SELECT meisa_upsert('{"email": "one@example.com", "tag_names": ["new"], "custom_fields": {"signin_count": 0}}') ->> 'created' AS created;
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd AS upd0 FROM pg_stat_user_tables WHERE relid = 'meisa.contacts'::regclass \gset
SELECT meisa_upsert('{"email": "one@example.com", "custom_fields": {"signin_count": 1}}') ->> 'changed' AS changed;
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd - :upd0 AS contact_writes FROM pg_stat_user_tables WHERE relid = 'meisa.contacts'::regclass;
SELECT tags, custom_fields FROM meisa.contacts WHERE email = 'one@example.com';
SELECT * FROM runs();
SELECT kind, detail FROM meisa.activity
 WHERE contact_id = (SELECT id FROM meisa.contacts WHERE email = 'one@example.com') ORDER BY id;
-- an automation acting beyond the contact (here: notify) makes the call's
-- automations run after its write, an UPDATE per action that changes the
-- contact; each such UPDATE applies its own cascade (here: tag_added ->
-- set_field, contact_updated -> remove_tag) in memory: 3 writes, not 4
INSERT INTO meisa.automations (name, trigger, conditions, actions, position) VALUES
  ('tell', 'contact_updated', '{"field": "custom_fields.signin_count", "changed": true}',
   '[{"notify": {"channel": "c", "message": "m"}}]', 0);
TRUNCATE meisa.automation_runs;
UPDATE meisa.contacts SET tags = '{new}', custom_fields = '{"signin_count": 1}' WHERE email = 'one@example.com';
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd AS upd0 FROM pg_stat_user_tables WHERE relid = 'meisa.contacts'::regclass \gset
SELECT meisa_upsert('{"email": "one@example.com", "custom_fields": {"signin_count": 2}}') ->> 'changed' AS changed;
SELECT pg_stat_force_next_flush();
SELECT n_tup_upd - :upd0 AS contact_writes FROM pg_stat_user_tables WHERE relid = 'meisa.contacts'::regclass;
SELECT tags, custom_fields FROM meisa.contacts WHERE email = 'one@example.com';
SELECT * FROM runs();
-- a statement writing many rows: the cascades of its first rows run in
-- memory, the others' after the write (at most 16 wait for their AFTER
-- trigger); every row ends alike
DELETE FROM meisa.automations;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('bulk', 'contact_updated', '{"field": "custom_fields.n", "changed": true}', '[{"add_tag": "bulk"}]');
INSERT INTO meisa.contacts (email) SELECT 'bulk' || i || '@example.com' FROM generate_series(1, 40) i;
UPDATE meisa.contacts SET custom_fields = '{"n": 1}' WHERE email LIKE 'bulk%';
SELECT tags, count(*) FROM meisa.contacts WHERE email LIKE 'bulk%' GROUP BY 1;
SELECT status, depth, count(*) FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id
 WHERE a.name = 'bulk' GROUP BY 1, 2;
SELECT a.kind, count(*) FROM meisa.activity a JOIN meisa.contacts c ON c.id = a.contact_id
 WHERE c.email LIKE 'bulk%' GROUP BY 1;
SELECT count(*) AS tag_added FROM meisa.contact_activity a JOIN meisa.contacts c ON c.id = a.contact_id
 WHERE c.email LIKE 'bulk%' AND a.kind = 'tag_added' AND a.detail = '{"tag": "bulk"}';
DELETE FROM meisa.automations;
DELETE FROM meisa.contacts;
DELETE FROM meisa.notifications;
DROP FUNCTION runs();
