-- Audit of the foundation (contacts, events, change sets): regressions for
-- what a black-box reading of DESIGN §2/§8 and the README found.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; st text; m text; d text;
BEGIN
  EXECUTE q INTO r;
  RETURN coalesce(r, '(null)');
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || m || coalesce(nullif(' (' || d || ')', ' ()'), '');
END $$;

-- jsonb_diff of two large arrays is O(n log n) and cancellable (it was a
-- scan of one array per element of the other: minutes, deaf to
-- statement_timeout, for any role holding jsonb_diff)
SET statement_timeout = '15s';
SELECT jsonb_array_length(d->'a'->'added') AS added, jsonb_array_length(d->'a'->'removed') AS removed
  FROM (SELECT meisa.jsonb_diff(
          jsonb_build_object('a', (SELECT jsonb_agg(i) FROM generate_series(1, 60000) i)),
          jsonb_build_object('a', (SELECT jsonb_agg(i) FROM generate_series(30001, 90000) i))) AS d) x;
RESET statement_timeout;
-- added/removed: numbers numerically, strings bytewise, containers whole,
-- types apart, order and duplicates kept as in the array
SELECT meisa.jsonb_diff('{"a": [1, "1", true, null, {"k": 1}, [1], 2.0, "b", "b", {"k": 2}]}',
                        '{"a": [1.0, "1", false, null, {"k": 1.0}, [1, 2], 3, "b", {"k": [2]}]}')->'a';
SELECT meisa.jsonb_diff('{"a": []}', '{"a": ["x", "x"]}')->'a', meisa.jsonb_diff('{"a": ["y"]}', '{}')->'a';
-- a non-object argument is named
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('[1]', '{}')$$);
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('{}', '"x"')$$);

-- integer ids obey the 255-character limit (1e300 prints as 301 digits)
SELECT pg_temp.try($$SELECT meisa_track('ev', '{"email": "big@example.com", "event_id": 1e300}')$$);
SELECT pg_temp.try($$SELECT meisa_track('ev', '{"email": "big@example.com", "external_id": 1e300}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "big@example.com", "external_id": 1e300}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "big@example.com", "external_id": 1.5e300}')$$);
SELECT pg_temp.try(format('SELECT meisa_track(%L, %L)', 'ev', jsonb_build_object('email', 'big@example.com', 'event_id', repeat('9', 255)::numeric)));
SELECT count(*) AS contacts, (SELECT count(*) FROM meisa.events) AS events,
       (SELECT max(length(event_id)) FROM meisa.events) AS longest_event_id FROM meisa.contacts;

-- C1 control characters (U+0080-U+009F) are control characters too
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "c1@example.com", "first_name": "a\u0085b"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "c1@example.com", "last_name": "\u009f"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "c1@example.com", "external_id": "x\u0080"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "c1@example.com", "tag_names": ["v\u0090ip"]}')$$);
SELECT pg_temp.try($$SELECT meisa_track('ev', '{"email": "c1@example.com", "event_id": "\u0085"}')$$);
SELECT pg_temp.try(format('SELECT meisa_add_tag(%L, %L)', 'big@example.com', E'x\u0085'));
SELECT count(*) AS c1_contacts FROM meisa.contacts WHERE email = 'c1@example.com';
-- letters beyond them (é U+00E9, U+00A0, U+2028) are still text
SELECT meisa_upsert('{"email": "c1@example.com", "first_name": "Ren\u00e9e\u00a0\u2028", "tag_names": ["caf\u00e9"]}')->'changed';
SELECT length(first_name) AS first_name_length, tags FROM meisa.contacts WHERE email = 'c1@example.com';
INSERT INTO meisa.contacts (email, tags) VALUES ('c1sql@example.com', ARRAY[E'x\u0085']);

-- tag_names: the limit counts the contact's tags after de-duplication
SET meisa.max_tags = 3;
SELECT meisa_upsert(jsonb_build_object('email', 'dup@example.com',
       'tag_names', (SELECT jsonb_agg(' same '::text) FROM generate_series(1, 10))))->'changed';
SELECT meisa_upsert(jsonb_build_object('email', 'dup@example.com',
       'tag_names', (SELECT jsonb_agg('t' || (i % 2)) FROM generate_series(1, 10) i)))->'changed';
SELECT tags FROM meisa.contacts WHERE email = 'dup@example.com';
SELECT meisa_upsert('{"email": "dup@example.com", "tag_names": ["t1", "t1", " same", "same "]}')->'changed';
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "dup@example.com", "tag_names": ["t3", "t3"]}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "dup2@example.com", "tag_names": ["a", "b", "c", "d", "a"]}')$$);
RESET meisa.max_tags;

