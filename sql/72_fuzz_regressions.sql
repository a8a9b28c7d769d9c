-- Hostile inputs kept as regressions: every input that once broke meisa
-- (first block) and representatives of each class the fuzz harness sends
-- (test/hardening/fuzz.py).  Errors are shown by SQLSTATE only, so the test
-- pins the documented code, not the wording.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;
\set VERBOSITY sqlstate

-- ---------------------------------------------------------------------
-- Found by the security test during integration: meisa.jsonb_diff kept a
-- pointer into its reused path buffer as the key of each entry, so keys came
-- out empty or truncated ("" instead of "a", "custom_fields" instead of
-- "custom_fields.plan") and read freed memory once the path outgrew the
-- buffer.  Keys must be exact, also for paths over 1 kB.
SELECT meisa.jsonb_diff('{"a": 1, "b": "x"}', '{"a": 2, "b": "x"}');
SELECT meisa.jsonb_diff('{"custom_fields": {"plan": "free"}}', '{"custom_fields": {"plan": "pro", "n": 1}}');
SELECT k IN ('a', 'z', repeat('k', 1500) || '.' || repeat('m', 1500)) AS exact_key, length(k)
  FROM jsonb_object_keys(meisa.jsonb_diff(
         jsonb_build_object('a', 1, repeat('k', 1500), jsonb_build_object(repeat('m', 1500), 1), 'z', 1),
         jsonb_build_object('a', 2, repeat('k', 1500), jsonb_build_object(repeat('m', 1500), 2), 'z', 2))) k
 ORDER BY 2;
SELECT meisa_upsert('{"email": "diff@example.com", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT meisa_upsert('{"email": "diff@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS changed;

-- ---------------------------------------------------------------------
-- Representatives of the fuzz classes: a documented SQLSTATE, never a crash,
-- never a partial write.
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

-- ---------------------------------------------------------------------
-- Restore mode is for restores only: a non-superuser session that turns
-- check_function_bodies off (migration tools and SQL-file loaders do) must
-- not switch off change tracking and automations for its API calls.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_meisa_fz_app;
RESET client_min_messages;
CREATE ROLE regress_meisa_fz_app IN ROLE meisa_app;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('fz_created', 'contact_created', '[{"add_tag": "tracked"}]');
SET ROLE regress_meisa_fz_app;
SET check_function_bodies = false;
SELECT meisa_upsert('{"email": "  Bodies@Example.com ", "custom_fields": {"plan": "free"}}') ->> 'created' AS created;
SELECT meisa_add_tag('bodies@example.com', 'vip') IS NOT NULL AS tagged;
RESET check_function_bodies;
RESET ROLE;
SELECT email, tags FROM meisa.contacts WHERE email = 'bodies@example.com';
SELECT a.kind FROM meisa.activity a JOIN meisa.contacts c ON c.id = a.contact_id
 WHERE c.email = 'bodies@example.com' ORDER BY a.id;
DROP ROLE regress_meisa_fz_app;
