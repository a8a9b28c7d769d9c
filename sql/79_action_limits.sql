-- Actions that would fail on every run are rejected when the automation is
-- written, against the limits a contact write is checked with: a tag that
-- meisa.max_tag_length (or the other tag rules) refuses in add_tag or
-- remove_tag, a set_field setting more than meisa.max_custom_fields fields.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

-- SQLSTATE: message
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; m text;
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
  RETURN st || ': ' || m;
END $$;
CREATE FUNCTION pg_temp.rule(name text, actions jsonb) RETURNS text LANGUAGE sql AS
  $$ SELECT pg_temp.try(format('INSERT INTO meisa.automations (name, trigger, actions) VALUES (%L, %L, %L)',
                               name, 'contact_created', actions)) $$;
CREATE FUNCTION pg_temp.fields(n int, v jsonb) RETURNS jsonb LANGUAGE sql AS
  $$ SELECT jsonb_build_object('set_field', jsonb_object_agg('custom_fields.f' || g, v))
       FROM generate_series(1, n) AS g $$;

-- tags: over meisa.max_tag_length (64 characters, not bytes), empty, control characters
SELECT name, pg_temp.rule(name, actions) AS result FROM (VALUES
  ('tag_1000', jsonb_build_array(jsonb_build_object('add_tag', repeat('x', 1000)))),
  ('tag_65', jsonb_build_array(jsonb_build_object('add_tag', repeat('x', 65)))),
  ('tag_64', jsonb_build_array(jsonb_build_object('add_tag', repeat('x', 64)))),
  ('tag_64_multibyte', jsonb_build_array(jsonb_build_object('add_tag', repeat('é', 64)))),
  ('tag_65_multibyte', jsonb_build_array(jsonb_build_object('add_tag', repeat('é', 65)))),
  ('tag_padded', jsonb_build_array(jsonb_build_object('add_tag', '  ' || repeat('x', 64) || '  '))),
  ('remove_1000', jsonb_build_array('{"add_tag": "ok"}'::jsonb, jsonb_build_object('remove_tag', repeat('y', 1000)))),
  ('tag_blank', '[{"add_tag": "   "}]'),
  ('tag_del', jsonb_build_array(jsonb_build_object('add_tag', E'a\x7fb'))),
  ('tag_c1', jsonb_build_array(jsonb_build_object('remove_tag', E'a\u0085b')))) AS t(name, actions)
ORDER BY name;

-- set_field: at most meisa.max_custom_fields (100) fields set; removals (null) do not count
SELECT name, pg_temp.rule(name, actions) AS result FROM (VALUES
  ('set_10000', jsonb_build_array(pg_temp.fields(10000, '1'))),
  ('set_101', jsonb_build_array('{"add_tag": "ok"}'::jsonb, pg_temp.fields(101, '"v"'))),
  ('set_100', jsonb_build_array(pg_temp.fields(100, 'true'))),
  ('remove_500', jsonb_build_array(pg_temp.fields(500, 'null')))) AS t(name, actions)
ORDER BY name;

-- the limits are the settings of the session that writes the rule
SET meisa.max_tag_length = 10;
SELECT pg_temp.rule('tag_11', '[{"add_tag": "eleven-char"}]') AS tag_11;
SET meisa.max_custom_fields = 3;
SELECT pg_temp.rule('set_4', jsonb_build_array(pg_temp.fields(4, '1'))) AS set_4;
RESET meisa.max_tag_length;
RESET meisa.max_custom_fields;
-- an UPDATE is validated like an INSERT
SELECT pg_temp.try($$UPDATE meisa.automations SET actions = jsonb_build_array(jsonb_build_object('add_tag', repeat('z', 100)))
                      WHERE name = 'tag_64'$$) AS update_to_long_tag;

-- what was accepted runs: every firing is done, none failed; a padded
-- remove_tag is trimmed like the tags it removes
INSERT INTO meisa.automations (name, trigger, actions)
  VALUES ('untag', 'contact_created', '[{"remove_tag": "  vip  "}]');
INSERT INTO meisa.contacts (email, tags) VALUES ('ann@example.com', '{vip}');
SELECT a.name, r.status, r.error FROM meisa.automation_runs r JOIN meisa.automations a ON a.id = r.automation_id
 ORDER BY a.name;
SELECT tags, (SELECT count(*) FROM jsonb_object_keys(custom_fields)) AS custom_fields
  FROM meisa.contacts;
