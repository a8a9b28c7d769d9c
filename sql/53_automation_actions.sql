-- Every action: add_tag, remove_tag, set_field (null removes), enroll,
-- unenroll, send_email (marketing, suppression applies), notify and
-- unsubscribe, run in order; actions that change nothing write nothing.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DROP SCHEMA IF EXISTS t53 CASCADE;
CREATE SCHEMA t53;
RESET client_min_messages;
SET search_path = t53, public;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('tips', 'marketing', 'Tips for {{first_name}}', 'Try {{data.feature}}, {{first_name}} ({{custom_fields.plan}})');
INSERT INTO meisa.sequences (name) VALUES ('welcome');
INSERT INTO meisa.sequence_steps (sequence_id, position, template, delay)
  SELECT id, 1, 'tips', '1 day' FROM meisa.sequences;

CREATE FUNCTION contact(e text) RETURNS TABLE (tags text[], custom_fields jsonb, subscribed boolean, unsubscribe_reason text)
  LANGUAGE sql AS $$ SELECT tags, custom_fields, subscribed, unsubscribe_reason FROM meisa.contacts WHERE email = e $$;
CREATE FUNCTION runs() RETURNS TABLE (name text, trigger text, status text, actions_done int, depth int, error text)
  LANGUAGE sql AS $$ SELECT a.name, r.trigger, r.status, r.actions_done, r.depth, r.error
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id $$;

SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann", "custom_fields": {"plan": "free", "gone": 1}, "tag_names": ["old"]}') ->> 'id' AS ann;

-- add_tag, remove_tag, set_field in one automation, in order
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('tags and fields', 'tag_added', 'go',
   '[{"add_tag": "new"}, {"remove_tag": "old"}, {"remove_tag": "go"},
     {"set_field": {"custom_fields.plan": "pro", "custom_fields.seats": 5, "custom_fields.trial": false, "custom_fields.gone": null}}]');
SELECT meisa_add_tag('ann@example.com', 'go');
SELECT * FROM contact('ann@example.com');
SELECT * FROM runs();
-- the same again changes nothing: no activity row is written by the actions
SELECT count(*) AS activity_before FROM meisa.activity \gset
SELECT meisa_add_tag('ann@example.com', 'go');
SELECT * FROM contact('ann@example.com');
SELECT count(*) - :activity_before AS activity_rows FROM meisa.activity;
-- activity: add go, remove go (the actions), nothing for add new / remove old / set_field
SELECT kind, detail FROM meisa.activity ORDER BY id DESC LIMIT 2;

-- enroll, then enroll again (already active: nothing), unenroll, unenroll again
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('enrol', 'tag_added', 'enrol', '[{"enroll": "welcome"}, {"enroll": "welcome"}]'),
  ('unenrol', 'tag_added', 'unenrol', '[{"unenroll": "welcome"}, {"unenroll": "welcome"}]');
SELECT meisa_add_tag('ann@example.com', 'enrol');
SELECT e.status, e.current_step, e.next_run_at > now() AS scheduled FROM meisa.enrollments e ORDER BY id;
SELECT meisa_add_tag('ann@example.com', 'unenrol');
SELECT e.status FROM meisa.enrollments e ORDER BY id;

-- send_email: a marketing message rendered with the contact and the event
-- properties as "data", tagged with the automation
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('tips', 'custom_event', 'feature_activated', '[{"send_email": "tips"}]');
SELECT meisa_track('feature_activated', '{"email": "ann@example.com", "properties": {"feature": "export"}}') > 0 AS tracked;
SELECT m.to_email, m.kind, m.template_key, m.subject, m.text, m.status,
       m.automation_id = (SELECT id FROM meisa.automations WHERE name = 'tips') AS from_automation
  FROM meisa.messages m ORDER BY id;

-- notify: a row in meisa.notifications with the rendered message
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('notify', 'custom_event', 'upgraded', '[{"notify": {"channel": "sales", "message": "{{email}} upgraded to {{data.plan}} ({{first_name}})"}}]');
SELECT meisa_track('upgraded', '{"email": "ann@example.com", "properties": {"plan": "team"}}') > 0 AS tracked;
SELECT n.channel, n.message, n.contact_id = c.id AS for_contact FROM meisa.notifications n JOIN meisa.contacts c ON c.email = 'ann@example.com';

-- unsubscribe, then send_email to the unsubscribed contact is suppressed
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('unsubscribe', 'tag_added', 'stop', '[{"unsubscribe": true}, {"unsubscribe": true}]');
SELECT meisa_add_tag('ann@example.com', 'stop');
SELECT * FROM contact('ann@example.com');
SELECT email, reason FROM meisa.unsubscribed_emails;
SELECT meisa_track('feature_activated', '{"email": "ann@example.com", "properties": {"feature": "import"}}') > 0 AS tracked;
SELECT m.template_key, m.status, m.text FROM meisa.messages m ORDER BY id;

SELECT * FROM runs();

-- notify messages are plain text: {{name}} is not HTML-escaped
RESET search_path;
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';
CREATE FUNCTION runs() RETURNS TABLE (name text, trigger text, status text, actions_done int, depth int, error text)
  LANGUAGE sql AS $$ SELECT a.name, r.trigger, r.status, r.actions_done, r.depth, r.error
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id $$;
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('welcome note', 'contact_created',
   '[{"notify": {"channel": "sales", "message": "{{first_name}} <{{email}}> signed up: {{custom_fields.plan}}"}}]'),
  ('event note', 'custom_event',
   '[{"notify": {"channel": "sales", "message": "{{email}} did {{data.what}}"}}]');
SELECT meisa_upsert('{"email": "tom@example.com", "first_name": "Tom & Jerry O''Brien", "custom_fields": {"plan": "a<b>"}}') ->> 'created' AS created;
SELECT meisa_track('quote', '{"email": "tom@example.com", "properties": {"what": "\"this\" & that"}}') > 0 AS tracked;
SELECT channel, message FROM meisa.notifications ORDER BY id;
DELETE FROM meisa.automations;

-- a send_email whose template was switched to transactional after the rule
-- was saved: a failed run whose error says what kind the template is
DELETE FROM meisa.automations;
INSERT INTO meisa.templates (key, kind, subject, html) VALUES ('m2', 'marketing', 'Hi', '<p>hi</p>');
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('send m2', 'contact_updated', '[{"send_email": "m2"}]');
UPDATE meisa.templates SET kind = 'transactional' WHERE key = 'm2';
SELECT meisa_upsert('{"email": "kind@example.com"}') ->> 'created' AS created;
SELECT meisa_upsert('{"email": "kind@example.com", "first_name": "K"}') ->> 'changed' AS changed;
SELECT name, status, error FROM runs() WHERE name = 'send m2';
SELECT count(*) AS messages FROM meisa.messages WHERE template_key = 'm2';

DROP FUNCTION runs();
