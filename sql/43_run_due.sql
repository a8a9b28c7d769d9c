-- meisa_run_due(at) driven with explicit timestamps: a whole three-step
-- sequence, suppressed contacts, send windows, re-entry on and off, a
-- failing enrolment that does not stop the batch, and errors.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;
SET timezone = 'UTC';

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('day0', 'marketing', 'Welcome {{email}}', 'Day 0 for {{email}}'),
  ('day1', 'marketing', 'Tips', 'Day 1'),
  ('day3', 'marketing', 'Last one', 'Day 3'),
  ('notice', 'transactional', 'Account notice', 'notice');
INSERT INTO meisa.sequences (name) VALUES ('onboarding');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT s.id, v.position, v.delay::interval, v.template
  FROM meisa.sequences s,
       (VALUES (1, '0', 'day0'), (2, '1 day', 'day1'), (3, '2 days', 'day3')) v(position, delay, template)
 WHERE s.name = 'onboarding';
INSERT INTO meisa.contacts (email) VALUES ('ann@example.com');

-- enrol, then pin the first due time to Monday 2030-01-07 10:00 UTC
SELECT meisa_enroll('ann@example.com', 'onboarding') AS ann \gset
UPDATE meisa.enrollments SET next_run_at = '2030-01-07 10:00+00' WHERE id = :ann;

-- not due yet
SELECT meisa_run_due('2030-01-07 09:59+00') AS advanced;
SELECT status, current_step, next_run_at FROM meisa.enrollments WHERE id = :ann;
-- step 1 (delay 0): queued, step 2 scheduled 1 day later
SELECT meisa_run_due('2030-01-07 10:00+00') AS advanced;
SELECT status, current_step, next_run_at, last_error FROM meisa.enrollments WHERE id = :ann;
-- running again at the same time does nothing
SELECT meisa_run_due('2030-01-07 10:00+00') AS advanced;
SELECT meisa_run_due('2030-01-08 09:59+00') AS advanced;
-- step 2, then step 3 two days later: the enrolment completes after its last step
SELECT meisa_run_due('2030-01-08 10:00+00') AS advanced;
SELECT status, current_step, next_run_at FROM meisa.enrollments WHERE id = :ann;
SELECT meisa_run_due('2030-01-10 09:00+00') AS advanced;
SELECT meisa_run_due('2030-01-10 10:30+00') AS advanced;
SELECT status, current_step, next_run_at, exit_reason FROM meisa.enrollments WHERE id = :ann;
SELECT meisa_run_due('2030-02-01') AS advanced;
-- one message per step, rendered, tied to the enrolment, sequence and step
SELECT m.step_position, m.template_key, m.kind, m.status, m.subject, m.text, m.to_email,
       m.enrollment_id = :ann AS right_enrolment,
       m.sequence_id = (SELECT id FROM meisa.sequences WHERE name = 'onboarding') AS right_sequence,
       m.trigger_key, m.message_id LIKE '<%.' || m.id || '@meisa.local>' AS message_id_ok
  FROM meisa.messages m ORDER BY m.step_position;

-- delay runs from the time the previous step ran: a late run shifts the rest
INSERT INTO meisa.contacts (email) VALUES ('late@example.com');
SELECT meisa_enroll('late@example.com', 'onboarding') AS late \gset
UPDATE meisa.enrollments SET next_run_at = '2030-01-07 10:00+00' WHERE id = :late;
SELECT meisa_run_due('2030-01-09 18:00+00') AS advanced;
SELECT current_step, next_run_at FROM meisa.enrollments WHERE id = :late;

-- re-entry off: a completed contact is not enrolled again
SELECT meisa_enroll('ann@example.com', 'onboarding');
-- re-entry on: enrolled again, and runs the whole sequence again
UPDATE meisa.sequences SET allow_reentry = true WHERE name = 'onboarding';
SELECT meisa_enroll('ann@example.com', 'onboarding') AS ann2 \gset
UPDATE meisa.enrollments SET next_run_at = '2030-03-01 10:00+00' WHERE id = :ann2;
-- (2: ann's new enrolment, and the late contact's step 2)
SELECT meisa_run_due('2030-03-01 10:00+00') AS advanced;
SELECT e.id = :ann2 AS second_enrolment, e.status, e.current_step, count(m.id) AS messages
  FROM meisa.enrollments e LEFT JOIN meisa.messages m ON m.enrollment_id = e.id
 WHERE e.contact_id = (SELECT id FROM meisa.contacts WHERE email = 'ann@example.com')
 GROUP BY e.id ORDER BY e.id;
