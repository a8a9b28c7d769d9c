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
