-- Sending policy: meisa.frequency_cap (marketing mail over the cap is
-- suppressed, a sequence step waits), meisa.quiet_hours (marketing mail
-- waits for their end, in the contact's zone, across midnight and DST),
-- local-time broadcasts; transactional mail is never capped or delayed.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';
SET meisa.from_address = 'news@example.com';
COPY (SELECT 'policy-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_94';
SET meisa.secret_file = 'meisa_regress_key_94';

-- the settings are checked
SET meisa.frequency_cap = 'three per day';
SET meisa.frequency_cap = '0 per day';
SET meisa.frequency_cap = '3 per';
SET meisa.frequency_cap = '3 per 0 days';
SET meisa.frequency_cap = '3 per fortnight';
SET meisa.frequency_cap = '3 per 7 days extra';
SET meisa.frequency_cap = '1 per day';
SET meisa.frequency_cap = '10 per 30 minutes';
SET meisa.frequency_cap = '5 per 2 Weeks';
SET meisa.frequency_cap = '';
SET meisa.quiet_hours = '25:00-08:00';
SET meisa.quiet_hours = '21:00-21:00';
SET meisa.quiet_hours = '9-17';
SET meisa.quiet_hours = '21:00 08:00';
SET meisa.quiet_hours = '21:60-08:00';
SET meisa.quiet_hours = '21:00-08:00';
SET meisa.quiet_hours = ' 01:00 - 05:30 ';
SET meisa.quiet_hours = '';
SET meisa.default_timezone = 'Mars/Base';
SET meisa.default_timezone = 'UTC+5';
SET meisa.default_timezone = 'Europe/Berlin';
RESET meisa.default_timezone;
SET meisa.broadcast_batch_size = 0;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('promo', 'marketing', 'Promo', 'p'),
  ('receipt', 'transactional', 'Receipt', 'r');
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('promo on tag', 'tag_added', '[{"send_email": "promo"}]');
SELECT meisa_upsert(format('{"email": "p%s@example.com"}', i)::jsonb) ->> 'created' FROM generate_series(1, 4) i;

-- ---- frequency cap: 2 per 7 days
SET meisa.frequency_cap = '2 per 7 days';
SELECT meisa_add_tag('p1@example.com', 'a'), meisa_add_tag('p1@example.com', 'b'), meisa_add_tag('p1@example.com', 'c');
SELECT template_key, status, last_error FROM meisa.messages WHERE to_email = 'p1@example.com' ORDER BY id;
-- transactional mail is never capped
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('welcome', 'transactional', 'Hi', 'h');
SELECT meisa_trigger_email('welcome', '{"email": "p1@example.com"}') > 0 AS sent,
       meisa_trigger_email('welcome', '{"email": "p1@example.com"}') > 0 AS again;
SELECT kind, status, count(*) FROM meisa.messages WHERE to_email = 'p1@example.com' GROUP BY 1, 2 ORDER BY 1, 2;
-- cancelled, suppressed and failed messages do not count
UPDATE meisa.messages SET status = 'cancelled'
 WHERE id = (SELECT min(id) FROM meisa.messages WHERE to_email = 'p1@example.com' AND status = 'queued');
SELECT meisa_add_tag('p1@example.com', 'd');
SELECT template_key, status, last_error FROM meisa.messages WHERE to_email = 'p1@example.com' AND kind = 'marketing' ORDER BY id;
-- messages older than the window do not count
UPDATE meisa.messages SET created_at = now() - interval '8 days' WHERE to_email = 'p1@example.com';
SELECT meisa_add_tag('p1@example.com', 'e');
SELECT status, last_error FROM meisa.messages WHERE to_email = 'p1@example.com' ORDER BY id DESC LIMIT 1;

-- a sequence step over the cap waits until the oldest counted message
-- leaves the window, then is sent
SELECT meisa_add_tag('p2@example.com', 'a'), meisa_add_tag('p2@example.com', 'b');
UPDATE meisa.messages SET created_at = '2036-01-01 10:00+00' WHERE to_email = 'p2@example.com' AND template_key = 'promo'
   AND id = (SELECT min(id) FROM meisa.messages WHERE to_email = 'p2@example.com');
UPDATE meisa.messages SET created_at = '2036-01-03 10:00+00' WHERE to_email = 'p2@example.com' AND template_key = 'promo'
   AND id = (SELECT max(id) FROM meisa.messages WHERE to_email = 'p2@example.com');
INSERT INTO meisa.sequences (name) VALUES ('drip');
INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'promo' FROM meisa.sequences;
SELECT meisa_enroll('p2@example.com', 'drip') > 0 AS enrolled;
SELECT meisa_run_due('2036-01-04 00:00+00');
SELECT status, current_step, next_run_at FROM meisa.enrollments;
SELECT meisa_run_due('2036-01-08 09:59+00');
SELECT status, current_step, next_run_at FROM meisa.enrollments;
SELECT meisa_run_due('2036-01-08 10:00+00');
SELECT status, current_step FROM meisa.enrollments;
SELECT count(*) AS p2_messages FROM meisa.messages WHERE to_email = 'p2@example.com';

-- a broadcast message over the cap is suppressed
SELECT meisa_add_tag('p3@example.com', 'a'), meisa_add_tag('p3@example.com', 'b');
INSERT INTO meisa.broadcasts (name, template) VALUES ('capped', 'promo');
SELECT meisa_schedule_broadcast('capped');
SELECT meisa_run_due();
SELECT m.to_email, m.status, m.last_error FROM meisa.messages m
  JOIN meisa.broadcasts b ON b.id = m.broadcast_id WHERE b.name = 'capped' ORDER BY m.contact_id;
RESET meisa.frequency_cap;

-- ---- quiet hours: marketing mail queued inside them waits for their end
-- (quiet hours from an hour ago to an hour from now, in UTC)
SELECT set_config('meisa.quiet_hours',
                  to_char(now() - interval '1 hour', 'HH24:MI') || '-' || to_char(now() + interval '1 hour', 'HH24:MI'),
                  false) IS NOT NULL AS set;
SELECT meisa_upsert('{"email": "q1@example.com"}') ->> 'created',
       meisa_upsert('{"email": "q2@example.com", "custom_fields": {"timezone": "Etc/GMT-12"}}') ->> 'created';
SELECT meisa_add_tag('q1@example.com', 'a'), meisa_add_tag('q2@example.com', 'a');
SELECT meisa_trigger_email('welcome', '{"email": "q1@example.com"}') > 0 AS queued;
SELECT to_email, kind,
       next_attempt_at > now() AS waits,
       to_char(next_attempt_at, 'HH24:MI') = to_char(now() + interval '1 hour', 'HH24:MI') AS until_the_end,
       next_attempt_at <= now() + interval '1 hour' AS within_the_hour
  FROM meisa.messages WHERE to_email LIKE 'q%' ORDER BY id;
-- at send time too: a message queued before quiet hours began goes back to
-- the queue until they end, not attempted
RESET meisa.quiet_hours;
SELECT meisa_add_tag('q1@example.com', 'b');
SELECT set_config('meisa.quiet_hours',
                  to_char(now() - interval '1 hour', 'HH24:MI') || '-' || to_char(now() + interval '1 hour', 'HH24:MI'),
                  false) IS NOT NULL AS set;
UPDATE meisa.messages SET status = 'cancelled'
 WHERE status = 'queued' AND (next_attempt_at > now() OR kind = 'transactional' OR to_email <> 'q1@example.com');
SELECT count(*) AS queued_now FROM meisa.messages WHERE status = 'queued';
SET meisa.smtp_url = 'smtp://127.0.0.1:9';
SET meisa.unsubscribe_base_url = 'https://example.com/u/';
SELECT meisa_deliver(10);
SELECT to_email, status, attempts, next_attempt_at > now() AS waits FROM meisa.messages
 WHERE to_email = 'q1@example.com' AND status = 'queued';
RESET meisa.smtp_url;
RESET meisa.quiet_hours;

-- ---- local-time broadcasts, quiet hours across midnight and DST
-- (2036-03-09 is the day New York and Los Angeles move to summer time)
SET meisa.default_timezone = 'America/New_York';
SET meisa.quiet_hours = '21:00-08:00';
SET meisa.broadcast_batch_size = 100;
UPDATE meisa.messages SET status = 'cancelled' WHERE status = 'queued';
INSERT INTO meisa.segments (name, conditions) VALUES ('zoned', '{"field": "custom_fields.zone_test", "eq": true}');
SELECT meisa_upsert(jsonb_build_object('email', e, 'custom_fields', jsonb_build_object('zone_test', true) || z)) ->> 'created'
  FROM (VALUES ('z-default@example.com', '{}'::jsonb),
               ('z-berlin@example.com', '{"timezone": "Europe/Berlin"}'),
               ('z-tokyo@example.com', '{"timezone": "Asia/Tokyo"}'),
               ('z-la@example.com', '{"timezone": "America/Los_Angeles"}'),
               ('z-bad@example.com', '{"timezone": "Mars/Base"}')) v(e, z);
-- 12:00 local: no quiet hours, each contact at its own noon
INSERT INTO meisa.broadcasts (name, template, segment, local_time) VALUES ('noon', 'promo', 'zoned', true);
SELECT meisa_schedule_broadcast('noon', '2036-03-09 12:00 America/New_York');
-- due once noon comes in the earliest zone (14 hours east of UTC)
SELECT meisa_run_due('2036-03-08 21:00+00');
SELECT status FROM meisa.broadcasts WHERE name = 'noon';
SELECT meisa_run_due('2036-03-08 22:00+00');
-- 07:30 local: inside quiet hours, moved to 08:00 local
INSERT INTO meisa.broadcasts (name, template, segment, local_time) VALUES ('early', 'promo', 'zoned', true);
SELECT meisa_schedule_broadcast('early', '2036-03-09 07:30 America/New_York');
-- 22:30 local the night before: quiet hours across midnight and, in New
-- York and Los Angeles, across the change to summer time
INSERT INTO meisa.broadcasts (name, template, segment, local_time) VALUES ('late', 'promo', 'zoned', true);
SELECT meisa_schedule_broadcast('late', '2036-03-08 22:30 America/New_York');
SELECT meisa_run_due('2036-03-09 23:00+00');
SELECT b.name, m.to_email, m.next_attempt_at,
       to_char(m.next_attempt_at AT TIME ZONE coalesce(c.custom_fields ->> 'timezone', 'America/New_York'), 'YYYY-MM-DD HH24:MI') AS local
  FROM meisa.messages m JOIN meisa.broadcasts b ON b.id = m.broadcast_id
  JOIN meisa.contacts c ON c.id = m.contact_id
 WHERE b.local_time AND c.custom_fields ->> 'timezone' IS DISTINCT FROM 'Mars/Base'
 ORDER BY b.id, m.contact_id;
-- an unknown zone is the default one
SELECT b.name, m.next_attempt_at FROM meisa.messages m JOIN meisa.broadcasts b ON b.id = m.broadcast_id
 WHERE m.to_email = 'z-bad@example.com' ORDER BY b.id;
-- quiet hours ending in the hour skipped by the change to summer time:
-- the end (02:30) is read as standard time, 03:30 summer time
SET meisa.quiet_hours = '01:00-02:30';
INSERT INTO meisa.broadcasts (name, template, segment, local_time) VALUES ('gap', 'promo', 'zoned', true);
SELECT meisa_schedule_broadcast('gap', '2036-03-09 01:30 America/New_York');
SELECT meisa_run_due('2036-03-09 23:00+00');
SELECT m.next_attempt_at, to_char(m.next_attempt_at AT TIME ZONE 'America/New_York', 'HH24:MI TZ') AS local
  FROM meisa.messages m JOIN meisa.broadcasts b ON b.id = m.broadcast_id
 WHERE b.name = 'gap' AND m.to_email = 'z-default@example.com';
SELECT * FROM meisa.check_invariants();
