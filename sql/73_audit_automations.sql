-- Regression tests of the fourth audit of the automation engine (issue 4):
-- cascade state rolled back with a failed automation, plain-text notify
-- messages, "eq" with an object of tests on a missing value, the
-- event-name check of a custom_event trigger_filter, and the error of a
-- send_email whose template became transactional.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';

CREATE FUNCTION runs() RETURNS TABLE (name text, trigger text, status text, actions_done int, depth int, error text)
  LANGUAGE sql AS $$ SELECT a.name, r.trigger, r.status, r.actions_done, r.depth, r.error
    FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id $$;

-- 1. A failed automation's subtransaction is rolled back, and so is what its
-- cascade remembered: an automation that ran (and was rolled back) inside
-- it is not "already ran" afterwards.  Here a-before's add_tag cascades at
-- depth 1 into b-broken, whose own add_tag cascades at depth 2 into c-after;
-- b-broken then fails (a CR/LF subject), rolling c-after's run back.  c-after
-- must still run (at depth 1) instead of being "stopped" without ever acting.
INSERT INTO meisa.templates (key, kind, subject, html) VALUES
  ('crlf', 'marketing', 'Hi {{{custom_fields.s}}}', '<p>x</p>');
INSERT INTO meisa.automations (name, trigger, position, actions) VALUES
  ('a-before', 'contact_updated', 0, '[{"add_tag": "before"}]'),
  ('b-broken', 'contact_updated', 1,
   '[{"add_tag": "partial"}, {"notify": {"channel": "x", "message": "m"}}, {"send_email": "crlf"}]'),
  ('c-after', 'contact_updated', 2, '[{"add_tag": "after"}]');
SELECT meisa_upsert('{"email": "ann@example.com"}') ->> 'created' AS created;
SELECT meisa_upsert(jsonb_build_object('email', 'ann@example.com',
                    'custom_fields', jsonb_build_object('s', E'x\r\nBcc: evil@example.com'))) ->> 'changed' AS changed;
-- the write committed; a-before and c-after acted, b-broken left nothing
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT count(*) AS notifications FROM meisa.notifications;
SELECT count(*) AS messages FROM meisa.messages;
SELECT * FROM runs();
SELECT name, matched, done, failed, stopped FROM meisa.automation_stats ORDER BY automation_id;
DELETE FROM meisa.automations;
DELETE FROM meisa.contacts;

-- 2. notify messages are plain text: {{name}} is not HTML-escaped
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('welcome note', 'contact_created',
   '[{"notify": {"channel": "sales", "message": "{{first_name}} <{{email}}> signed up: {{custom_fields.plan}}"}}]'),
  ('event note', 'custom_event',
   '[{"notify": {"channel": "sales", "message": "{{email}} did {{data.what}}"}}]');
SELECT meisa_upsert('{"email": "tom@example.com", "first_name": "Tom & Jerry O''Brien", "custom_fields": {"plan": "a<b>"}}') ->> 'created' AS created;
SELECT meisa_track('quote', '{"email": "tom@example.com", "properties": {"what": "\"this\" & that"}}') > 0 AS tracked;
SELECT channel, message FROM meisa.notifications ORDER BY id;
DELETE FROM meisa.automations;

-- 3. "eq" with an object of tests holds when every test holds, also for a
-- missing (or null) value: {"exists": false} and "ne" hold there
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": false}}', '{}') AS eq_exists_false_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": false}}',
                            '{"custom_fields": {"x": null}}') AS eq_exists_false_null;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": false}}',
                            '{"custom_fields": {"x": 1}}') AS eq_exists_false_present;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"exists": true}}', '{}') AS eq_exists_true_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"gte": 5}}', '{}') AS eq_gte_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"ne": 5}}', '{}') AS eq_ne_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": {"gte": 5, "lt": 10}}',
                            '{"custom_fields": {"x": 7}}') AS eq_range_present;
-- unchanged: a literal or a list never equals a missing value; ne holds
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": 5}', '{}') AS eq_literal_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "eq": [5, 6]}', '{}') AS eq_list_missing;
SELECT meisa.condition_test('{"field": "custom_fields.x", "ne": {"gte": 5}}', '{}') AS ne_tests_missing;

-- 4. the trigger_filter of a custom_event automation must be an event name
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('bad filter', 'custom_event', 'feature activated', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('long filter', 'custom_event', repeat('e', 101), '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('good filter', 'custom_event', 'app:feature.activated-v2_x', '[{"add_tag": "x"}]');
-- tags are not event names: any non-empty tag filter is accepted
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('tag filter', 'tag_added', 'paying customer', '[{"add_tag": "x"}]');
SELECT name, trigger_filter FROM meisa.automations ORDER BY id;

-- 5. a time literal without an offset is read in the session time zone when
-- the rule is evaluated, not when the backend compiled and cached it
DELETE FROM meisa.automations;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('same day', 'contact_updated', '{"field": "custom_fields.d", "changed_to": "2024-02-01"}',
   '[{"add_tag": "same-day"}]'),
  ('nine local', 'contact_updated', '{"field": "custom_fields.t", "changed_to": "2024-02-01T09:00"}',
   '[{"add_tag": "nine-local"}]'),
  ('utc literal', 'contact_updated', '{"field": "custom_fields.u", "changed_to": "2024-02-01T00:00:00Z"}',
   '[{"add_tag": "utc-literal"}]');
SELECT meisa_upsert('{"email": "tz@example.com", "custom_fields": {"d": "2020-01-01"}}') ->> 'created' AS created;
-- the rules are compiled and cached under UTC
SELECT meisa_upsert('{"email": "tz@example.com", "custom_fields": {"d": "2020-01-02"}}') ->> 'changed' AS changed;
SET timezone = 'Asia/Tokyo';
SELECT meisa_upsert('{"email": "tz@example.com", "custom_fields": {"d": "2024-02-01", "t": "2024-02-01T00:00:00Z", "u": "2024-02-01T09:00:00+09:00"}}') ->> 'changed' AS changed;
SELECT tags FROM meisa.contacts WHERE email = 'tz@example.com';
SET timezone = 'UTC';

-- 6. a send_email whose template was switched to transactional after the rule
-- was saved: a failed run whose error says what kind the template is
DELETE FROM meisa.automations;
INSERT INTO meisa.templates (key, kind, subject, html) VALUES ('m2', 'marketing', 'Hi', '<p>hi</p>');
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('send m2', 'contact_updated', '[{"send_email": "m2"}]');
UPDATE meisa.templates SET kind = 'transactional' WHERE key = 'm2';
SELECT meisa_upsert('{"email": "kind@example.com"}') ->> 'created' AS created;
SELECT meisa_upsert('{"email": "kind@example.com", "first_name": "K"}') ->> 'changed' AS changed;
SELECT name, status, error FROM runs() WHERE name = 'send m2';
SELECT count(*) AS messages FROM meisa.messages WHERE template_key = 'm2';

DROP FUNCTION runs();
