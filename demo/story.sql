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
  ('nudge', 'marketing', 'Need a hand getting started, {{first_name}}?',
   '<p>Hi {{first_name}}, reply to this mail and we will help you set up Acme.</p><p><a href="{{{unsubscribe_url}}}">Unsubscribe</a></p>',
   E'Hi {{first_name}}, reply to this mail and we will help you set up Acme.\n\nUnsubscribe: {{{unsubscribe_url}}}'),
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

-- a live segment: 3 days after signup and not activated (time alone moves
-- a contact into it), and what happens when someone enters it
INSERT INTO meisa.segments (name, conditions) VALUES
  ('not activated after 3 days',
   '{"all": [{"field": "custom_fields.signup_date", "older_than": "3 days"}, {"lacks_tag": "activated"}]}');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions, position) VALUES
  ('nudge the stuck', 'segment_entered', 'not activated after 3 days',
   '[{"send_email": "nudge"}, {"add_tag": "nudged"}]', 4);

-- a topic of marketing mail, its announcement template, and the segment of
-- paying customers the announcement goes to
INSERT INTO meisa.topics (name, description) VALUES ('product-updates', 'What we shipped');
INSERT INTO meisa.templates (key, kind, subject, html, text, topic) VALUES
  ('reports-launch', 'marketing', 'New: scheduled reports, {{first_name}}',
   '<p>Hi {{first_name}}, reports can now be sent on a schedule.</p><p><a href="{{{unsubscribe_url}}}">No more product updates</a></p>',
   E'Hi {{first_name}}, reports can now be sent on a schedule.\n\nNo more product updates: {{{unsubscribe_url}}}',
   'product-updates');
INSERT INTO meisa.segments (name, conditions) VALUES
  ('paying customers', '{"field": "custom_fields.plan", "in": ["standard", "pro"]}');

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

\echo '--- 6. Sam signs up the same day, and never comes back'
SELECT meisa_upsert(jsonb_build_object('email', 'sam@example.com', 'first_name', 'Sam',
                    'custom_fields', jsonb_build_object('plan', 'free', 'signup_date', now()))) AS result;
SELECT meisa_run_due() AS steps_queued;
\echo 'Sam is not in the segment yet; his check is due when his signup turns 3 days old:'
SELECT segment, members FROM meisa.segment_stats;
SELECT c.email, k.check_at - (c.custom_fields ->> 'signup_date')::timestamptz AS check_after_signup
  FROM meisa.segment_checks k JOIN meisa.contacts c ON c.id = k.contact_id;

\echo '--- 7. Four days later (run here in advance, as a test database can): Sam enters the'
\echo '       segment on time alone, which queues the nudge'
SELECT meisa_run_due(now() + interval '4 days') AS steps_queued;
SELECT segment, email FROM meisa.segment_contacts;

\echo '--- 8. The growth team announces a feature to the paying customers (a broadcast);'
\echo '       Lee, also on Pro, left the product-updates topic and gets no copy'
SELECT meisa_upsert('{"email": "lee@example.com", "first_name": "Lee", "custom_fields": {"plan": "pro"},
                      "topics": {"product-updates": false}}') AS result;
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('reports launch', 'reports-launch', 'paying customers');
SELECT meisa_schedule_broadcast('reports launch') AS scheduled;
SELECT meisa_run_due() AS steps_queued;   -- queues the broadcast, batch by batch
SELECT m.to_email, m.status, m.last_error FROM meisa.messages m
  JOIN meisa.broadcasts b ON b.id = m.broadcast_id ORDER BY m.id;

\echo '--- 9. The worker delivers over SMTP (waiting for the queue to drain)'
DO $$
BEGIN
  FOR i IN 1..60 LOOP
    EXIT WHEN NOT EXISTS (SELECT 1 FROM meisa.messages WHERE status IN ('queued', 'sending'));
    PERFORM pg_sleep(0.5);
  END LOOP;
END $$;
SELECT id, kind, template_key, to_email, status, subject FROM meisa.messages ORDER BY id;

\echo 'the broadcast (meisa.broadcast_stats):'
SELECT broadcast, status, audience, sent, suppressed FROM meisa.broadcast_stats;

\echo '--- 10. Jane completes onboarding, then unsubscribes from marketing mail'
SELECT meisa_upsert('{"external_id": "usr_1", "custom_fields": {"onboarding_completed": true}}') AS result;
SELECT meisa_unsubscribe('jane@example.com');
\echo 'what the app polls (meisa.unsubscribed_emails):'
SELECT email, external_id, reason FROM meisa.unsubscribed_emails;

\echo
\echo '--- The contacts'
SELECT id, email, external_id, first_name, custom_fields, tags, subscribed FROM meisa.contacts ORDER BY id;
\echo '--- Their enrolments'
SELECT c.email, s.name AS sequence, e.status, e.current_step, e.exit_reason
  FROM meisa.enrollments e JOIN meisa.sequences s ON s.id = e.sequence_id
  JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY e.id;
\echo '--- Automation runs'
SELECT c.email, a.name AS automation, r.trigger, r.status, r.actions_done
  FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id
  JOIN meisa.contacts c ON c.id = r.contact_id ORDER BY r.id;
\echo '--- Their activity timeline (meisa.contact_activity)'
SELECT c.email, to_char(a.at, 'HH24:MI:SS.MS') AS at, a.kind, left(a.detail::text, 90) AS detail
  FROM meisa.contact_activity a JOIN meisa.contacts c ON c.id = a.contact_id ORDER BY a.contact_id, a.at, a.kind;
