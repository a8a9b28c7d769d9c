-- Exit conditions and step conditions in meisa_run_due, evaluated with the
-- automation engine's condition language against the contact's current state.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('c1', 'marketing', 'Getting started', 'one'),
  ('c2', 'marketing', 'Upgrade to pro', 'two'),
  ('c3', 'marketing', 'Last tips', 'three');
-- leave the sequence once the contact is tagged "activated"
INSERT INTO meisa.sequences (name, exit_conditions) VALUES ('trial', '{"has_tag": "activated"}');
-- step 2 only for contacts still on the free plan
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template, conditions)
SELECT s.id, v.position, v.delay::interval, v.template, v.conditions::jsonb
  FROM meisa.sequences s,
       (VALUES (1, '0', 'c1', NULL),
               (2, '1 day', 'c2', '{"field": "custom_fields.plan", "eq": "free"}'),
               (3, '1 day', 'c3', NULL)) v(position, delay, template, conditions);
INSERT INTO meisa.contacts (email, custom_fields, tags) VALUES
  ('free@example.com', '{"plan": "free"}', '{}'),
  ('pro@example.com', '{"plan": "pro"}', '{}'),
  ('active@example.com', '{"plan": "free"}', '{}'),
  ('already@example.com', '{"plan": "free"}', '{activated}');
SELECT count(meisa_enroll(email, 'trial')) FROM meisa.contacts;
UPDATE meisa.enrollments SET next_run_at = '2030-01-07 10:00+00';

-- day 0: the contact already activated exits before any mail
SELECT meisa_run_due('2030-01-07 10:00+00') AS advanced;
-- meanwhile one contact activates
UPDATE meisa.contacts SET tags = tags || '{activated}' WHERE email = 'active@example.com';
-- day 1: step 2 goes to the free contact only; the pro contact skips it;
-- the activated contact exits
SELECT meisa_run_due('2030-01-08 10:00+00') AS advanced;
-- day 2: step 3 for the two remaining
SELECT meisa_run_due('2030-01-09 10:00+00') AS advanced;

SELECT c.email, e.status, e.current_step, e.exit_reason, e.next_run_at
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY c.email;
SELECT c.email, string_agg(m.template_key, ',' ORDER BY m.step_position) AS messages
  FROM meisa.contacts c LEFT JOIN meisa.messages m ON m.contact_id = c.id
 GROUP BY c.email ORDER BY c.email;
-- the funnel: the pro contact completed step 2 without a message
SELECT position, entered, active, sent, suppressed, exited, removed, completed
  FROM meisa.sequence_funnel ORDER BY position;

-- meisa_run_due compiles a step's conditions once per run; a stored rule
-- that does not compile (written with triggers disabled) fails each of its
-- enrolments with the rule's error, which is kept in last_error
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SELECT meisa_upsert('{"email": "ann@example.com"}') ->> 'created' AS created;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('t1', 'marketing', 'Hi', 'Hello');
INSERT INTO meisa.sequences (name) VALUES ('broken');
ALTER TABLE meisa.sequence_steps DISABLE TRIGGER sequence_steps_check;
INSERT INTO meisa.sequence_steps (sequence_id, position, template, conditions)
  SELECT id, 1, 't1', '{"field": "custom_fields.plan", "gte5": 1}' FROM meisa.sequences WHERE name = 'broken';
ALTER TABLE meisa.sequence_steps ENABLE TRIGGER sequence_steps_check;
SELECT meisa_upsert('{"email": "bob@example.com"}') ->> 'created' AS created;
SELECT meisa_enroll(email, 'broken') > 0 AS enrolled FROM meisa.contacts ORDER BY email;
SELECT meisa_run_due(now() + interval '1 minute') AS advanced;
SELECT c.email, e.status, e.current_step, e.last_error
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY c.email;
