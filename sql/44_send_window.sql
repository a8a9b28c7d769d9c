-- Send windows: a step that falls due outside the window (days, local hours)
-- waits for the next opening, in the contact's custom_fields.timezone or
-- else the sequence's time zone.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('w1', 'marketing', 'One', 'one'), ('w2', 'marketing', 'Two', 'two');
-- weekdays 09:00-17:00, Berlin time by default
INSERT INTO meisa.sequences (name, send_days, send_start, send_end, timezone)
VALUES ('weekday', '{1,2,3,4,5}', '09:00', '17:00', 'Europe/Berlin');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT s.id, v.position, v.delay::interval, v.template
  FROM meisa.sequences s, (VALUES (1, '0', 'w1'), (2, '1 day', 'w2')) v(position, delay, template)
 WHERE s.name = 'weekday';
INSERT INTO meisa.contacts (email, custom_fields) VALUES
  ('berlin@example.com', '{}'),
  ('ny@example.com', '{"timezone": "America/New_York"}'),
  ('mars@example.com', '{"timezone": "Mars/Base"}');   -- unknown: the sequence's zone
SELECT count(meisa_enroll(email, 'weekday')) FROM meisa.contacts;

-- due on Saturday 2030-01-05 12:00 UTC: everyone waits for Monday 09:00 local
UPDATE meisa.enrollments SET next_run_at = '2030-01-05 12:00+00';
SELECT meisa_run_due('2030-01-05 12:00+00') AS advanced;
SELECT c.email, e.current_step, e.next_run_at,
       e.next_run_at AT TIME ZONE COALESCE(c.custom_fields->>'timezone', 'Europe/Berlin') AS local_time
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id
 WHERE c.email <> 'mars@example.com' ORDER BY c.email;
SELECT e.next_run_at FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id
 WHERE c.email = 'mars@example.com';
SELECT count(*) AS messages FROM meisa.messages;

-- Monday 08:00 UTC = 09:00 Berlin: Berlin (and the unknown zone) send
SELECT meisa_run_due('2030-01-07 08:00+00') AS advanced;
-- Monday 13:59 UTC = 08:59 New York: not yet; 14:00 UTC: New York sends
SELECT meisa_run_due('2030-01-07 13:59+00') AS advanced;
SELECT meisa_run_due('2030-01-07 14:00+00') AS advanced;
SELECT c.email, e.current_step, e.next_run_at FROM meisa.enrollments e
  JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY c.email;

-- Tuesday 16:30 UTC = 17:30 Berlin (closed, waits for Wednesday 09:00)
-- = 11:30 New York (open: sends)
SELECT meisa_run_due('2030-01-08 16:30+00') AS advanced;
SELECT c.email, e.status, e.current_step, e.next_run_at FROM meisa.enrollments e
  JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY c.email;
SELECT meisa_run_due('2030-01-09 08:00+00') AS advanced;
SELECT c.email, m.template_key, count(*) FROM meisa.messages m
  JOIN meisa.contacts c ON c.id = m.contact_id GROUP BY 1, 2 ORDER BY 1, 2;

-- the closing time is exclusive; Friday after closing waits for Monday
INSERT INTO meisa.contacts (email) VALUES ('friday@example.com');
SELECT meisa_enroll('friday@example.com', 'weekday') AS friday \gset
UPDATE meisa.enrollments SET next_run_at = '2030-01-11 16:00+00' WHERE id = :friday;
SELECT meisa_run_due('2030-01-11 16:00+00') AS advanced;
SELECT next_run_at FROM meisa.enrollments WHERE id = :friday;

-- daylight saving time: Berlin moves to UTC+2 on Sunday 2030-03-31, so
-- Monday 09:00 Berlin is 07:00 UTC
INSERT INTO meisa.contacts (email) VALUES ('dst@example.com');
SELECT meisa_enroll('dst@example.com', 'weekday') AS dst \gset
UPDATE meisa.enrollments SET next_run_at = '2030-03-30 12:00+00' WHERE id = :dst;
SELECT meisa_run_due('2030-03-30 12:00+00') AS advanced;
SELECT next_run_at FROM meisa.enrollments WHERE id = :dst;

-- hours without days (every day), and days without hours (the whole day)
INSERT INTO meisa.sequences (name, send_start, send_end) VALUES ('evenings', '20:00', '22:00');
INSERT INTO meisa.sequences (name, send_days) VALUES ('weekends', '{6,7}');
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
SELECT id, 1, 'w1' FROM meisa.sequences WHERE name IN ('evenings', 'weekends');
INSERT INTO meisa.contacts (email) VALUES ('eve@example.com');
SELECT meisa_enroll('eve@example.com', 'evenings') AS eve, meisa_enroll('eve@example.com', 'weekends') AS wkd \gset
UPDATE meisa.enrollments SET next_run_at = '2030-01-07 23:00+00' WHERE id IN (:eve, :wkd);
SELECT meisa_run_due('2030-01-07 23:00+00') AS advanced;
SELECT s.name, e.next_run_at FROM meisa.enrollments e JOIN meisa.sequences s ON s.id = e.sequence_id
 WHERE e.id IN (:eve, :wkd) ORDER BY s.name;
SELECT meisa_run_due('2030-01-08 20:00+00') AS advanced;
SELECT meisa_run_due('2030-01-12 00:00+00') AS advanced;
SELECT s.name, e.status FROM meisa.enrollments e JOIN meisa.sequences s ON s.id = e.sequence_id
 WHERE e.id IN (:eve, :wkd) ORDER BY s.name;

-- a contact's custom_fields.timezone counts only when it is a name of
-- the time zone database; a POSIX specification ("ABC-5", "UTC+5") is
-- ignored (the sequence's zone is used).  pg_tzset() caches every zone it
-- resolves for the life of the backend, so distinct POSIX values in
-- contact data would grow the backend without bound (24 kB each).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
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