UPDATE meisa.sequences SET allow_reentry = false WHERE name = 'onboarding';
SELECT meisa_unenroll('ann@example.com', 'onboarding');

-- suppression: marketing steps to unsubscribed, bounced or complained contacts
-- are recorded 'suppressed' and the enrolment exits with the reason;
-- a transactional step still goes to an unsubscribed contact
INSERT INTO meisa.sequences (name) VALUES ('mixed');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT s.id, v.position, v.delay::interval, v.template
  FROM meisa.sequences s, (VALUES (1, '0', 'notice'), (2, '1 day', 'day1')) v(position, delay, template)
 WHERE s.name = 'mixed';
INSERT INTO meisa.contacts (email, subscribed) VALUES ('unsub@example.com', false);
INSERT INTO meisa.contacts (email, bounced_at) VALUES ('bounced@example.com', '2029-12-01');
INSERT INTO meisa.contacts (email, complained_at) VALUES ('complained@example.com', '2029-12-01');
SELECT meisa_enroll(email, 'onboarding') IS NOT NULL AS enrolled
  FROM meisa.contacts WHERE email IN ('unsub@example.com', 'bounced@example.com', 'complained@example.com') ORDER BY email;
SELECT meisa_enroll(email, 'mixed') IS NOT NULL AS enrolled
  FROM meisa.contacts WHERE email IN ('unsub@example.com', 'bounced@example.com') ORDER BY email;
UPDATE meisa.enrollments SET next_run_at = '2030-04-01 10:00+00' WHERE status = 'active';
SELECT meisa_run_due('2030-04-01 10:00+00') AS advanced;
SELECT meisa_run_due('2030-04-02 10:00+00') AS advanced;
SELECT c.email, s.name, e.status, e.current_step, e.exit_reason, e.next_run_at
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id
  JOIN meisa.sequences s ON s.id = e.sequence_id
 WHERE c.email IN ('unsub@example.com', 'bounced@example.com', 'complained@example.com')
 ORDER BY s.name, c.email;
SELECT c.email, m.template_key, m.kind, m.status, m.last_error
  FROM meisa.messages m JOIN meisa.contacts c ON c.id = m.contact_id
 WHERE c.email IN ('unsub@example.com', 'bounced@example.com', 'complained@example.com')
 ORDER BY c.email, m.id;

-- a disabled sequence's enrolments wait; they run once it is enabled again
INSERT INTO meisa.contacts (email) VALUES ('paused@example.com');
SELECT meisa_enroll('paused@example.com', 'onboarding') AS paused \gset
UPDATE meisa.enrollments SET next_run_at = '2030-05-01 10:00+00' WHERE id = :paused;
UPDATE meisa.sequences SET enabled = false WHERE name = 'onboarding';
SELECT meisa_run_due('2030-05-01 10:00+00') AS advanced;
UPDATE meisa.sequences SET enabled = true WHERE name = 'onboarding';
SELECT meisa_run_due('2030-05-01 10:00+00') AS advanced;
SELECT current_step FROM meisa.enrollments WHERE id = :paused;

-- a failure on one enrolment is rolled back and recorded on it (last_error,
-- retried after meisa.sequence_retry_delay); the rest of the batch goes on
INSERT INTO meisa.contacts (email) VALUES ('ok1@example.com'), (repeat('l', 60) || '@example.com'), ('ok2@example.com');
SELECT count(meisa_enroll(email, 'onboarding')) AS enrolled FROM meisa.contacts
 WHERE email IN ('ok1@example.com', repeat('l', 60) || '@example.com', 'ok2@example.com');
