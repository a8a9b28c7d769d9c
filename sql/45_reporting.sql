-- Reporting views: meisa.sequence_funnel (per sequence and step) and
-- meisa.message_stats (per day, kind and status), and who may read them.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;
SET timezone = 'UTC';

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('f1', 'marketing', 'One', 'one'), ('f2', 'marketing', 'Two', 'two'),
  ('f3', 'marketing', 'Three', 'three'), ('receipt', 'transactional', 'Receipt', 'r');
INSERT INTO meisa.sequences (name) VALUES ('funnel'), ('unused');
-- positions need not be contiguous
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT s.id, v.position, v.delay::interval, v.template
  FROM meisa.sequences s, (VALUES (1, '0', 'f1'), (2, '1 day', 'f2'), (5, '1 day', 'f3')) v(position, delay, template)
 WHERE s.name = 'funnel';
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
SELECT id, 1, 'f1' FROM meisa.sequences WHERE name = 'unused';
INSERT INTO meisa.contacts (email) SELECT 'c' || i || '@example.com' FROM generate_series(1, 5) i;
UPDATE meisa.contacts SET subscribed = false WHERE email = 'c3@example.com';
SELECT count(meisa_enroll(email, 'funnel')) FROM meisa.contacts;
SELECT meisa_unenroll('c4@example.com', 'funnel');
UPDATE meisa.enrollments SET next_run_at = '2030-01-07 10:00+00' WHERE status = 'active';

-- day 0: step 1 for c1, c2, c5 (sent) and c3 (suppressed: exits)
SELECT meisa_run_due('2030-01-07 10:00+00') AS advanced;
-- day 1: step 2 for c1 and c5; c2 is held back; day 2: step 5 for c1,
-- c5 unsubscribed meanwhile: suppressed, exits
UPDATE meisa.enrollments SET next_run_at = '2030-02-01' FROM meisa.contacts c
 WHERE c.id = contact_id AND c.email = 'c2@example.com';
SELECT meisa_run_due('2030-01-08 10:00+00') AS advanced;
UPDATE meisa.contacts SET subscribed = false WHERE email = 'c5@example.com';
SELECT meisa_run_due('2030-01-09 10:00+00') AS advanced;

SELECT sequence, position, template, entered, active, sent, suppressed, exited, removed, completed
  FROM meisa.sequence_funnel ORDER BY sequence, position;
-- every enrolment that entered a step is active at it, left at it, or completed it
SELECT bool_and(entered = active + exited + removed + completed) AS balanced FROM meisa.sequence_funnel;

-- message_stats: per UTC day of queueing, kind and status
SELECT meisa_trigger_email('receipt', '{"email": "c3@example.com"}') > 0 AS receipt;
SELECT day = (now() AT TIME ZONE 'UTC')::date AS today, kind, status, count
  FROM meisa.message_stats ORDER BY kind, status;
UPDATE meisa.messages SET created_at = '2030-01-01 23:30+00' WHERE template_key = 'receipt';
SELECT day, kind, status, count FROM meisa.message_stats WHERE kind = 'transactional';

-- the reader and the admin read the views; the reader reads no table, the app no view
SET ROLE meisa_reader;
SELECT count(*) > 0 AS reader_funnel FROM meisa.sequence_funnel;
SELECT count(*) > 0 AS reader_stats FROM meisa.message_stats;
SELECT count(*) FROM meisa.messages;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SET ROLE meisa_admin;
SELECT count(*) > 0 AS admin_funnel FROM meisa.sequence_funnel;
SELECT count(*) > 0 AS admin_stats FROM meisa.message_stats;
RESET ROLE;
SET ROLE meisa_app;
SELECT count(*) FROM meisa.sequence_funnel;
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) FROM meisa.message_stats;
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
