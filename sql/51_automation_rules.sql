-- meisa.automations rows are validated on INSERT and UPDATE: an invalid
-- rule is rejected naming the offending part (22023), an unknown sequence
-- or template with 42704; only the admin privilege set manages them.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;
\set VERBOSITY default

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('tips', 'marketing', 'Tips', 'Hi {{first_name}}'),
  ('receipt', 'transactional', 'Receipt', 'Thanks');
INSERT INTO meisa.sequences (name) VALUES ('welcome'), ('onboarding');

-- a valid rule of every trigger, with every action
INSERT INTO meisa.automations (name, trigger, trigger_filter, conditions, actions, position) VALUES
  ('created', 'contact_created', NULL, NULL, '[{"add_tag": "new"}]', 1),
  ('updated', 'contact_updated', NULL, '{"field": "custom_fields.plan", "changed_to": "pro"}',
   '[{"add_tag": "pro"}, {"remove_tag": "free"}, {"set_field": {"custom_fields.tier": 2, "custom_fields.old": null}},
     {"enroll": "welcome"}, {"unenroll": "onboarding"}, {"send_email": "tips"},
     {"notify": {"channel": "sales", "message": "{{email}} is pro"}}, {"unsubscribe": true}]', 2),
  ('tagged', 'tag_added', 'vip', '{"has_tag": "vip"}', '[{"add_tag": "x"}]', 3),
  ('untagged', 'tag_removed', NULL, NULL, '[{"add_tag": "x"}]', 4),
  ('event', 'custom_event', 'feature_activated', '{"event": "properties.feature", "eq": "export"}', '[{"send_email": "tips"}]', 5),
  ('enrolled', 'sequence_enrolled', 'welcome', '{"performed": "login", "count": {"gte": 3}, "within": "7 days"}', '[{"add_tag": "x"}]', 6);
SELECT name, trigger, trigger_filter, enabled, position FROM meisa.automations ORDER BY position;

