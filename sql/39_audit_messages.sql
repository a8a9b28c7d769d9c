-- Audit of templates, the outbox and sequences (issue 3): regressions for
-- what the audit found.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';

-- 1. meisa.max_render_steps counts every element a section iterates over,
-- also when the section's body is empty: nested empty loops over a large
-- list used to run unbounded (1e9 iterations for three levels of 1000).
SET meisa.max_render_steps = 1000;
SELECT meisa.render('{{#l}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 2000) i)));
SELECT meisa.render('{{#l}}{{#l}}{{/l}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 40) i)));
SELECT meisa.render('{{^l}}{{/l}}{{#l}}{{/l}}x', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 900) i)));
RESET meisa.max_render_steps;
SELECT meisa.render('{{#l}}{{#l}}{{#l}}{{/l}}{{/l}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 1000) i)));
-- lists still render as before
SELECT meisa.render('{{#l}}{{.}},{{/l}}', '{"l": [1, 2, 3]}');

-- 2. a contact's custom_fields.timezone counts only when it is a name of
-- the time zone database; a POSIX specification ("ABC-5", "UTC+5") is
-- ignored (the sequence's zone is used).  pg_tzset() caches every zone it
-- resolves for the life of the backend, so distinct POSIX values in
-- contact data used to grow the backend without bound (24 kB each).
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('w', 'marketing', 'W', 'w');
INSERT INTO meisa.sequences (name, send_start, send_end, timezone)
VALUES ('win', '09:00', '17:00', 'Europe/Berlin');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 1, interval '0', 'w' FROM meisa.sequences WHERE name = 'win';
INSERT INTO meisa.contacts (email, custom_fields) VALUES
  ('ny@example.com', '{"timezone": "America/New_York"}'),
  ('lower@example.com', '{"timezone": "america/new_york"}'),
  ('est@example.com', '{"timezone": "EST5EDT"}'),
  ('etc@example.com', '{"timezone": "Etc/GMT+5"}'),
  ('posix1@example.com', '{"timezone": "UTC+5"}'),
  ('posix2@example.com', '{"timezone": "ABC-5:30"}'),
  ('posix3@example.com', '{"timezone": "EST5EDT,M3.2.0,M11.1.0"}'),
  ('posix4@example.com', '{"timezone": "<+0530>-5:30"}'),
  ('none@example.com', '{}');
SELECT count(meisa_enroll(email, 'win')) FROM meisa.contacts;
UPDATE meisa.enrollments SET next_run_at = '2030-01-07 06:00+00';
SELECT meisa_run_due('2030-01-07 06:00+00');
SELECT c.email, e.next_run_at
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY c.email;
-- many distinct POSIX values: the backend's time zone cache does not grow
CREATE TEMP TABLE tzmem AS
SELECT coalesce(sum(total_bytes), 0) AS bytes FROM pg_backend_memory_contexts WHERE name = 'Timezones';
INSERT INTO meisa.contacts (email, custom_fields)
SELECT 'tz' || i || '@example.com',
       jsonb_build_object('timezone', 'ABC-' || (i / 60) % 24 || ':' || i % 60 || ':' || i % 7)
  FROM generate_series(1, 2000) i;
SELECT count(meisa_enroll(email, 'win')) FROM meisa.contacts WHERE email LIKE 'tz%';
UPDATE meisa.enrollments SET next_run_at = '2030-01-07 06:00+00' WHERE status = 'active';
SELECT meisa_run_due('2030-01-07 06:00+00');
SELECT count(*) AS waiting, min(next_run_at), max(next_run_at)
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id WHERE c.email LIKE 'tz%';
SELECT coalesce(sum(total_bytes), 0) - (SELECT bytes FROM tzmem) < 1000000 AS tz_cache_bounded
  FROM pg_backend_memory_contexts WHERE name = 'Timezones';

-- 3. a failure at the very end of the timestamp range is retried at its
-- last instant, never stored outside the valid range
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

-- 4. a render failure of meisa_trigger_email names the template and the
-- part being rendered (CONTEXT), also for the header check of the subject
INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES
  ('loop', 'transactional', 'Loop', '<p>{{> loop}}</p>', 'ok'),
  ('subj', 'transactional', 'Hi {{data.name}}', NULL, 'ok');
SELECT meisa_trigger_email('loop', '{"email": "r@example.com"}');
SELECT meisa_trigger_email('subj', '{"email": "r@example.com", "data_variables": {"name": "a\nBcc: x@y.io"}}');
SELECT count(*) AS contacts_left_behind FROM meisa.contacts WHERE email = 'r@example.com';
