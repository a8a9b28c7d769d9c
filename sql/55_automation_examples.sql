-- The four example automations of the product guide, end to end through
-- the API, plus meisa.automation_stats and meisa.contact_activity.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DROP SCHEMA IF EXISTS t55 CASCADE;
CREATE SCHEMA t55;
RESET client_min_messages;
SET search_path = t55, public;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('welcome-pro-1', 'marketing', 'Welcome to Pro, {{first_name}}', 'Thanks for upgrading.'),
  ('win-back-1', 'marketing', 'We miss you', 'Come back.'),
  ('onboarding-1', 'marketing', 'Getting started', 'Step one.'),
  ('power-user-tips', 'marketing', 'Power-user tips', 'You activated {{data.feature}}, {{first_name}}.');
INSERT INTO meisa.sequences (name) VALUES ('welcome-pro'), ('win-back'), ('onboarding');
INSERT INTO meisa.sequence_steps (sequence_id, position, template, delay)
  SELECT id, 1, name || '-1', '1 day' FROM meisa.sequences;

INSERT INTO meisa.automations (name, trigger, trigger_filter, conditions, actions) VALUES
  ('plan free to paid', 'contact_updated', NULL,
   '{"field":"custom_fields.plan","changed_from":"free","changed_to":{"in":["standard","pro"]}}',
   '[{"add_tag": "paying-customer"}, {"remove_tag": "free-plan"}, {"enroll": "welcome-pro"}]'),
  ('plan churned', 'contact_updated', NULL,
   '{"field":"custom_fields.plan","changed_to":"churned"}',
   '[{"add_tag": "churned"}, {"enroll": "win-back"}]'),
  ('feature activated', 'custom_event', 'feature_activated', NULL,
   '[{"send_email": "power-user-tips"}]'),
  ('onboarding done', 'contact_updated', NULL,
   '{"field":"custom_fields.onboarding_completed","changed_to":true}',
   '[{"unenroll": "onboarding"}, {"add_tag": "activated"}]');

CREATE FUNCTION state(e text) RETURNS TABLE (tags text[], plan text, sequences text)
  LANGUAGE sql AS $$
  SELECT c.tags, c.custom_fields ->> 'plan',
         (SELECT string_agg(s.name || ':' || en.status, ', ' ORDER BY en.id)
            FROM meisa.enrollments en JOIN meisa.sequences s ON s.id = en.sequence_id
           WHERE en.contact_id = c.id)
    FROM meisa.contacts c WHERE c.email = e $$;

-- a free user signs up and is put in onboarding
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann", "custom_fields": {"plan": "free", "onboarding_completed": false}, "tag_names": ["free-plan"]}') ->> 'created' AS created;
SELECT meisa_enroll('ann@example.com', 'onboarding') > 0 AS enrolled;
SELECT * FROM state('ann@example.com');

-- 1. plan free -> any paid: add paying-customer, remove free-plan, enrol welcome-pro
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS changed;
SELECT * FROM state('ann@example.com');
-- pro -> standard is not "from free": nothing more
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "standard"}}') -> 'changed' AS changed;
SELECT * FROM state('ann@example.com');
-- free -> standard is paid too
SELECT meisa_upsert('{"email": "bob@example.com", "custom_fields": {"plan": "free"}, "tag_names": ["free-plan"]}') ->> 'created' AS created;
SELECT meisa_upsert('{"email": "bob@example.com", "custom_fields": {"plan": "standard"}}') -> 'changed' AS changed;
SELECT * FROM state('bob@example.com');
-- free -> churned is not paid (but churned)
SELECT meisa_upsert('{"email": "cat@example.com", "custom_fields": {"plan": "free"}, "tag_names": ["free-plan"]}') ->> 'created' AS created;
SELECT meisa_upsert('{"email": "cat@example.com", "custom_fields": {"plan": "churned"}}') -> 'changed' AS changed;
SELECT * FROM state('cat@example.com');

-- 4. onboarding_completed becomes true: leave onboarding, add activated
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"onboarding_completed": true}}') -> 'changed' AS changed;
SELECT * FROM state('ann@example.com');
-- true again is no change: nothing fires
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"onboarding_completed": true}}') -> 'changed' AS changed;

-- 3. custom event feature_activated: the power-user tips email
SELECT meisa_track('feature_activated', '{"email": "ann@example.com", "properties": {"feature": "bulk export"}}') > 0 AS tracked;
SELECT meisa_track('feature_viewed', '{"email": "ann@example.com", "properties": {"feature": "reports"}}') > 0 AS other_event;
SELECT to_email, template_key, subject, text, status FROM meisa.messages ORDER BY id;

-- 2. plan -> churned: add churned, enrol win-back
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "churned"}}') -> 'changed' AS changed;
SELECT * FROM state('ann@example.com');

-- every run is recorded
SELECT a.name, c.email, r.trigger, r.status, r.actions_done, r.depth
  FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id
  JOIN meisa.contacts c ON c.id = r.contact_id ORDER BY r.id;
SELECT name, trigger, trigger_filter, enabled, matched, done, failed, stopped, last_run_at IS NOT NULL AS ran
  FROM meisa.automation_stats ORDER BY automation_id;

-- the timeline of a contact
SELECT kind, detail FROM meisa.contact_activity
 WHERE contact_id = (SELECT id FROM meisa.contacts WHERE email = 'ann@example.com')
 ORDER BY at, kind, detail::text;
SELECT kind, count(*) FROM meisa.contact_activity GROUP BY kind ORDER BY kind;
