-- Every trigger fires from every path that causes it: the API functions,
-- another automation's actions and plain SQL DML on meisa.contacts;
-- trigger_filter restricts tag, event and sequence triggers; only enabled
-- automations run, in position order; the rule cache follows changes.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DROP SCHEMA IF EXISTS t52 CASCADE;
CREATE SCHEMA t52;
RESET client_min_messages;
SET search_path = t52, public;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('tips', 'marketing', 'Tips', 'Hi');
INSERT INTO meisa.sequences (name) VALUES ('welcome'), ('other');
INSERT INTO meisa.sequence_steps (sequence_id, position, template, delay)
  SELECT id, 1, 'tips', '1 day' FROM meisa.sequences;

-- one observer automation per trigger; each records a run
INSERT INTO meisa.automations (name, trigger, trigger_filter, conditions, actions, position) VALUES
  ('on created',   'contact_created',   NULL, NULL, '[{"set_field": {"custom_fields.seen": true}}]', 1),
  ('on plan',      'contact_updated',   NULL, '{"field": "custom_fields.plan", "changed": true}', '[{"add_tag": "plan-changed"}]', 2),
  ('on any tag',   'tag_added',         NULL, NULL, '[{"set_field": {"custom_fields.last_tag_seen": true}}]', 3),
  ('on vip',       'tag_added',         'vip', NULL, '[{"enroll": "welcome"}]', 4),
  ('on untag vip', 'tag_removed',       'vip', NULL, '[{"unenroll": "welcome"}]', 5),
  ('on event',     'custom_event',      'signed_in', '{"event": "properties.device", "eq": "ios"}', '[{"add_tag": "ios"}]', 6),
  ('on welcome',   'sequence_enrolled', 'welcome', NULL, '[{"add_tag": "welcomed"}]', 7),
  ('disabled',     'contact_updated',   NULL, NULL, '[{"add_tag": "never"}]', 8);
UPDATE meisa.automations SET enabled = false WHERE name = 'disabled';

CREATE VIEW runs AS
  SELECT r.id, a.name, c.email, r.trigger, r.status, r.actions_done, r.depth, r.error
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id
    LEFT JOIN meisa.contacts c ON c.id = r.contact_id;
CREATE TABLE seen (id bigint);
CREATE FUNCTION new_runs() RETURNS SETOF runs LANGUAGE sql AS $$
  WITH shown AS (SELECT coalesce(max(id), 0) AS upto FROM seen)
  SELECT r.* FROM runs r, shown WHERE r.id > shown.upto ORDER BY r.id $$;
CREATE FUNCTION mark() RETURNS void LANGUAGE sql AS $$ INSERT INTO seen SELECT max(id) FROM meisa.automation_runs $$;

-- contact_created from the API (and the tag_added it causes)
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
-- contact_created from plain SQL
INSERT INTO meisa.contacts (email) VALUES ('Bob@Example.com');
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
-- contact_created from meisa_track (unknown email), then custom_event
SELECT meisa_track('signed_in', '{"email": "cat@example.com", "properties": {"device": "ios"}}') > 0 AS tracked;
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
-- custom_event: filter by event name and property condition
SELECT meisa_track('signed_in', '{"email": "ann@example.com", "properties": {"device": "android"}}') > 0 AS other_device;
SELECT meisa_track('signed_out', '{"email": "ann@example.com", "properties": {"device": "ios"}}') > 0 AS other_event;
SELECT name, email, trigger, status FROM new_runs();
SELECT meisa_track('signed_in', '{"email": "ann@example.com", "properties": {"device": "ios"}}') > 0 AS matching;
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();

-- contact_updated from the API, from plain SQL; disabled automations never run
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS changed;
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
UPDATE meisa.contacts SET custom_fields = custom_fields || '{"plan": "team"}' WHERE email = 'bob@example.com';
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
-- an unchanged payload fires nothing
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS unchanged;
UPDATE meisa.contacts SET custom_fields = custom_fields WHERE email = 'ann@example.com';
SELECT count(*) AS no_runs FROM new_runs();

-- tag_added (filtered "vip") from the API, then sequence_enrolled from the enroll action
SELECT meisa_add_tag('ann@example.com', 'vip');
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
-- tag_removed from the API unenrols
SELECT meisa_remove_tag('ann@example.com', 'vip');
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
SELECT s.name, e.status FROM meisa.enrollments e JOIN meisa.sequences s ON s.id = e.sequence_id
 JOIN meisa.contacts c ON c.id = e.contact_id WHERE c.email = 'ann@example.com' ORDER BY e.id;
