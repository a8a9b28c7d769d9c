-- meisa_upsert: creation, identity, merge rules, the no-op login sync, errors.
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
-- a new contact: email normalised, tags normalised, every field reported
SELECT meisa_upsert('{"email": "  Ann@Example.COM ", "external_id": "u1", "first_name": "Ann",
  "last_name": "Lee", "custom_fields": {"plan": "free", "posts": 3, "beta": true, "gone": null},
  "tag_names": [" trial ", "alpha", "trial"], "subscribed": true}');
SELECT id, email, external_id, first_name, last_name, custom_fields, tags, subscribed,
       unsubscribe_reason, unsubscribed_at IS NULL AS never_unsubscribed, created_at = updated_at AS fresh
  FROM meisa.contacts;
-- the creation is derived from the row (meisa.activity stores updates only)
SELECT kind, detail FROM meisa.contact_activity WHERE kind = 'created' ORDER BY contact_id;
SELECT count(*) AS activity_rows FROM meisa.activity;
-- the login sync: the same payload again writes nothing (no row version, no activity)
SELECT xmin AS x1 FROM meisa.contacts WHERE id = 1 \gset
SELECT meisa_upsert('{"email": "ann@example.com", "external_id": "u1", "first_name": "Ann",
  "last_name": "Lee", "custom_fields": {"plan": "free", "posts": 3.0, "gone": null},
  "tag_names": ["alpha"], "subscribed": true}');
