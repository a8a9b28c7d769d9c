-- demo/story.sql: the onboarding story scripts/demo.sh tells.
-- Run against a database where meisa can be created; the delivery worker
-- (shared_preload_libraries = 'meisa') sends what is queued.
\pset footer off
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS meisa;
RESET client_min_messages;

\echo '--- The growth team configures meisa (as data): templates, sequences, automations'
INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES
  ('welcome', 'marketing', 'Welcome to Acme, {{first_name}}!',
   '<h1>Welcome, {{first_name}}!</h1><p>Your {{custom_fields.plan}} plan is ready.</p><p><a href="{{{unsubscribe_url}}}">Unsubscribe</a></p>',
   E'Welcome, {{first_name}}!\nYour {{custom_fields.plan}} plan is ready.\n\nUnsubscribe: {{{unsubscribe_url}}}'),
  ('tips', 'marketing', 'Three tips for your first week',
   '<p>Hi {{first_name}}, here are three tips.</p>',
   E'Hi {{first_name}}, here are three tips.'),
  ('welcome-pro', 'marketing', 'You are on Pro now — here is what is new',
   '<p>Thanks for upgrading, {{first_name}}. Pro unlocks everything.</p><p><a href="{{{unsubscribe_url}}}">Unsubscribe</a></p>',
   E'Thanks for upgrading, {{first_name}}. Pro unlocks everything.\n\nUnsubscribe: {{{unsubscribe_url}}}'),
  ('password-reset', 'transactional', 'Reset your Acme password',
   '<p>Hi {{first_name}}, <a href="{{data.reset_url}}">reset your password</a>.</p>',
   E'Hi {{first_name}}, reset your password here:\n{{{data.reset_url}}}');

INSERT INTO meisa.sequences (name, exit_conditions) VALUES
  ('onboarding', '{"has_tag": "activated"}'),
  ('welcome-pro', NULL);
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
  SELECT id, 1, interval '0', 'welcome' FROM meisa.sequences WHERE name = 'onboarding'
  UNION ALL SELECT id, 2, '2 days', 'tips' FROM meisa.sequences WHERE name = 'onboarding'
  UNION ALL SELECT id, 1, '0', 'welcome-pro' FROM meisa.sequences WHERE name = 'welcome-pro';

INSERT INTO meisa.automations (name, trigger, conditions, actions, position) VALUES
  ('new signups start onboarding', 'contact_created', NULL,
   '[{"add_tag": "free-plan"}, {"enroll": "onboarding"}]', 1),
  ('plan free -> any paid', 'contact_updated',
   '{"field": "custom_fields.plan", "changed_from": "free", "changed_to": {"in": ["standard", "pro"]}}',
   '[{"add_tag": "paying-customer"}, {"remove_tag": "free-plan"}, {"enroll": "welcome-pro"}]', 2),
  ('onboarding done', 'contact_updated',
   '{"field": "custom_fields.onboarding_completed", "changed_to": true}',
   '[{"unenroll": "onboarding"}, {"add_tag": "activated"}]', 3);

\echo
\echo '--- 1. Jane signs up (the app calls meisa_upsert in its own transaction)'
SELECT meisa_upsert('{"email": "Jane@Example.com", "external_id": "usr_1", "first_name": "Jane",
                      "custom_fields": {"plan": "free"}}') AS result;
SELECT meisa_run_due() AS steps_queued;  -- the worker does this every round too
\echo '--- 2. Jane logs in again: nothing changed, nothing is written'
SELECT meisa_upsert('{"email": "jane@example.com", "external_id": "usr_1", "first_name": "Jane",
                      "custom_fields": {"plan": "free"}}') AS result;
\echo '--- 3. Jane forgets her password: a transactional email by trigger key'
SELECT meisa_trigger_email('password-reset',
  '{"email": "jane@example.com", "data_variables": {"reset_url": "https://acme.test/reset/9f2c"}}') AS message_id;
\echo '--- 4. Jane upgrades to Pro and uses a feature'
SELECT meisa_upsert('{"external_id": "usr_1", "custom_fields": {"plan": "pro"}}') AS result;
SELECT meisa_track('feature_used', '{"external_id": "usr_1", "properties": {"feature": "reports"}}') AS event_id;
\echo '--- 5. Due sequence steps are queued (the worker does this too, every round)'
SELECT meisa_run_due() AS steps_queued;

\echo '--- 6. The worker delivers over SMTP (waiting for the queue to drain)'
DO $$
BEGIN
  FOR i IN 1..60 LOOP
    EXIT WHEN NOT EXISTS (SELECT 1 FROM meisa.messages WHERE status IN ('queued', 'sending'));
    PERFORM pg_sleep(0.5);
  END LOOP;
END $$;
SELECT id, kind, template_key, to_email, status, subject FROM meisa.messages ORDER BY id;

\echo '--- 7. Jane completes onboarding, then unsubscribes from marketing mail'
SELECT meisa_upsert('{"external_id": "usr_1", "custom_fields": {"onboarding_completed": true}}') AS result;
SELECT meisa_unsubscribe('jane@example.com');
\echo 'what the app polls (meisa.unsubscribed_emails):'
SELECT email, external_id, reason FROM meisa.unsubscribed_emails;

\echo
\echo '--- The contact'
SELECT id, email, external_id, first_name, custom_fields, tags, subscribed FROM meisa.contacts;
\echo '--- Its enrolments'
SELECT s.name AS sequence, e.status, e.current_step, e.exit_reason
  FROM meisa.enrollments e JOIN meisa.sequences s ON s.id = e.sequence_id ORDER BY e.id;
\echo '--- Automation runs'
SELECT a.name AS automation, r.trigger, r.status, r.actions_done
  FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id;
\echo '--- Its activity timeline (meisa.contact_activity)'
SELECT to_char(at, 'HH24:MI:SS.MS') AS at, kind, left(detail::text, 100) AS detail
  FROM meisa.contact_activity ORDER BY at, kind;
