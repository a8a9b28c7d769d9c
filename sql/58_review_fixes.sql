-- Regression tests of review fixes in the automation engine: time spans
-- that reach before the earliest timestamp, and a rule that cannot be
-- compiled while the rule cache loads.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

-- "within_last"/"older_than"/"within" spans up to the accepted maximum
-- (110000 months): now() minus such a span is before 4714 BC, which the
-- comparison treats as the beginning of time instead of failing
SELECT meisa.condition_test('{"field": "created_at", "within_last": "10000 years"}',
                            '{"created_at": "2020-01-01T00:00:00Z"}') AS within_10000y;
SELECT meisa.condition_test('{"field": "created_at", "older_than": "10000 years"}',
                            '{"created_at": "2020-01-01T00:00:00Z"}') AS older_10000y;
SELECT meisa.condition_test('{"performed": "login", "within": "10000 years"}',
                            '{"id": 1}') AS performed_10000y;
SELECT meisa.condition_test('{"field": "created_at", "within_last": "1000000 days 9999999 hours"}',
                            '{"created_at": "2020-01-01T00:00:00Z"}') AS within_huge_days;
-- an hour count that would overflow the span's microseconds is invalid
SELECT meisa.condition_test(jsonb_build_object('field', 'created_at', 'within_last',
                            repeat('9999999 hours ', 3)), '{}');

-- in an automation: the rule holds and the application's write succeeds
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('ancient', 'contact_updated', '{"field": "created_at", "within_last": "10000 years"}',
   '[{"add_tag": "recent"}]'),
  ('ever', 'contact_updated', '{"performed": "login", "within": "10000 years"}',
   '[{"add_tag": "logged-in"}]');
SELECT meisa_track('login', '{"email": "ann@example.com"}') > 0 AS tracked;
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann"}') ->> 'changed' AS changed;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT a.name, r.status, r.error FROM meisa.automation_runs r
  JOIN meisa.automations a ON a.id = r.automation_id ORDER BY r.id;

-- a condition nested deeper than the stack allows is an invalid rule (22023
-- naming the rule), not a stack overflow error
CREATE FUNCTION pg_temp.try_rule(rule jsonb) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RETURN meisa.condition_test(rule, '{"tags": []}')::text;
EXCEPTION WHEN others THEN
  RETURN SQLSTATE || ' ' || regexp_replace(SQLERRM, '[0-9]+ levels', 'N levels');
END $$;
SELECT pg_temp.try_rule((repeat('{"not": ', 100) || '{"has_tag": "x"}' || repeat('}', 100))::jsonb) AS levels_101;
SELECT pg_temp.try_rule((repeat('[', 200) || '{"has_tag": "x"}' || repeat(']', 200))::jsonb) AS levels_201;
SELECT pg_temp.try_rule((repeat('{"not": ', 10000) || '{"has_tag": "x"}' || repeat('}', 10000))::jsonb) AS levels_10001;
DO $$
BEGIN
  INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
    ('deep', 'contact_updated',
     (repeat('{"not": ', 10000) || '{"has_tag": "x"}' || repeat('}', 10000))::jsonb,
     '[{"add_tag": "deep"}]');
EXCEPTION WHEN others THEN
  RAISE NOTICE 'rejected: % %', SQLSTATE, regexp_replace(SQLERRM, '[0-9]+ levels', 'N levels');
END $$;

-- a row stored without validation (a restore with triggers disabled): the
-- rule cache records it as a failing automation and the write succeeds
ALTER TABLE meisa.automations DISABLE TRIGGER automations_validate;
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('deep', 'contact_updated',
   (repeat('{"not": ', 10000) || '{"has_tag": "x"}' || repeat('}', 10000))::jsonb,
   '[{"add_tag": "deep"}]');
ALTER TABLE meisa.automations ENABLE TRIGGER automations_validate;
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Anne"}') ->> 'changed' AS changed;
-- and again: the rules are those of the table, not an older cache
SELECT meisa_upsert('{"email": "ann@example.com", "last_name": "Lee"}') ->> 'changed' AS changed;
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT r.status, regexp_replace(r.error, '[0-9]+ levels', 'N levels') AS error FROM meisa.automation_runs r
  JOIN meisa.automations a ON a.id = r.automation_id WHERE a.name = 'deep';

-- meisa_run_due compiles a step's conditions once per run; a stored rule
-- that does not compile (written with triggers disabled) fails each of its
-- enrolments with the rule's error, which is kept in last_error
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('t1', 'marketing', 'Hi', 'Hello');
INSERT INTO meisa.sequences (name) VALUES ('broken');
ALTER TABLE meisa.sequence_steps DISABLE TRIGGER sequence_steps_check;
INSERT INTO meisa.sequence_steps (sequence_id, position, template, conditions)
  SELECT id, 1, 't1', '{"field": "custom_fields.plan", "gte5": 1}' FROM meisa.sequences WHERE name = 'broken';
ALTER TABLE meisa.sequence_steps ENABLE TRIGGER sequence_steps_check;
SELECT meisa_upsert('{"email": "bob@example.com"}') ->> 'created' AS created;
SELECT meisa_enroll(email, 'broken') > 0 AS enrolled FROM meisa.contacts ORDER BY email;
SELECT meisa_run_due(now() + interval '1 minute') AS advanced;
SELECT c.email, e.status, e.current_step, e.last_error
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY c.email;

-- a write whose automation run fails outside the automation's own
-- subtransaction (here: a trigger on meisa.automation_runs raises), caught
-- by the caller 300 times in one transaction, leaves no rule cache pin
-- behind (there are at most 256 nested pins)
CREATE FUNCTION pg_temp.refuse_run() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'run refused'; END $$;
BEGIN;
CREATE TRIGGER refuse BEFORE INSERT ON meisa.automation_runs
  FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse_run();
DO $$
DECLARE failed int := 0;
BEGIN
  FOR i IN 1..300 LOOP
    BEGIN
      UPDATE meisa.contacts SET first_name = 'try' || i WHERE email = 'ann@example.com';
    EXCEPTION WHEN others THEN
      failed := failed + 1;
    END;
  END LOOP;
  RAISE NOTICE '% writes failed', failed;
END $$;
DROP TRIGGER refuse ON meisa.automation_runs;
UPDATE meisa.contacts SET first_name = 'Ann' WHERE email = 'ann@example.com';
COMMIT;
SELECT first_name FROM meisa.contacts WHERE email = 'ann@example.com';

-- the path in a message about a deeply nested part stops growing after 200
-- bytes (compiling a deep rule costs linear, not quadratic, memory)
SELECT meisa.condition_test((repeat('{"not": ', 60) || '{"has_tag": 1}' || repeat('}', 60))::jsonb, '{}');
-- a stored 3000-deep rule: the backend's rule cache stays small (it held
-- the path strings of every level: about 26 MB for this rule)
DELETE FROM meisa.automations WHERE name = 'deep';
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('deep valid', 'contact_updated',
   (repeat('{"not": ', 3000) || '{"has_tag": "x"}' || repeat('}', 3000))::jsonb,
   '[{"add_tag": "deep-valid"}]');
SELECT meisa_upsert('{"email": "ann@example.com", "first_name": "Ann B"}') ->> 'changed' AS changed;
SELECT sum(total_bytes) < 8 * 1024 * 1024 AS under_8mb
  FROM pg_backend_memory_contexts WHERE name = 'meisa automation cache';