-- conditions errors point at the part
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('bad', 'contact_updated', '{"all": [{"has_tag": "a"}, {"field": "custom_fields.n", "gte5": 3}]}', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('bad', 'contact_updated', '{"any": [{"field": "custom_fields.plan", "changed_to": {"inn": ["a"]}}]}', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('bad', 'contact_updated', '{"field": "plan", "eq": "pro"}', '[{"add_tag": "x"}]');
-- event property tests only for custom_event automations
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('bad', 'contact_updated', '{"not": {"event": "properties.x", "eq": 1}}', '[{"add_tag": "x"}]');
-- trigger and trigger_filter
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'contact_deleted', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES ('bad', 'contact_updated', 'x', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES ('bad', 'tag_added', '', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES ('bad', 'sequence_enrolled', 'welcom', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('', 'tag_added', '[{"add_tag": "x"}]');
-- actions errors point at the action
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '{"add_tag": "x"}');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"add_tag": "x"}, "y"]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"add_tag": "x", "remove_tag": "y"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"add_tags": "x"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"add_tag": ""}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"remove_tag": 3}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"add_tag": "x"}, {"add_tag": "y"}, {"enroll": "welcom"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"unenroll": "nope"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"send_email": "nope"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"send_email": "receipt"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"set_field": {"email": "a@b.c"}}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"set_field": {"custom_fields.a": [1]}}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"set_field": {}}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"set_field": "custom_fields.a"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"notify": {"channel": "c"}}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"notify": {"message": "m"}}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"notify": {"channel": "c", "message": "m", "x": 1}}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"notify": {"channel": "c", "message": "{{#open}}"}}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', '[{"unsubscribe": false}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('bad', 'tag_added', NULL);
-- UPDATE is validated too, and keeps updated_at current
UPDATE meisa.automations SET conditions = '{"field": "email", "gt": {"x": 1}}' WHERE name = 'created';
UPDATE meisa.automations SET actions = '[{"enroll": "welcom"}]' WHERE name = 'created';
UPDATE meisa.automations SET updated_at = '2000-01-01' WHERE name = 'created';
UPDATE meisa.automations SET enabled = false WHERE name = 'created';
SELECT name, enabled, updated_at > '2000-01-02' AS updated_at_moved FROM meisa.automations WHERE name = 'created';
SELECT count(*) AS rows_unchanged FROM meisa.automations;

-- privileges: admin manages automations, app and reader do not
SET ROLE meisa_admin;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('by admin', 'tag_added', '[{"add_tag": "x"}]');
UPDATE meisa.automations SET position = 9 WHERE name = 'by admin';
DELETE FROM meisa.automations WHERE name = 'by admin';
SELECT meisa.condition_test('{"has_tag": "a"}', '{"tags": ["a"]}') AS admin_can_test;
SELECT count(*) FROM meisa.automation_runs;
RESET ROLE;
SET ROLE meisa_app;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('by app', 'tag_added', '[{"add_tag": "x"}]');
SELECT count(*) FROM meisa.automations;
SELECT meisa.condition_test('{"has_tag": "a"}', '{}');
RESET ROLE;
SET ROLE meisa_reader;
SELECT count(*) FROM meisa.automations;
DELETE FROM meisa.automations;
SELECT count(*) AS stats_rows FROM meisa.automation_stats;
SELECT count(*) AS activity_rows FROM meisa.contact_activity;
RESET ROLE;
SELECT has_function_privilege('public', 'meisa.condition_test(jsonb, jsonb, jsonb, jsonb)', 'EXECUTE') AS public_can_test,
       has_table_privilege('public', 'meisa.automation_stats', 'SELECT') AS public_stats,
       has_table_privilege('public', 'meisa.contact_activity', 'SELECT') AS public_activity,
       has_table_privilege('meisa_app', 'meisa.automation_stats', 'SELECT') AS app_stats;

-- a rule with a span reaching before 4714 BC holds, and the application's
-- write succeeds
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('ancient', 'contact_updated', '{"field": "created_at", "within_last": "10000 years"}',
   '[{"add_tag": "recent"}]'),
  ('ever', 'contact_updated', '{"performed": "login", "within": "10000 years"}',
   '[{"add_tag": "logged-in"}]');
SELECT meisa_track('login', '{"email": "ann@example.com"}') > 0 AS tracked;
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann"}') ->> 'changed' AS changed;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT a.name, r.status, r.error FROM meisa.automation_runs r
  JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id;

-- a condition nested deeper than the stack allows is an invalid rule (22023
-- naming the rule), not a stack overflow error
CREATE FUNCTION pg_temp.try_rule(rule jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN meisa.condition_test(rule, '{"tags": []}')::text;
EXCEPTION WHEN others THEN
  RETURN SQLSTATE || ' ' || regexp_replace(SQLERRM, '[0-9]+ levels', 'N levels');
END $$;
SELECT pg_temp.try_rule((repeat('{"not": ', 100) || '{"has_tag": "x"}' || repeat('}', 100))::jsonb) AS levels_101;
SELECT pg_temp.try_rule((repeat('[', 200) || '{"has_tag": "x"}' || repeat(']', 200))::jsonb) AS levels_201;
SELECT pg_temp.try_rule((repeat('{"not": ', 10000) || '{"has_tag": "x"}' || repeat('}', 10000))::jsonb) AS levels_10001;
DO $$
BEGIN
  INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
    ('deep', 'contact_updated',
     (repeat('{"not": ', 10000) || '{"has_tag": "x"}' || repeat('}', 10000))::jsonb,
     '[{"add_tag": "deep"}]');
EXCEPTION WHEN others THEN
  RAISE NOTICE 'rejected: % %', SQLSTATE, regexp_replace(SQLERRM, '[0-9]+ levels', 'N levels');
END $$;

-- a row stored without validation (a restore with triggers disabled): the
-- rule cache records it as a failing automation and the write succeeds
ALTER TABLE meisa.automations DISABLE TRIGGER automations_validate;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('deep', 'contact_updated',
   (repeat('{"not": ', 10000) || '{"has_tag": "x"}' || repeat('}', 10000))::jsonb,
   '[{"add_tag": "deep"}]');
ALTER TABLE meisa.automations ENABLE TRIGGER automations_validate;
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Anne"}') ->> 'changed' AS changed;
-- and again: the rules are those of the table, not an older cache
SELECT meisa_upsert('{"email": "ann@example.com", "last_name": "Lee"}') ->> 'changed' AS changed;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT r.status, regexp_replace(r.error, '[0-9]+ levels', 'N levels') AS error FROM meisa.automation_runs r
  JOIN meisa.automations a ON a.id = r.automation_id WHERE a.name = 'deep';

-- a write whose automation run fails outside the automation's own
-- subtransaction (here: a trigger on meisa.automation_runs raises), caught
-- by the caller 300 times in one transaction, leaves no rule cache pin
-- behind (there are at most 256 nested pins)
CREATE FUNCTION pg_temp.refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'run refused'; END $$;
BEGIN;
CREATE TRIGGER refuse BEFORE INSERT ON meisa.automation_runs
  FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_run();
DO $$
DECLARE failed int := 0;
BEGIN
  FOR i IN 1..300 LOOP
    BEGIN
      UPDATE meisa.contacts SET first_name = 'try' || i WHERE email = 'ann@example.com';
    EXCEPTION WHEN others THEN
      failed := failed + 1;
    END;
  END LOOP;
  RAISE NOTICE '% writes failed', failed;
END $$;
DROP TRIGGER refuse ON meisa.automation_runs;
UPDATE meisa.contacts SET first_name = 'Ann' WHERE email = 'ann@example.com';
COMMIT;
SELECT first_name FROM meisa.contacts WHERE email = 'ann@example.com';

-- a stored 3000-deep rule: the backend's rule cache stays small (path
-- strings of every level would take about 26 MB for this rule)
DELETE FROM meisa.automations WHERE name = 'deep';
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('deep valid', 'contact_updated',
   (repeat('{"not": ', 3000) || '{"has_tag": "x"}' || repeat('}', 3000))::jsonb,
   '[{"add_tag": "deep-valid"}]');
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann B"}') ->> 'changed' AS changed;
SELECT sum(total_bytes) < 8 * 1024 * 1024 AS under_8mb
  FROM pg_backend_memory_contexts WHERE name = 'meisa automation cache';

-- the trigger_filter of a custom_event automation must be an event name
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('bad filter', 'custom_event', 'feature activated', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('long filter', 'custom_event', repeat('e', 101), '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('good filter', 'custom_event', 'app:feature.activated-v2_x', '[{"add_tag": "x"}]');
-- tags are not event names: any non-empty tag filter is accepted
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('tag filter', 'tag_added', 'paying customer', '[{"add_tag": "x"}]');
SELECT name, trigger_filter FROM meisa.automations ORDER BY id;

-- a time literal without an offset is read in the session time zone when
-- the rule is evaluated, not when the backend compiled and cached it
DELETE FROM meisa.automations;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('same day', 'contact_updated', '{"field": "custom_fields.d", "changed_to": "2024-02-01"}',
   '[{"add_tag": "same-day"}]'),
  ('nine local', 'contact_updated', '{"field": "custom_fields.t", "changed_to": "2024-02-01T09:00"}',
   '[{"add_tag": "nine-local"}]'),
  ('utc literal', 'contact_updated', '{"field": "custom_fields.u", "changed_to": "2024-02-01T00:00:00Z"}',
   '[{"add_tag": "utc-literal"}]');
SELECT meisa_upsert('{"email": "tz@example.com", "custom_fields": {"d": "2020-01-01"}}') ->> 'created' AS created;
-- the rules are compiled and cached under UTC
SELECT meisa_upsert('{"email": "tz@example.com", "custom_fields": {"d": "2020-01-02"}}') ->> 'changed' AS changed;
SET timezone = 'Asia/Tokyo';
SELECT meisa_upsert('{"email": "tz@example.com", "custom_fields": {"d": "2024-02-01", "t": "2024-02-01T00:00:00Z", "u": "2024-02-01T09:00:00+09:00"}}') ->> 'changed' AS changed;
SELECT tags FROM meisa.contacts WHERE email = 'tz@example.com';
SET timezone = 'UTC';
