-- Sequences and the outbox reached through automations: an "enroll" action
-- enrols (sequence_enroll), enrolment fires sequence_enrolled (for the
-- sequence named in trigger_filter), "send_email" queues through the outbox
-- with its suppression rules, "unenroll" removes the enrolment.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('welcome', 'marketing', 'Welcome {{first_name}}', 'Hello {{first_name}}'),
  ('started', 'marketing', 'You started {{data.plan}}', 'x');
INSERT INTO meisa.sequences (name) VALUES ('onboarding'), ('other');
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
SELECT id, 1, 'welcome' FROM meisa.sequences;
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 2, '1 day', 'welcome' FROM meisa.sequences WHERE name = 'onboarding';
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions, position) VALUES
  ('enrol new contacts', 'contact_created', NULL, '[{"enroll": "onboarding"}]', 1),
  ('tag onboarding', 'sequence_enrolled', 'onboarding', '[{"add_tag": "onboarding"}]', 2),
  ('leave on activation', 'tag_added', 'activated', '[{"unenroll": "onboarding"}]', 3),
  ('mail on upgrade', 'custom_event', 'upgraded', '[{"send_email": "started"}]', 4);

SELECT (meisa_upsert('{"email": "ann@example.com", "first_name": "Ann"}'))->>'created' AS created;
SELECT c.email, c.tags, s.name, e.status
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id
  JOIN meisa.sequences s ON s.id = e.sequence_id;
-- enrolment in another sequence does not match the trigger_filter
SELECT meisa_enroll('ann@example.com', 'other') IS NOT NULL AS enrolled_other;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
-- the first step is rendered with the contact's data
SELECT meisa_run_due(now()) AS advanced;
SELECT template_key, subject, text, status FROM meisa.messages ORDER BY id;
-- "send_email" from an event: rendered with the event's properties as data
SELECT meisa_track('upgraded', '{"email": "ann@example.com", "properties": {"plan": "pro"}}') > 0 AS tracked;
SELECT template_key, subject, status, automation_id IS NOT NULL AS from_automation
  FROM meisa.messages WHERE template_key = 'started';
-- ... and suppressed like any marketing mail once the contact unsubscribed
UPDATE meisa.contacts SET subscribed = false WHERE email = 'ann@example.com';
SELECT meisa_track('upgraded', '{"email": "ann@example.com", "properties": {"plan": "team"}}') > 0 AS tracked;
SELECT template_key, subject, status, last_error FROM meisa.messages WHERE template_key = 'started' ORDER BY id;
-- "unenroll" from a tag
SELECT meisa_add_tag('ann@example.com', 'activated');
SELECT s.name, e.status, e.exit_reason FROM meisa.enrollments e
  JOIN meisa.sequences s ON s.id = e.sequence_id ORDER BY s.name;