-- a call that changes nothing writes nothing: every API function, no new
-- row version and no activity row
SELECT meisa_upsert('{"email": "noop@example.com", "external_id": 7, "first_name": "N",
                      "custom_fields": {"n": 1, "s": "x", "b": true}, "tag_names": ["a", "b"]}')->'created';
SELECT meisa_unsubscribe('noop@example.com', 'unsubscribed');
SELECT meisa_record_complaint('noop@example.com');
SELECT xmin AS x0 FROM meisa.contacts WHERE email = 'noop@example.com' \gset
SELECT count(*) AS a0 FROM meisa.activity \gset
SELECT meisa_upsert('{"email": " NOOP@example.com", "external_id": "7", "first_name": "N", "last_name": null,
                      "custom_fields": {"n": 1.0, "gone": null, "b": true}, "tag_names": [" b "],
                      "subscribed": false}');
SELECT meisa_upsert('{"external_id": 7}'), meisa_upsert('{"email": "noop@example.com", "external_id": null}');
SELECT meisa_add_tag('noop@example.com', 'a'), meisa_remove_tag('NOOP@example.com', 'c'),
       meisa_unsubscribe('noop@example.com', 'complained'), meisa_record_complaint('noop@example.com');
SELECT meisa_track('ev', '{"external_id": 7, "event_id": "once"}') = meisa_track('ev', '{"email": "x@example.com", "event_id": "once"}') AS same_event;
SELECT count(*) FROM meisa.contacts WHERE email = 'x@example.com';
SELECT xmin::text = :'x0' AS xmin_unchanged, (SELECT count(*) FROM meisa.activity) = :a0 AS no_activity
  FROM meisa.contacts WHERE email = 'noop@example.com';
-- ... and a failing call leaves nothing behind
SELECT pg_temp.try($$SELECT meisa_upsert('{"external_id": 7, "first_name": "M", "custom_fields": {"bad-name": 1}}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"external_id": 7, "first_name": "M", "tag_names": ["ok", ""]}')$$);
SELECT xmin::text = :'x0' AS xmin_unchanged, (SELECT count(*) FROM meisa.activity) = :a0 AS no_activity
  FROM meisa.contacts WHERE email = 'noop@example.com';

-- CREATE EXTENSION meisa SCHEMA x: the API lives in x, data stays in meisa,
-- and everything (API, triggers, automations) works with x on the path or not
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
CREATE SCHEMA app;
CREATE EXTENSION meisa SCHEMA app;
SELECT p.pronamespace::regnamespace AS schema, count(*) AS api_functions
  FROM pg_proc p WHERE p.proname LIKE 'meisa\_%' GROUP BY 1;
SELECT count(*) AS meisa_tables FROM pg_tables WHERE schemaname = 'meisa';
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
  VALUES ('vip', 'tag_added', 'vip', '[{"add_tag": "seen"}, {"set_field": {"custom_fields.vip": true}}]');
SELECT app.meisa_upsert('{"email": "s@example.com", "tag_names": ["vip"]}')->'changed';
SET search_path = app;
SELECT meisa_add_tag('s@example.com', 'x'), meisa_track('ev', '{"email": "s@example.com"}') IS NOT NULL AS tracked,
       meisa_unsubscribe('s@example.com'), meisa_resubscribe('s@example.com');
RESET search_path;
SELECT email, tags, custom_fields, subscribed FROM meisa.contacts;
SELECT status, count(*) FROM meisa.automation_runs GROUP BY 1;
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
DROP SCHEMA app;
SELECT count(*) AS roles_kept FROM pg_roles WHERE rolname IN ('meisa_app', 'meisa_admin', 'meisa_reader');

-- rows imported with explicit ids leave the identity sequence behind: the
-- API says so (23505 with the fix as hint) instead of "concurrent writes"
-- (40001) after burning 20 ids, and writes nothing
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
INSERT INTO meisa.contacts (id, email) SELECT i, 'imp' || i || '@example.com' FROM generate_series(1, 30) i;
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "new@example.com"}')$$);
SELECT pg_temp.try($$SELECT meisa_track('ev', '{"email": "new@example.com"}')$$);
SELECT count(*) AS contacts, (SELECT count(*) FROM meisa.events) AS events FROM meisa.contacts;
SELECT setval(pg_get_serial_sequence('meisa.contacts', 'id'), max(id)) FROM meisa.contacts;
SELECT meisa_upsert('{"email": "new@example.com"}');
SELECT meisa_track('ev', '{"email": "new2@example.com"}') IS NOT NULL AS tracked;
SELECT id FROM meisa.contacts WHERE email = 'new2@example.com';

-- meisa_track: occurred_at without a zone is in the session TimeZone; an
-- unknown email creates the contact and its contact_created runs before the
-- event's custom_event automations
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
