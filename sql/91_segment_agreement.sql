-- The SQL a segment rule compiles to (rebuilds, meisa.segment_count,
-- meisa.segment_preview) and the C evaluator (writes, events, checks,
-- meisa.condition_test) give the same answer: random contacts whose fields
-- mix numbers, numeric strings, ISO times, plain strings and booleans, and
-- random rules over every test of the language, compared contact by contact.
SET client_min_messages = warning;
TRUNCATE meisa.contacts, meisa.activity, meisa.events, meisa.automations, meisa.automation_runs,
         meisa.segments, meisa.segment_members, meisa.segment_checks, meisa.segment_changes CASCADE;
RESET client_min_messages;
SELECT setseed(0.4242);

-- a value of a custom field: number, numeric string, time string, date,
-- plain string, boolean; or nothing
CREATE FUNCTION pg_temp.rand_value() RETURNS jsonb LANGUAGE sql VOLATILE AS $$
  SELECT (ARRAY[
    to_jsonb(floor(random() * 12)::int - 2),
    to_jsonb(round((random() * 10)::numeric, 1)),
    to_jsonb((floor(random() * 12)::int - 2)::text),
    to_jsonb(to_char(timestamptz '2026-01-01 00:00+00' + random() * interval '400 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
    to_jsonb(to_char(date '2025-12-01' + floor(random() * 500)::int, 'YYYY-MM-DD')),
    to_jsonb((ARRAY['pro', 'free', 'Pro', 'p', 'pro plan', '5a', ''])[1 + floor(random() * 7)::int]),
    to_jsonb(random() < 0.5),
    NULL::jsonb])[1 + floor(random() * 8)::int]
$$;

-- 1,500 contacts
SELECT count(meisa_upsert(jsonb_build_object(
         'email', 'a' || i || '@example.com',
         'first_name', (ARRAY['Ann', 'ann', 'Bo', '7', '2026-05-01'])[1 + floor(random() * 5)::int],
         'custom_fields', jsonb_strip_nulls(jsonb_build_object('a', pg_temp.rand_value(), 'b', pg_temp.rand_value(),
                                                              'c', pg_temp.rand_value())),
         'tag_names', to_jsonb(ARRAY(SELECT t FROM unnest(ARRAY['x', 'y', 'z']) t WHERE random() < 0.4)))))
  FROM generate_series(1, 1500) i;
-- events in the last 30 days (and a few ahead)
INSERT INTO meisa.events (contact_id, name, occurred_at)
SELECT c.id, (ARRAY['post', 'login'])[1 + floor(random() * 2)::int],
       now() - random() * interval '30 days' + interval '1 day'
  FROM meisa.contacts c, generate_series(1, 3) g WHERE random() < 0.5;
INSERT INTO meisa.segments (name, conditions) VALUES ('seed', '{"any": [{"has_tag": "x"}, {"field": "custom_fields.a", "gte": 3}]}');

-- a random literal, list or object of tests
CREATE FUNCTION pg_temp.rand_literal() RETURNS jsonb LANGUAGE sql VOLATILE AS $$
  SELECT (ARRAY[
    to_jsonb(floor(random() * 12)::int - 2),
    to_jsonb(round((random() * 10)::numeric, 1)),
    to_jsonb((floor(random() * 12)::int - 2)::text),
    to_jsonb(to_char(timestamptz '2026-01-01 00:00+00' + random() * interval '400 days', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
    to_jsonb(to_char(date '2025-12-01' + floor(random() * 500)::int, 'YYYY-MM-DD')),
    to_jsonb((ARRAY['pro', 'free', 'Pro', 'p', 'pro plan', 'a', 'An', '', '7'])[1 + floor(random() * 9)::int]),
    to_jsonb(random() < 0.5)])[1 + floor(random() * 7)::int]
$$;

-- a random test on a field
CREATE FUNCTION pg_temp.rand_field() RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  path text := (ARRAY['custom_fields.a', 'custom_fields.b', 'custom_fields.c', 'custom_fields.none',
                      'first_name', 'email', 'subscribed', 'tags', 'created_at'])[1 + floor(random() * 9)::int];
  op text := (ARRAY['eq', 'ne', 'gt', 'gte', 'lt', 'lte', 'in', 'not_in', 'contains', 'starts_with',
                    'exists', 'within_last', 'older_than', 'eq_tests'])[1 + floor(random() * 14)::int];
  v jsonb;
BEGIN
  CASE op
    WHEN 'in', 'not_in' THEN v := jsonb_build_array(pg_temp.rand_literal(), pg_temp.rand_literal(), pg_temp.rand_literal());
    WHEN 'starts_with' THEN v := to_jsonb((ARRAY['p', 'pr', 'A', '20', '', '-'])[1 + floor(random() * 6)::int]);
    WHEN 'exists' THEN v := to_jsonb(random() < 0.5);
    WHEN 'within_last', 'older_than' THEN v := to_jsonb((ARRAY['3 days', '1 month', '2 hours', '200 days'])[1 + floor(random() * 4)::int]);
    WHEN 'eq_tests' THEN
      op := 'eq';
      v := jsonb_build_object((ARRAY['gte', 'gt', 'ne', 'older_than', 'exists'])[1 + floor(random() * 5)::int], NULL);
      v := CASE WHEN v ? 'older_than' THEN jsonb_build_object('older_than', '30 days', 'lt', pg_temp.rand_literal())
                WHEN v ? 'exists' THEN jsonb_build_object('exists', random() < 0.5, 'ne', pg_temp.rand_literal())
                ELSE jsonb_build_object((SELECT k FROM jsonb_object_keys(v) k), pg_temp.rand_literal(),
                                        'lte', pg_temp.rand_literal()) END;
    ELSE v := pg_temp.rand_literal();
  END CASE;
  RETURN jsonb_build_object('field', path, op, v);
END $$;

-- a random rule, nested up to 'depth'
CREATE FUNCTION pg_temp.rand_rule(depth int) RETURNS jsonb LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  k int := floor(random() * (CASE WHEN depth > 0 THEN 10 ELSE 6 END))::int;
BEGIN
  RETURN CASE k
    WHEN 0 THEN jsonb_build_object('has_tag', (ARRAY['x', 'y', 'q'])[1 + floor(random() * 3)::int])
    WHEN 1 THEN jsonb_build_object('lacks_tag', (ARRAY['x', 'z'])[1 + floor(random() * 2)::int])
    WHEN 2 THEN jsonb_build_object('performed', (ARRAY['post', 'login', 'none'])[1 + floor(random() * 3)::int],
                                   'count', jsonb_build_object((ARRAY['gte', 'lt', 'eq', 'in'])[1 + floor(random() * 4)::int],
                                                               CASE WHEN random() < 0.2 THEN '[0, 2]'::jsonb
                                                                    ELSE to_jsonb(floor(random() * 4)::int) END),
                                   'within', (ARRAY['7 days', '1 month', '12 hours'])[1 + floor(random() * 3)::int])
    WHEN 3 THEN jsonb_build_object((ARRAY['in_segment', 'not_in_segment'])[1 + floor(random() * 2)::int], 'seed')
    WHEN 6 THEN jsonb_build_object('all', jsonb_build_array(pg_temp.rand_rule(depth - 1), pg_temp.rand_rule(depth - 1)))
    WHEN 7 THEN jsonb_build_object('any', jsonb_build_array(pg_temp.rand_rule(depth - 1), pg_temp.rand_rule(depth - 1)))
    WHEN 8 THEN jsonb_build_object('not', pg_temp.rand_rule(depth - 1))
    WHEN 9 THEN jsonb_build_object('all', jsonb_build_array(pg_temp.rand_field(), pg_temp.rand_rule(depth - 1),
                                                            pg_temp.rand_field()))
    ELSE pg_temp.rand_field()
  END;
END $$;

CREATE TEMP TABLE rules AS SELECT i AS n, pg_temp.rand_rule(2) AS rule FROM generate_series(1, 400) i;
CREATE TEMP TABLE cdata AS SELECT c.id, meisa.contact_data(c.id) AS d FROM meisa.contacts c;

-- every rule on every contact: ids the SQL selects vs ids the C evaluator accepts
CREATE TEMP TABLE disagreements AS
SELECT r.n, r.rule, x.id, x.by_sql
  FROM rules r
 CROSS JOIN LATERAL (
   (SELECT p.id, true AS by_sql FROM meisa.segment_preview(r.rule, 100000) p
    EXCEPT SELECT d.id, true FROM cdata d WHERE meisa.condition_test(r.rule, d.d))
   UNION ALL
   (SELECT d.id, false FROM cdata d WHERE meisa.condition_test(r.rule, d.d)
    EXCEPT SELECT p.id, false FROM meisa.segment_preview(r.rule, 100000) p)) x;

SELECT (SELECT count(*) FROM rules) * (SELECT count(*) FROM cdata) AS cases,
       (SELECT count(*) FROM disagreements) AS disagreements;
-- the rules are not trivial: they select very different shares of contacts
SELECT count(*) FILTER (WHERE share = 0) > 10 AS some_select_none,
       count(*) FILTER (WHERE share = 1500) > 10 AS some_select_all,
       count(*) FILTER (WHERE share > 0 AND share < 1500) > 100 AS many_select_some
  FROM (SELECT r.n, meisa.segment_count(r.rule) AS share FROM rules r) s;
-- (on a disagreement: the first few, with the contact's data)
SELECT g.n, g.rule, g.by_sql, c.d FROM disagreements g JOIN cdata c ON c.id = g.id ORDER BY g.n, g.id LIMIT 5;
