-- The examples of README.md and the reference in docs/*.md, one by one:
--  1. meisa.sequences.timezone takes names of the time zone database only,
--     as docs/messages.md says ("a name of the time zone database"; POSIX
--     specifications such as UTC+5 are not taken, as for
--     custom_fields.timezone).  pg_tzset() took 'UTC+5', 'ABC-5:30' and
--     'EST5EDT,M3.2.0,M11.1.0' before.
--  2. the argument names of README.md, docs/contacts.md and
--     docs/automations.md: named-argument calls of the API.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';

-- 1. -------------------------------------------------------------------
INSERT INTO meisa.sequences (name, timezone) VALUES ('posix1', 'UTC+5');
INSERT INTO meisa.sequences (name, timezone) VALUES ('posix2', 'ABC-5:30');
INSERT INTO meisa.sequences (name, timezone) VALUES ('posix3', 'EST5EDT,M3.2.0,M11.1.0');
INSERT INTO meisa.sequences (name, timezone) VALUES ('posix4', '<+0530>-5:30');
INSERT INTO meisa.sequences (name, timezone) VALUES ('unknown', 'Mars/Base');
INSERT INTO meisa.sequences (name, timezone) VALUES ('empty', '');
-- names of the database, any letter case, digits included
INSERT INTO meisa.sequences (name, timezone) VALUES
  ('utc', 'UTC'), ('ny', 'america/new_york'), ('est', 'EST5EDT'),
  ('etc', 'Etc/GMT+5'), ('gmt0', 'GMT0'), ('berlin', 'Europe/Berlin');
SELECT name, timezone FROM meisa.sequences ORDER BY name;
-- UPDATE is checked too
UPDATE meisa.sequences SET timezone = 'UTC+5' WHERE name = 'utc';
-- and a valid zone still drives the send window
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('w1', 'marketing', 'W', 'w');
UPDATE meisa.sequences SET send_start = '09:00', send_end = '17:00' WHERE name = 'etc';
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
  SELECT id, 1, interval '0', 'w1' FROM meisa.sequences WHERE name = 'etc';
SELECT meisa_upsert('{"email": "walk@example.com"}') ->> 'created' AS created;
SELECT meisa_enroll('walk@example.com', 'etc') IS NOT NULL AS enrolled;
-- 10:00 UTC is 05:00 in Etc/GMT+5 (UTC-5): waits for 09:00 local = 14:00 UTC
SELECT meisa_run_due('2036-12-07 10:00+00');
SELECT status, current_step, next_run_at FROM meisa.enrollments;

-- 2. -------------------------------------------------------------------
SELECT meisa_upsert(payload => '{"email": "named@example.com", "first_name": "N"}') ->> 'created' AS created;
SELECT meisa_track(event_name => 'named.event', payload => '{"email": "named@example.com"}') > 0 AS tracked;
SELECT meisa_add_tag(email => 'named@example.com', tag => 'x'),
       meisa_remove_tag(email => 'named@example.com', tag => 'x');
SELECT meisa_unsubscribe(email_or_token => 'named@example.com', reason => 'complained'),
       meisa_resubscribe(email => 'named@example.com');
SELECT meisa_unsubscribe(email_or_token => 'named@example.com');
SELECT reason FROM meisa.unsubscribed_emails WHERE email = 'named@example.com';
SELECT meisa_record_bounce(email => 'named@example.com', kind => 'soft'),
       meisa_record_complaint(email => 'named@example.com');
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('t1', 'transactional', 'T', 'Hi {{data.x}}');
SELECT meisa_trigger_email(trigger_key => 't1', payload => '{"email": "named@example.com", "data_variables": {"x": 1}}') > 0 AS queued;
SELECT meisa_enroll(email => 'named@example.com', sequence => 'utc') IS NOT NULL AS enrolled,
       meisa_unenroll(email => 'named@example.com', sequence => 'utc') AS unenrolled;
SELECT meisa_run_due(at => '2036-12-07 10:00+00');
SELECT meisa_run_due();
SET meisa.smtp_url = '';
SELECT meisa_deliver(max => 5);
RESET meisa.smtp_url;
SELECT meisa.render(template => '{{a}} {{> p}}', data => '{"a": "<b>"}', partials => '{"p": "{{a}}!"}');
SELECT meisa.render(template => '{{a}}', data => '{"a": "<b>"}');
SELECT meisa.render_text(template => '{{a}}', data => '{"a": "<b>"}');
SELECT meisa.validate_template(template => '{{#a}}{{/a}}', field => 'html');
SELECT meisa.jsonb_diff(old => '{"a": 1}', new => '{"a": 2}');
SELECT meisa.condition_test(conditions => '{"has_tag": "x"}', contact => '{"tags": ["x"]}');
