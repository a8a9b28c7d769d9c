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