UPDATE meisa.enrollments SET next_run_at = '2030-06-01 10:00+00' WHERE status = 'active';
SET meisa.max_render_size = 50;
SET meisa.sequence_retry_delay = '30min';
SELECT meisa_run_due('2030-06-01 10:00+00') AS advanced;
SELECT left(c.email, 8) AS email, e.status, e.current_step, e.next_run_at, e.last_error
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id
 WHERE c.email LIKE 'ok%' OR c.email LIKE 'lll%' ORDER BY c.email;
SELECT count(*) AS messages_for_failed FROM meisa.messages WHERE to_email LIKE 'lll%';
-- the retry succeeds once the cause is gone, and clears last_error
RESET meisa.max_render_size;
SELECT meisa_run_due('2030-06-01 10:29+00') AS advanced;
SELECT meisa_run_due('2030-06-01 10:30+00') AS advanced;
SELECT e.status, e.current_step, e.next_run_at, e.last_error
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id WHERE c.email LIKE 'lll%';
RESET meisa.sequence_retry_delay;

-- steps with a zero delay all run in the same call, in order
INSERT INTO meisa.sequences (name) VALUES ('burst');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT s.id, v.position, '0', v.template
  FROM meisa.sequences s, (VALUES (1, 'day0'), (2, 'day1'), (3, 'day3')) v(position, template)
 WHERE s.name = 'burst';
SELECT meisa_enroll('ann@example.com', 'burst') AS burst \gset
SELECT meisa_run_due(now()) AS advanced;
SELECT e.status, e.current_step, string_agg(m.template_key, ',' ORDER BY m.id) AS messages
  FROM meisa.enrollments e JOIN meisa.messages m ON m.enrollment_id = e.id
 WHERE e.id = :burst GROUP BY 1, 2;

-- a sequence without steps completes at once
INSERT INTO meisa.sequences (name) VALUES ('empty');
SELECT meisa_enroll('ann@example.com', 'empty') AS empty \gset
SELECT meisa_run_due(now()) AS advanced;
SELECT status, current_step FROM meisa.enrollments WHERE id = :empty;

-- the default is now(); null and infinite timestamps are rejected (22023)
SELECT meisa_run_due() AS advanced_now;
SELECT meisa_run_due(NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_run_due('infinity');
\echo :LAST_ERROR_SQLSTATE

-- the batch size setting: small batches give the same result
INSERT INTO meisa.contacts (email) SELECT 'batch' || i || '@example.com' FROM generate_series(1, 25) i;
SELECT count(meisa_enroll(email, 'onboarding')) FROM meisa.contacts WHERE email LIKE 'batch%';
UPDATE meisa.enrollments SET next_run_at = '2030-07-01 10:00+00' WHERE status = 'active';
SET meisa.run_due_batch_size = 4;
SELECT meisa_run_due('2030-07-01 10:00+00') AS advanced;
RESET meisa.run_due_batch_size;
SELECT count(*) AS batch_messages FROM meisa.messages WHERE to_email LIKE 'batch%';
SET meisa.run_due_batch_size = 0;
\echo :LAST_ERROR_SQLSTATE

-- privileges: admin runs it, app and reader may not
SET ROLE meisa_admin;
SELECT meisa_run_due('2030-07-01 10:00+00') AS admin_advanced;
RESET ROLE;
SET ROLE meisa_app;
SELECT meisa_run_due('2030-07-01 10:00+00');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- a failure at the very end of the timestamp range is retried at its
-- last instant, never stored outside the valid range
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('f', 'marketing', 'F {{custom_fields.s}}', 'f');
INSERT INTO meisa.sequences (name) VALUES ('far');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 1, interval '0', 'f' FROM meisa.sequences WHERE name = 'far';
INSERT INTO meisa.contacts (email, custom_fields) VALUES ('bad@example.com', jsonb_build_object('s', E'a\nb'));
SELECT meisa_enroll('bad@example.com', 'far') IS NOT NULL AS enrolled;
SELECT meisa_run_due('294276-12-31 23:30:00+00');
SELECT e.status, e.current_step, e.last_error, e.next_run_at,
       e.next_run_at <= '294276-12-31 23:59:59.999999+00' AS in_range
  FROM meisa.enrollments e JOIN meisa.sequences s ON s.id = e.sequence_id WHERE s.name = 'far';
