-- The demo story of docs/messages.md: a new user gets the welcome
-- sequence's first email queued, then a password-reset email.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
COPY (SELECT 'demo-secret') TO PROGRAM 'umask 077 && cat > meisa_regress_key_48';
SET meisa.secret_file = 'meisa_regress_key_48';
SET meisa.unsubscribe_base_url = 'https://acme.example/u/';
-- the growth team: a welcome sequence and a password-reset template
INSERT INTO meisa.templates (key, kind, subject, html, text, "from") VALUES
  ('welcome_1', 'marketing', 'Welcome, {{first_name}}!',
   '<h1>Hi {{first_name}}</h1><p>Your plan: {{custom_fields.plan}}</p>{{> footer}}',
   E'Hi {{first_name}}, your plan: {{custom_fields.plan}}\n{{> footer}}',
   'Acme <hello@acme.example>'),
  ('welcome_2', 'marketing', 'Three tips for {{first_name}}', NULL, E'Tip 1 ...\n{{> footer}}', NULL),
  ('footer', 'marketing', '-', '<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>',
   'Unsubscribe: {{unsubscribe_url}}', NULL),
  ('password_reset', 'transactional', 'Reset your password', NULL,
   'Reset it here: {{{data.reset_url}}}', 'Acme <security@acme.example>');
INSERT INTO meisa.sequences (name, exit_conditions) VALUES ('welcome', '{"has_tag": "activated"}');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 1, interval '0', 'welcome_1' FROM meisa.sequences WHERE name = 'welcome'
UNION ALL
SELECT id, 2, interval '2 days', 'welcome_2' FROM meisa.sequences WHERE name = 'welcome';
INSERT INTO meisa.automations (name, trigger, actions)
VALUES ('welcome new users', 'contact_created', '[{"enroll": "welcome"}]');

-- the application: a user signs up, then asks for a password reset
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT meisa_run_due();            -- from pg_cron every minute, or the worker
SELECT meisa_trigger_email('password_reset',
       '{"email": "ann@example.com", "data_variables": {"reset_url": "https://acme.example/r/abc"},
         "idempotency_key": "reset-abc"}');
SELECT template_key, status, subject FROM meisa.messages ORDER BY id;
SELECT template_key, regexp_replace(html, '/u/[A-Za-z0-9_-]+', '/u/TOKEN') AS html,
       regexp_replace(text, '/u/[A-Za-z0-9_-]+', '/u/TOKEN') AS text
  FROM meisa.messages ORDER BY id;
-- a retry of the reset is the same message
SELECT meisa_trigger_email('password_reset',
       '{"email": "ann@example.com", "data_variables": {"reset_url": "https://acme.example/r/abc"},
         "idempotency_key": "reset-abc"}') = max(id) AS same_message FROM meisa.messages;
SELECT sequence, position, entered, sent, completed FROM meisa.sequence_funnel ORDER BY position;