-- tag_added / tag_removed from plain SQL
UPDATE meisa.contacts SET tags = tags || '{vip}' WHERE email = 'bob@example.com';
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
UPDATE meisa.contacts SET tags = '{}' WHERE email = 'bob@example.com';
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
-- tag_removed from another automation's action
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('demote', 'tag_added', 'demote', '[{"remove_tag": "vip"}]');
UPDATE meisa.contacts SET tags = tags || '{vip}' WHERE email = 'bob@example.com';
SELECT mark();
SELECT meisa_add_tag('bob@example.com', 'demote');
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
DELETE FROM meisa.automations WHERE name = 'demote';
-- tag_added from meisa_upsert tag_names: one firing per tag
SELECT meisa_upsert('{"email": "dan@example.com", "tag_names": ["a", "vip"]}') ->> 'created' AS created;
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();
-- sequence_enrolled from the API; the filter keeps other sequences out
SELECT meisa_enroll('cat@example.com', 'other') > 0 AS enrolled_other;
SELECT count(*) AS no_runs FROM new_runs();
SELECT meisa_enroll('cat@example.com', 'welcome') > 0 AS enrolled_welcome;
SELECT name, email, trigger, status, actions_done, depth FROM new_runs();
SELECT mark();

-- the rule cache follows changes of meisa.automations in this session
UPDATE meisa.automations SET enabled = true WHERE name = 'disabled';
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann"}') -> 'changed' AS changed;
SELECT name, email, trigger, status FROM new_runs() WHERE name = 'disabled';
SELECT mark();
UPDATE meisa.automations SET conditions = '{"field": "first_name", "changed_to": "Annie"}' WHERE name = 'disabled';
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann B"}') -> 'changed' AS changed;
SELECT count(*) AS not_matched FROM new_runs() WHERE name = 'disabled';
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Annie"}') -> 'changed' AS changed;
SELECT name, email, trigger, status FROM new_runs() WHERE name = 'disabled';
SELECT mark();
DELETE FROM meisa.automations WHERE name = 'disabled';
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann"}') -> 'changed' AS changed;
SELECT count(*) AS deleted_not_run FROM new_runs() WHERE name = 'disabled';
-- a rolled-back change of the rules is forgotten too
BEGIN;
UPDATE meisa.automations SET enabled = false;
ROLLBACK;
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "free"}}') -> 'changed' AS changed;
SELECT name, email, trigger, status FROM new_runs();
SELECT mark();
-- creation fires contact_created only (the "on plan" rule is contact_updated)
UPDATE meisa.automations SET position = -1 WHERE name = 'on plan';
SELECT meisa_upsert('{"email": "eve@example.com", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT name, trigger, depth FROM new_runs();
SELECT mark();
-- automations of one trigger run in position order
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions, position) VALUES
  ('second', 'tag_added', 'order', '[{"set_field": {"custom_fields.second": true}}]', 20),
  ('first', 'tag_added', 'order', '[{"set_field": {"custom_fields.first": true}}]', 10);
SELECT meisa_add_tag('eve@example.com', 'order');
SELECT name, trigger, depth FROM new_runs() WHERE name <> 'on any tag';
SELECT count(*) AS failed_runs FROM runs WHERE status = 'failed';
-- plain SQL: INSERT ... ON CONFLICT DO UPDATE and a multi-row UPDATE fire per contact
SELECT mark();
INSERT INTO meisa.contacts (email, custom_fields) VALUES ('eve@example.com', '{"plan": "team"}'), ('fay@example.com', '{}')
  ON CONFLICT (email) DO UPDATE SET custom_fields = meisa.contacts.custom_fields || excluded.custom_fields;
SELECT name, email, trigger, depth FROM new_runs() WHERE name <> 'on any tag' ORDER BY email, name;
SELECT mark();
UPDATE meisa.contacts SET custom_fields = custom_fields || '{"plan": "enterprise"}' WHERE email IN ('ann@example.com', 'bob@example.com');
SELECT name, email, trigger, depth FROM new_runs() WHERE name <> 'on any tag' ORDER BY email, name;
