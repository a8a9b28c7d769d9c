-- Sequences: validation of sequences and steps on write, meisa_enroll /
-- meisa_unenroll, the re-entry rule, and privileges.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('s1', 'marketing', 'Step 1', 'one'), ('s2', 'marketing', 'Step 2', 'two');
INSERT INTO meisa.contacts (email) VALUES ('ann@example.com'), ('bob@example.com');

-- valid sequences: defaults, and a send window on weekdays 09:00-17:00 Berlin time
INSERT INTO meisa.sequences (name) VALUES ('onboarding');
INSERT INTO meisa.sequences (name, allow_reentry, send_days, send_start, send_end, timezone)
VALUES ('trial', true, '{1,2,3,4,5}', '09:00', '17:00', 'Europe/Berlin');
SELECT name, enabled, exit_conditions, allow_reentry, send_days, send_start, send_end, timezone
  FROM meisa.sequences ORDER BY name;

-- invalid sequences (22023)
INSERT INTO meisa.sequences (name) VALUES ('  ');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, timezone) VALUES ('x', 'Mars/Olympus');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, send_days) VALUES ('x', '{}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, send_days) VALUES ('x', '{0,1}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, send_days) VALUES ('x', '{1,NULL}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, send_start) VALUES ('x', '09:00');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, send_start, send_end) VALUES ('x', '17:00', '09:00');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, exit_conditions) VALUES ('x', '["activated"]');
\echo :LAST_ERROR_SQLSTATE
-- exit_conditions use the condition language, checked on write; they test the
-- contact's current state, so change and event tests are rejected
INSERT INTO meisa.sequences (name, exit_conditions) VALUES ('x', '{"has_tag": "activated", "field": "email"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, exit_conditions) VALUES ('x', '{"field": "custom_fields.plan", "changed_to": "pro"}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequences (name, exit_conditions) VALUES ('x', '{"any": [{"has_tag": "a"}, {"field": "nope", "eq": 1}]}');
\echo :LAST_ERROR_SQLSTATE
UPDATE meisa.sequences SET timezone = 'Nowhere' WHERE name = 'onboarding';
\echo :LAST_ERROR_SQLSTATE
-- updated_at follows updates
UPDATE meisa.sequences SET updated_at = '2000-01-01' WHERE name = 'onboarding';
SELECT updated_at > '2000-01-02' AS updated_at_refreshed FROM meisa.sequences WHERE name = 'onboarding';

-- steps: delay after the previous step, a template that exists, conditions an object
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 1, '1 hour', 's1' FROM meisa.sequences WHERE name = 'onboarding';
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 2, '2 days', 's2' FROM meisa.sequences WHERE name = 'onboarding';
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 3, '-1 day', 's2' FROM meisa.sequences WHERE name = 'onboarding';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequence_steps (sequence_id, position, template, conditions)
SELECT id, 3, 's2', '"yes"' FROM meisa.sequences WHERE name = 'onboarding';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequence_steps (sequence_id, position, template, conditions)
SELECT id, 3, 's2', '{"event": "properties.x", "eq": 1}' FROM meisa.sequences WHERE name = 'onboarding';
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
SELECT id, 3, 'no_such_template' FROM meisa.sequences WHERE name = 'onboarding';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY terse
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
SELECT id, 0, 's1' FROM meisa.sequences WHERE name = 'onboarding';
\echo :LAST_ERROR_SQLSTATE
\set VERBOSITY default
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
SELECT id, 1, 's1' FROM meisa.sequences WHERE name = 'onboarding';
\echo :LAST_ERROR_SQLSTATE

-- enrolment: the first step is due its delay after enrolment
SELECT meisa_enroll('ann@example.com', 'onboarding') AS ann_enrolment \gset
SELECT c.email, s.name, e.status, e.current_step, e.next_run_at - e.created_at AS first_due_in,
       e.id = :ann_enrolment AS returned_id
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id
  JOIN meisa.sequences s ON s.id = e.sequence_id;
-- the email is matched trimmed and case-insensitively; one active enrolment per
-- contact and sequence: a second enrol is a no-op (NULL, NOTICE)
SELECT meisa_enroll(' ANN@example.com', 'onboarding');
SELECT count(*) AS ann_enrolments FROM meisa.enrollments;

-- unenrol: status removed, reason unenrolled; a second unenrol finds nothing
SELECT meisa_unenroll('ann@example.com', 'onboarding') AS removed;
SELECT meisa_unenroll('ann@example.com', 'onboarding') AS removed_again;
SELECT status, exit_reason, next_run_at FROM meisa.enrollments WHERE id = :ann_enrolment;

-- re-entry off (onboarding): once enrolled, never again
SELECT meisa_enroll('ann@example.com', 'onboarding');
-- re-entry on (trial): again once the previous enrolment is over
SELECT meisa_enroll('bob@example.com', 'trial') IS NOT NULL AS bob_first;
SELECT meisa_enroll('bob@example.com', 'trial') IS NOT NULL AS bob_while_active;
SELECT meisa_unenroll('bob@example.com', 'trial');
SELECT meisa_enroll('bob@example.com', 'trial') IS NOT NULL AS bob_reentered;
SELECT s.name, e.status, count(*) FROM meisa.enrollments e JOIN meisa.sequences s ON s.id = e.sequence_id
 GROUP BY 1, 2 ORDER BY 1, 2;
-- a sequence without steps is due at once
SELECT e.next_run_at = e.created_at AS due_at_once FROM meisa.enrollments e
  JOIN meisa.contacts c ON c.id = e.contact_id WHERE c.email = 'bob@example.com' AND e.status = 'active';

-- a disabled sequence takes no enrolments
UPDATE meisa.sequences SET enabled = false WHERE name = 'onboarding';
SELECT meisa_enroll('bob@example.com', 'onboarding');
UPDATE meisa.sequences SET enabled = true WHERE name = 'onboarding';

-- errors: unknown sequence, unknown contact (42704), null arguments (22023)
SELECT meisa_enroll('ann@example.com', 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_unenroll('ann@example.com', 'nope');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_enroll('nobody@example.com', 'onboarding');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_unenroll('nobody@example.com', 'onboarding');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_enroll(NULL, 'onboarding');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_enroll('ann@example.com', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_unenroll(NULL, 'onboarding');
\echo :LAST_ERROR_SQLSTATE

-- the one-active rule holds for plain SQL too
INSERT INTO meisa.enrollments (contact_id, sequence_id)
SELECT c.id, s.id FROM meisa.contacts c, meisa.sequences s WHERE c.email = 'bob@example.com' AND s.name = 'trial';
\echo :LAST_ERROR_SQLSTATE

-- privileges: admin enrols and unenrols, the app and the reader may not
SET ROLE meisa_admin;
SELECT meisa_enroll('bob@example.com', 'onboarding') IS NOT NULL AS admin_enrolled;
SELECT meisa_unenroll('bob@example.com', 'onboarding') AS admin_unenrolled;
INSERT INTO meisa.sequences (name) VALUES ('by_admin');
RESET ROLE;
SET ROLE meisa_app;
SELECT meisa_enroll('bob@example.com', 'trial');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_unenroll('bob@example.com', 'trial');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE meisa_reader;
SELECT meisa_enroll('bob@example.com', 'trial');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
