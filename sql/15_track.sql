-- meisa_track: events, idempotency, contact creation, errors.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
-- try(sql): the first column of the statement's result, or SQLSTATE: message (detail)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; st text; m text; d text;
BEGIN
  EXECUTE q INTO r;
  RETURN coalesce(r, '(null)');
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || m || coalesce(nullif(' (' || d || ')', ' ()'), '');
END $$;
SELECT meisa_upsert('{"email": "ann@example.com", "external_id": "u1"}')->'id';
-- by email, by external_id (number or string); properties kept as given
SELECT meisa_track('post.created', '{"email": "Ann@Example.com", "properties": {"words": 120, "tags": ["x"], "meta": {"a": null}}}');
SELECT meisa_track('login', '{"external_id": "u1"}');
SELECT meisa_track('signup:web', '{"external_id": "u1", "email": "someone-else@example.com"}');
SELECT id, contact_id, name, properties, event_id, occurred_at = created_at AS at_now FROM meisa.events ORDER BY id;
-- occurred_at: ISO 8601, with or without zone
SELECT meisa_track('import_done', '{"email": "ann@example.com", "occurred_at": "2024-03-01T10:15:30Z"}');
SELECT meisa_track('import_done', '{"email": "ann@example.com", "occurred_at": "2024-03-01T10:15:30.123+02:00"}');
SELECT meisa_track('import_done', '{"email": "ann@example.com", "occurred_at": "2024-03-01"}');
SELECT occurred_at AT TIME ZONE 'UTC' FROM meisa.events WHERE name = 'import_done' ORDER BY id;
-- event_id: a repeat returns the first id and records nothing
SELECT meisa_track('paid', '{"email": "ann@example.com", "event_id": "inv-1", "properties": {"amount": 5}}') AS first_id \gset
SELECT meisa_track('paid', '{"email": "ann@example.com", "event_id": "inv-1", "properties": {"amount": 9}}') = :first_id AS same_id;
SELECT meisa_track('paid', '{"email": "new.person@example.com", "event_id": "inv-1"}') = :first_id AS same_id;
SELECT count(*) AS paid_events, max(properties->>'amount') AS amount FROM meisa.events WHERE name = 'paid';
SELECT count(*) AS new_person FROM meisa.contacts WHERE email = 'new.person@example.com';
SELECT meisa_track('paid', '{"email": "ann@example.com", "event_id": 77}') <> :first_id AS other_id;
-- an unknown email creates the contact (its 'created' activity comes first)
SELECT meisa_track('visited', '{"email": "Fresh@Example.com", "external_id": "u9"}') AS ev \gset
SELECT c.email, c.external_id, a.kind FROM meisa.contacts c JOIN meisa.contact_activity a ON a.contact_id = c.id
 WHERE c.email = 'fresh@example.com' AND a.kind = 'created';
SELECT contact_id = (SELECT id FROM meisa.contacts WHERE email = 'fresh@example.com') FROM meisa.events WHERE id = :ev;
-- errors
SELECT count(*) AS events FROM meisa.events \gset
SELECT n, p, pg_temp.try(format('SELECT meisa_track(%L, %L)', n, p)) FROM (VALUES
  ('bad name', '{"email": "ann@example.com"}'),
  ('', '{"email": "ann@example.com"}'),
  (repeat('e', 101), '{"email": "ann@example.com"}'),
  ('ok', '{}'),
  ('ok', '[]'),
  ('ok', '{"email": "ann@example.com", "props": {}}'),
  ('ok', '{"email": "ann@example.com", "properties": []}'),
  ('ok', '{"email": "ann@example.com", "properties": "x"}'),
  ('ok', '{"email": "bad"}'),
  ('ok', '{"external_id": "nobody"}'),
  ('ok', '{"email": "ann@example.com", "external_id": "u9"}'),
  ('ok', '{"email": "ann@example.com", "event_id": ""}'),
  ('ok', '{"email": "ann@example.com", "event_id": {}}'),
  ('ok', '{"email": "ann@example.com", "occurred_at": "yesterday"}'),
  ('ok', '{"email": "ann@example.com", "occurred_at": "2024-13-01T00:00:00Z"}'),
  ('ok', '{"email": "ann@example.com", "occurred_at": "2024-02-30"}'),
  ('ok', '{"email": "ann@example.com", "occurred_at": 1700000000}')
) v(n, p);
SELECT pg_temp.try($$SELECT meisa_track(NULL, '{"email": "ann@example.com"}')$$);
SELECT pg_temp.try($$SELECT meisa_track('x', NULL)$$);
SELECT count(*) = :events AS nothing_recorded FROM meisa.events;
SELECT length(repeat('e', 100)) AS longest_name, meisa_track(repeat('e', 100), '{"email": "ann@example.com"}') > 0 AS ok;

-- meisa_track: occurred_at without a zone is in the session TimeZone; an
-- unknown email creates the contact and its contact_created runs before the
-- event's custom_event automations
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET TimeZone = 'Asia/Tokyo';
SELECT meisa_track('tz', '{"email": "tz@example.com", "occurred_at": "2024-03-01T10:00"}') IS NOT NULL AS tracked;
SELECT meisa_track('tz', '{"email": "tz@example.com", "occurred_at": "2024-03-01 10:00:00+00"}') IS NOT NULL AS tracked;
RESET TimeZone;
SELECT occurred_at AT TIME ZONE 'UTC' AS utc FROM meisa.events WHERE name = 'tz' ORDER BY id;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('on_create', 'contact_created', '[{"add_tag": "created"}]');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES ('on_ev', 'custom_event', 'signup', '[{"add_tag": "signed"}]');
SELECT meisa_track('signup', '{"email": "order@example.com"}') IS NOT NULL AS tracked;
SELECT a.name, r.status FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id;
SELECT tags FROM meisa.contacts WHERE email = 'order@example.com';
