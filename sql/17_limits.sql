-- Limits and hostile input: settings, sizes, counts, malformed JSON, NUL, nesting, huge strings.
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
SELECT name, setting, unit, context FROM pg_settings
 WHERE name IN ('meisa.max_payload_size', 'meisa.max_custom_fields', 'meisa.max_tags',
                'meisa.max_tag_length', 'meisa.max_property_size') ORDER BY name;
SELECT meisa_upsert('{"email": "ann@example.com", "tag_names": ["a"], "custom_fields": {"f1": 1}}')->'id';
SELECT count(*) AS contacts, max(xmin::text) AS version FROM meisa.contacts \gset
-- 10 MB strings: over the payload limit (54000), and over the field limits when it is raised
SELECT pg_temp.try($$SELECT meisa_upsert(jsonb_build_object('email', 'big@example.com', 'first_name', repeat('x', 10 * 1024 * 1024)))$$);
SELECT pg_temp.try($$SELECT meisa_track('big', jsonb_build_object('email', 'big@example.com', 'properties', jsonb_build_object('x', repeat('x', 10 * 1024 * 1024))))$$);
SET meisa.max_payload_size = '64MB';
SELECT pg_temp.try($$SELECT meisa_upsert(jsonb_build_object('email', 'big@example.com', 'first_name', repeat('x', 10 * 1024 * 1024)))$$);
SELECT pg_temp.try($$SELECT meisa_upsert(jsonb_build_object('email', repeat('x', 10 * 1024 * 1024) || '@example.com'))$$);
SELECT pg_temp.try($$SELECT meisa_upsert(jsonb_build_object('email', 'big@example.com', 'tag_names', jsonb_build_array(repeat('x', 10 * 1024 * 1024))))$$);
SELECT pg_temp.try($$SELECT meisa_upsert(jsonb_build_object('email', 'big@example.com', repeat('k', 10 * 1024 * 1024), 1))$$);
SELECT pg_temp.try($$SELECT meisa_track('big', jsonb_build_object('email', 'big@example.com', 'properties', jsonb_build_object('x', repeat('x', 10 * 1024 * 1024))))$$);
RESET meisa.max_payload_size;
-- payload size limit
SET meisa.max_payload_size = 1024;
SELECT pg_temp.try(format('SELECT meisa_upsert(%L)', jsonb_build_object('email', 'ann@example.com', 'first_name', repeat('x', 1000)))) LIKE '54000: meisa_upsert payload is too large%' AS too_large;
SELECT pg_temp.try(format('SELECT meisa_track(%L, %L)', 'e', jsonb_build_object('email', 'ann@example.com', 'properties', jsonb_build_object('x', repeat('x', 1000))))) LIKE '54000: meisa_track payload is too large%' AS too_large;
RESET meisa.max_payload_size;
-- property size limit
SET meisa.max_property_size = 100;
SELECT pg_temp.try(format('SELECT meisa_track(%L, %L)', 'e', jsonb_build_object('email', 'ann@example.com', 'properties', jsonb_build_object('x', repeat('x', 100)))));
SELECT meisa_track('e', jsonb_build_object('email', 'ann@example.com', 'properties', jsonb_build_object('x', repeat('x', 50)))) > 0 AS fits;
RESET meisa.max_property_size;
-- custom field count (the merged result counts; removing makes room)
SET meisa.max_custom_fields = 3;
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"f2": 2, "f3": 3}}')->'changed';
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"f4": 4}}')$$);
SELECT meisa_upsert('{"email": "ann@example.com", "custom_fields": {"f4": 4, "f1": null}}')->'changed';
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "new@example.com", "custom_fields": {"a": 1, "b": 2, "c": 3, "d": 4}}')$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET custom_fields = '{"a": 1, "b": 2, "c": 3, "d": 4}' RETURNING id$$);
RESET meisa.max_custom_fields;
-- tag count, in every path
SET meisa.max_tags = 2;
SELECT meisa_upsert('{"email": "ann@example.com", "tag_names": ["b", "a"]}')->'changed';
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "ann@example.com", "tag_names": ["c"]}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "new@example.com", "tag_names": ["a", "b", "c"]}')$$);
SELECT pg_temp.try($$SELECT meisa_add_tag('ann@example.com', 'c')$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET tags = '{x,y,z}' RETURNING id$$);
RESET meisa.max_tags;
-- tag length, in characters
SET meisa.max_tag_length = 5;
SELECT meisa_upsert('{"email": "ann@example.com", "tag_names": ["ééééé"]}')->'changed';
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "ann@example.com", "tag_names": ["abcdef"]}')$$);
SELECT pg_temp.try($$SELECT meisa_add_tag('ann@example.com', 'abcdef')$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET tags = '{abcdef}' RETURNING id$$);
RESET meisa.max_tag_length;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
-- malformed JSON and invalid text never reach meisa (PostgreSQL's own input errors)
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": ')$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "a\u0000b@example.com"}')$$);
SELECT pg_temp.try($$SELECT meisa_upsert(convert_from('\x7b22656d61696c223a2022ff227d', 'UTF8')::jsonb)$$);
-- deep nesting: rejected as a custom field value, kept as event properties, and
-- stopped by the stack limit when absurd
SELECT pg_temp.try(format('SELECT meisa_upsert(%L)', '{"email": "ann@example.com", "custom_fields": {"x": ' || repeat('[', 1000) || repeat(']', 1000) || '}}'));
SELECT meisa_track('deep', ('{"email": "ann@example.com", "properties": {"x": ' || repeat('[', 1000) || repeat(']', 1000) || '}}')::jsonb) > 0 AS deep_ok;
SELECT split_part(pg_temp.try(format('SELECT meisa_upsert(%L)', repeat('[', 1000000) || repeat(']', 1000000))), ':', 1);
-- none of the failures above wrote anything
SELECT count(*) FROM meisa.contacts WHERE email IN ('big@example.com', 'new@example.com');
SELECT count(*) = :contacts AS same_count FROM meisa.contacts;
-- only superusers change the limits
CREATE ROLE meisa_limits_test NOLOGIN;
SET ROLE meisa_limits_test;
SELECT pg_temp.try($$SELECT set_config('meisa.max_tags', '100000', false)$$);
RESET ROLE;
DROP ROLE meisa_limits_test;

-- integer ids obey the 255-character limit (1e300 prints as 301 digits)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
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

-- hostile input of every class test/hardening/fuzz.py sends: a documented
-- SQLSTATE (errors shown by SQLSTATE only: the test pins the documented
-- code, not the wording), never a crash, never a partial write
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
\set VERBOSITY sqlstate
-- deep nesting (the server's JSON parser or meisa's recursion limit)
SELECT meisa.jsonb_diff((repeat('{"a":', 100000) || '1' || repeat('}', 100000))::jsonb, '{}') IS NOT NULL;
SELECT meisa.jsonb_diff((repeat('{"a":', 2000) || '1' || repeat('}', 2000))::jsonb, '{}') ->> (repeat('a.', 1999) || 'a') AS deep_leaf;
SELECT meisa_upsert(('{"email": "deep@example.com", "custom_fields": {"x": ' || repeat('[', 5000) || repeat(']', 5000) || '}}')::jsonb);
SELECT meisa.render(repeat('{{#a}}', 5000) || 'x' || repeat('{{/a}}', 5000), '{"a": true}');
-- a partial that includes itself
SELECT meisa.render('{{>p}}', '{}', '{"p": "again {{>p}}"}');
-- huge strings and counts
SELECT meisa_upsert(jsonb_build_object('email', 'huge@example.com', 'first_name', repeat('x', 1000000)));
SELECT meisa_upsert(jsonb_build_object('email', 'many@example.com', 'custom_fields',
         (SELECT jsonb_object_agg('f' || g, g) FROM generate_series(1, 5000) g)));
SELECT meisa_upsert(jsonb_build_object('email', 'tags@example.com', 'tag_names',
         (SELECT jsonb_agg('t' || g) FROM generate_series(1, 10000) g)));
SELECT count(*) AS nothing_written FROM meisa.contacts WHERE email IN ('deep@example.com', 'huge@example.com', 'many@example.com', 'tags@example.com');
-- NUL and invalid input never reach meisa as text; \u0000 in JSON is refused
SELECT meisa_upsert('{"email": "nul\u0000@example.com"}');
SELECT meisa_track('login', '{"email": "a@example.com", "properties": {"k": "\u0000"}}');
-- extreme numbers
SELECT meisa_upsert('{"email": "num@example.com", "custom_fields": {"n": 1e1000, "m": -0, "k": 123456789012345678901234567890}}') ->> 'created' AS big_numbers_created;
SELECT custom_fields - 'n' AS fields, length(custom_fields ->> 'n') AS digits_of_n FROM meisa.contacts WHERE email = 'num@example.com';
SELECT meisa_track('login', '{"email": "num@example.com", "occurred_at": "10000-01-01T00:00:00Z"}');
SELECT meisa_track('login', '{"email": "num@example.com", "occurred_at": "2024-02-30T00:00:00Z"}');
SELECT meisa_track('login', '{"email": "num@example.com", "occurred_at": 1e308}');
-- unicode emails and tags, confusables, control characters
SELECT meisa_upsert('{"email": "ＡＢ＠ＥＸ.ＣＯＭ"}');
SELECT meisa_upsert('{"email": "a\tb@example.com"}');
SELECT meisa_upsert('{"email": "a@b.com\r\nBcc: evil@example.com"}');
SELECT meisa_upsert('{"email": "\"quoted local\"@example.com"}') ->> 'created' AS quoted_with_space_created;
SELECT meisa_upsert('{"email": "\"quoted\"@example.com"}') ->> 'created' AS quoted_created;
SELECT meisa_upsert('{"email": "uni@example.com", "tag_names": ["日本", "émoji😀"]}') ->> 'created' AS unicode_tags_created;
SELECT tags FROM meisa.contacts WHERE email = 'uni@example.com';
SELECT meisa_add_tag('uni@example.com', E'bad\ntag');
-- CR/LF in names must never reach a mail header
INSERT INTO meisa.templates (key, kind, subject, text)
VALUES ('fz_hdr', 'transactional', 'Hello {{first_name}} {{data.x}}', 'Body');
SELECT meisa_upsert('{"email": "crlf@example.com", "first_name": "Ann\r\nBcc: evil@example.com"}');
SELECT meisa_upsert('{"email": "crlf@example.com", "first_name": "Ann"}') ->> 'created' AS crlf_contact_created;
SELECT meisa_trigger_email('fz_hdr', '{"email": "crlf@example.com", "data_variables": {"x": "\r\nBcc: evil@example.com"}}') > 0 AS queued;
SELECT meisa_trigger_email('fz_hdr', '{"email": "crlf@example.com", "data_variables": {"x": "friend"}}') > 0 AS queued;
SELECT subject FROM meisa.messages WHERE template_key = 'fz_hdr';
INSERT INTO meisa.templates (key, kind, subject, text)
VALUES ('fz_hdr2', 'transactional', E'Hi\r\nBcc: evil@example.com', 'Body');
SELECT count(*) AS subjects_with_crlf FROM meisa.messages WHERE subject ~ '[\r\n]';
-- mutated rules and templates are refused whole
INSERT INTO meisa.automations (name, trigger, conditions, actions)
VALUES ('fz_bad1', 'contact_updated', '{"field": "custom_fields.plan", "changed_to": {"in": []}, "bogus": 1}', '[{"add_tag": "x"}]');
INSERT INTO meisa.automations (name, trigger, conditions, actions)
VALUES ('fz_bad2', 'contact_updated', NULL, '[{"add_tag": "x"}, {"enroll": 5}]');
INSERT INTO meisa.automations (name, trigger, conditions, actions)
VALUES ('fz_bad3', 'contact_updated', (repeat('{"not": ', 10000) || '{"has_tag": "x"}' || repeat('}', 10000))::jsonb, '[{"add_tag": "x"}]');
INSERT INTO meisa.templates (key, kind, subject, html) VALUES ('fz_bad4', 'marketing', 'x', '{{#a}}{{/b}}');
SELECT count(*) AS nothing_written FROM meisa.automations WHERE name LIKE 'fz_bad%';
SELECT count(*) AS nothing_written FROM meisa.templates WHERE key LIKE 'fz_bad%';
-- forged and mutated unsubscribe tokens
COPY (SELECT 'regress-secret') TO PROGRAM 'umask 077 && cat > meisa_regress_key_72';
SET meisa.secret_file = 'meisa_regress_key_72';
SELECT meisa_unsubscribe('AAAA.BBBB');
SELECT meisa_unsubscribe(repeat('A', 100000));
SELECT meisa_unsubscribe('');
SELECT count(*) AS nobody_unsubscribed FROM meisa.contacts WHERE NOT subscribed;
RESET meisa.secret_file;
\set VERBOSITY default
SELECT * FROM meisa.check_invariants();
