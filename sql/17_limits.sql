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