SELECT xmin::text = :'x1' AS xmin_unchanged, created_at = updated_at AS not_touched FROM meisa.contacts WHERE id = 1;
SELECT count(*) AS activity_rows FROM meisa.activity;
SELECT meisa_upsert('{"email": "ann@example.com"}');
SELECT meisa_upsert('{"external_id": "u1"}');
SELECT meisa_upsert('{"external_id": "u1", "custom_fields": {}, "tag_names": []}');
SELECT xmin::text = :'x1' AS xmin_unchanged FROM meisa.contacts WHERE id = 1;
-- custom_fields merge: given keys set, omitted kept, null removes
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"plan": "pro", "posts": null, "seats": 5}}');
SELECT custom_fields FROM meisa.contacts WHERE id = 1;
SELECT detail FROM meisa.activity ORDER BY id DESC LIMIT 1;
SELECT xmin::text <> :'x1' AS xmin_moved, updated_at > created_at AS updated FROM meisa.contacts WHERE id = 1;
-- tag_names only adds
SELECT meisa_upsert('{"email": "ann@example.com", "tag_names": ["beta", "alpha"]}');
SELECT tags FROM meisa.contacts WHERE id = 1;
SELECT detail FROM meisa.activity ORDER BY id DESC LIMIT 1;
-- names: a string sets, JSON null clears, empty string is kept as given
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Annie", "last_name": null}');
SELECT first_name, last_name FROM meisa.contacts WHERE id = 1;
SELECT meisa_upsert('{"email": "ann@example.com", "last_name": ""}');
SELECT last_name = '' AS empty_last_name FROM meisa.contacts WHERE id = 1;
-- subscribed: false unsubscribes (reason and time recorded), true subscribes again
SELECT meisa_upsert('{"email": "ann@example.com", "subscribed": false}');
SELECT subscribed, unsubscribe_reason, unsubscribed_at IS NOT NULL AS has_time FROM meisa.contacts WHERE id = 1;
SELECT meisa_upsert('{"email": "ann@example.com", "subscribed": false}');
SELECT meisa_upsert('{"email": "ann@example.com", "subscribed": true}');
SELECT subscribed, unsubscribe_reason FROM meisa.contacts WHERE id = 1;
-- identity: external_id finds the contact; a different email is an email change
SELECT meisa_upsert('{"external_id": "u1", "email": "Ann.New@Example.com"}');
SELECT id, email, external_id FROM meisa.contacts WHERE id = 1;
SELECT detail FROM meisa.activity ORDER BY id DESC LIMIT 1;
-- a contact found by email without external_id gets the one given
SELECT meisa_upsert('{"email": "bob@example.com"}');
SELECT meisa_upsert('{"email": "bob@example.com", "external_id": 42}');
SELECT id, email, external_id FROM meisa.contacts ORDER BY id;
SELECT meisa_upsert('{"external_id": 42, "first_name": "Bob"}');
-- conflicts are errors (23505), never merges, and write nothing
SELECT count(*) AS contacts, sum(xmin::text::bigint) AS versions FROM meisa.contacts \gset
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "bob@example.com", "external_id": "u1"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "bob@example.com", "external_id": "other"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"external_id": 42, "email": "ann.new@example.com"}')$$);
-- identity errors
SELECT pg_temp.try($$SELECT meisa_upsert('{"external_id": "nobody"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"first_name": "X"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{}')$$);
-- payload errors name the key or field (22023)
SELECT p, pg_temp.try(format('SELECT meisa_upsert(%L)', p)) FROM (VALUES
  ('{"email": "c@example.com", "name": "C"}'),
  ('{"email": "c@example.com", "tags": ["x"]}'),
  ('[]'), ('"c@example.com"'), ('null'), ('42'),
  ('{"email": null}'), ('{"email": 5}'), ('{"email": "not-an-email"}'), ('{"email": "c@localhost"}'),
  ('{"email": "c@example.com", "external_id": ""}'),
  ('{"email": "c@example.com", "external_id": 1.5}'),
  ('{"email": "c@example.com", "external_id": true}'),
  ('{"email": "c@example.com", "external_id": "a\u0001b"}'),
  ('{"email": "c@example.com", "first_name": 7}'),
  ('{"email": "c@example.com", "first_name": "tab\there"}'),
  ('{"email": "c@example.com", "custom_fields": null}'),
  ('{"email": "c@example.com", "custom_fields": []}'),
  ('{"email": "c@example.com", "custom_fields": {"1st": 1}}'),
  ('{"email": "c@example.com", "custom_fields": {"": 1}}'),
  ('{"email": "c@example.com", "custom_fields": {"has-dash": 1}}'),
  ('{"email": "c@example.com", "custom_fields": {"nested": {"a": 1}}}'),
  ('{"email": "c@example.com", "custom_fields": {"list": [1, 2]}}'),
  ('{"email": "c@example.com", "tag_names": "vip"}'),
  ('{"email": "c@example.com", "tag_names": [1]}'),
  ('{"email": "c@example.com", "tag_names": [null]}'),
  ('{"email": "c@example.com", "tag_names": ["  "]}'),
  ('{"email": "c@example.com", "tag_names": ["a\nb"]}'),
  ('{"email": "c@example.com", "subscribed": "yes"}'),
  ('{"email": "c@example.com", "subscribed": null}')
) v(p);
SELECT pg_temp.try($$SELECT meisa_upsert(NULL)$$);
SELECT pg_temp.try(format('SELECT meisa_upsert(%L)', jsonb_build_object('email', 'c@example.com', 'first_name', repeat('x', 256))));
SELECT pg_temp.try(format('SELECT meisa_upsert(%L)', jsonb_build_object('email', 'c@example.com', repeat('k', 100), 1)));
SELECT pg_temp.try(format('SELECT meisa_upsert(%L)', jsonb_build_object('email', 'c@example.com', 'custom_fields', jsonb_build_object(repeat('f', 65), 1))));
SELECT count(*) FROM meisa.contacts WHERE email = 'c@example.com';
-- a custom field name may be 64 characters; numbers, booleans and strings are kept as given
SELECT meisa_upsert(jsonb_build_object('email', 'c@example.com', 'custom_fields',
       jsonb_build_object('_' || repeat('f', 63), 1, 'ratio', 0.25, 'ok', false, 'Name_2', 'x')))->'changed';
-- nothing else was written by the failures
SELECT count(*) - 1 = :contacts AS same_count FROM meisa.contacts;
SELECT sum(xmin::text::bigint) FILTER (WHERE email <> 'c@example.com') = :versions AS same_versions FROM meisa.contacts;
-- the contact as data
SELECT meisa.contact_data(1) - 'created_at' - 'updated_at';
SELECT meisa.contact_data(999);

-- a call that changes nothing writes nothing: every API function, no new
-- row version and no activity row
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
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

-- rows imported with explicit ids leave the identity sequence behind: the
-- API says so (23505 with the fix as hint) instead of "concurrent writes"
-- (40001) after burning 20 ids, and writes nothing
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
RESET client_min_messages;
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
