-- The event-count test {"performed": name, "count": {TEST: N}, "within": span}
-- over meisa.events, in automations and through meisa.condition_test();
-- contact_created conditions read the creation's change set.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

INSERT INTO meisa.automations (name, trigger, trigger_filter, conditions, actions) VALUES
  ('regular', 'custom_event', 'login',
   '{"performed": "login", "count": {"gte": 3}, "within": "7 days"}', '[{"add_tag": "regular"}]'),
  ('first export', 'custom_event', 'export',
   '{"all": [{"performed": "export", "count": {"eq": 1}}, {"event": "properties.format", "in": ["csv", "xlsx"]}]}',
   '[{"add_tag": "exporter"}]'),
  ('pro signup', 'contact_created', NULL,
   '{"field": "custom_fields.plan", "changed_to": "pro"}', '[{"add_tag": "pro-at-signup"}]');

-- two old logins (outside the window) and two recent ones: not yet 3 within 7 days
SELECT meisa_track('login', jsonb_build_object('email', 'ann@example.com', 'occurred_at', now() - interval '30 days')) > 0 AS old1;
SELECT meisa_track('login', jsonb_build_object('email', 'ann@example.com', 'occurred_at', now() - interval '8 days')) > 0 AS old2;
SELECT meisa_track('login', jsonb_build_object('email', 'ann@example.com', 'occurred_at', now() - interval '6 days')) > 0 AS recent1;
SELECT meisa_track('login', '{"email": "ann@example.com"}') > 0 AS recent2;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
-- the third within the window
SELECT meisa_track('login', '{"email": "ann@example.com"}') > 0 AS recent3;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';

-- counting per contact and name; the current event counts
SELECT meisa_track('export', '{"email": "bob@example.com", "properties": {"format": "pdf"}}') > 0 AS pdf_first;
SELECT tags FROM meisa.contacts WHERE email = 'bob@example.com';
SELECT meisa_track('export', '{"email": "cat@example.com", "properties": {"format": "csv"}}') > 0 AS csv_first;
SELECT tags FROM meisa.contacts WHERE email = 'cat@example.com';
SELECT meisa_track('export', '{"email": "bob@example.com", "properties": {"format": "csv"}}') > 0 AS csv_second;
SELECT tags FROM meisa.contacts WHERE email = 'bob@example.com';

-- through meisa.condition_test with the contact's data
SELECT meisa.condition_test('{"performed": "login"}', meisa.contact_data(c.id)) AS at_least_once,
       meisa.condition_test('{"performed": "login", "count": {"eq": 5}}', meisa.contact_data(c.id)) AS five_ever,
       meisa.condition_test('{"performed": "login", "count": {"eq": 3}, "within": "1 week"}', meisa.contact_data(c.id)) AS three_in_week,
       meisa.condition_test('{"performed": "login", "count": {"gt": 1, "lt": 3}, "within": "1 day"}', meisa.contact_data(c.id)) AS two_today,
       meisa.condition_test('{"performed": "login", "count": {"in": [4, 5]}, "within": "10 days"}', meisa.contact_data(c.id)) AS four_in_ten_days,
       meisa.condition_test('{"performed": "logout"}', meisa.contact_data(c.id)) AS never,
       meisa.condition_test('{"performed": "logout", "count": {"eq": 0}}', meisa.contact_data(c.id)) AS zero,
       meisa.condition_test('{"not": {"performed": "login", "within": "2 hours 30 minutes"}}', meisa.contact_data(c.id)) AS not_recently
  FROM meisa.contacts c WHERE c.email = 'ann@example.com';
-- without a contact id there is nothing to count
SELECT meisa.condition_test('{"performed": "login"}', '{}') AS no_contact,
       meisa.condition_test('{"performed": "login", "count": {"lt": 1}}', '{"email": "x@y.z"}') AS none_counted;

-- contact_created: the creation's change set has every field with old null
SELECT meisa_upsert('{"email": "dan@example.com", "custom_fields": {"plan": "pro"}}') ->> 'created' AS created;
SELECT meisa_upsert('{"email": "eve@example.com", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT email, tags FROM meisa.contacts WHERE email IN ('dan@example.com', 'eve@example.com') ORDER BY email;

SELECT a.name, c.email, r.status FROM meisa.automation_runs r
  JOIN meisa.automations a ON a.id = r.automation_id JOIN meisa.contacts c ON c.id = r.contact_id ORDER BY r.id;
