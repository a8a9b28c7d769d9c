-- meisa.jsonb_diff: flattened change sets.
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
SELECT meisa.jsonb_diff('{}', '{}');
SELECT meisa.jsonb_diff('{"a": 1}', '{"a": 1}');
SELECT meisa.jsonb_diff('{"a": 1}', '{"a": 1.0}');
SELECT meisa.jsonb_diff('{"plan": "free"}', '{"plan": "pro"}');
-- added and removed keys; JSON null counts as absent
SELECT meisa.jsonb_diff('{"a": 1, "b": null}', '{"c": true, "b": null}');
-- nested objects flatten into dotted paths
SELECT meisa.jsonb_diff('{"custom_fields": {"plan": "free", "seats": 1}, "email": "a@x.io"}',
                        '{"custom_fields": {"plan": "pro", "seats": 1}, "email": "b@x.io"}');
SELECT meisa.jsonb_diff('{"a": {"b": {"c": 1}}}', '{"a": {"b": {"c": 2, "d": 3}}}');
-- arrays are compared whole and list the added and removed elements
SELECT meisa.jsonb_diff('{"tags": ["a", "b"]}', '{"tags": ["b", "c"]}');
SELECT meisa.jsonb_diff('{}', '{"tags": ["a"]}');
SELECT meisa.jsonb_diff('{"tags": [{"x": 1}, 2]}', '{"tags": [2]}');
-- a value that changes kind (object <-> scalar)
SELECT meisa.jsonb_diff('{"a": {"b": 1}}', '{"a": 5}');
SELECT meisa.jsonb_diff('{"a": "s"}', '{"a": {"b": true}}');
-- SQL NULL is an empty object
SELECT meisa.jsonb_diff(NULL, '{"a": 1}');
SELECT meisa.jsonb_diff('{"a": 1}', NULL);
-- arguments must be objects
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('[1]', '{}')$$);
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('{}', '3')$$);
-- deep nesting is fine up to the stack limit, then a clean error
SELECT length(meisa.jsonb_diff('{}', (repeat('{"a":', 500) || '1' || repeat('}', 500))::jsonb)::text);

-- jsonb_diff of two large arrays takes O(n log n) time and is cancellable:
-- 60000-element arrays finish well within statement_timeout
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

-- keys are the exact paths ("a", "custom_fields.plan"), also for paths
-- over 1 kB, and changed* conditions see them
SELECT meisa.jsonb_diff('{"a": 1, "b": "x"}', '{"a": 2, "b": "x"}');
SELECT meisa.jsonb_diff('{"custom_fields": {"plan": "free"}}', '{"custom_fields": {"plan": "pro", "n": 1}}');
SELECT k IN ('a', 'z', repeat('k', 1500) || '.' || repeat('m', 1500)) AS exact_key, length(k)
  FROM jsonb_object_keys(meisa.jsonb_diff(
         jsonb_build_object('a', 1, repeat('k', 1500), jsonb_build_object(repeat('m', 1500), 1), 'z', 1),
         jsonb_build_object('a', 2, repeat('k', 1500), jsonb_build_object(repeat('m', 1500), 2), 'z', 2))) k
 ORDER BY 2;
SELECT meisa_upsert('{"email": "diff@example.com", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT meisa_upsert('{"email": "diff@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS changed;
