-- Privileges and security (docs/privileges.md): PUBLIC can do nothing; meisa_app calls
-- the API but neither reads contacts nor changes automations; meisa_reader
-- reads the views and writes nothing; meisa_admin configures but cannot read
-- the secrets; objects created by an unprivileged role (a public.lower(), an
-- operator) never run inside meisa's functions and triggers.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;

SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_meisa_nobody;
DROP ROLE IF EXISTS regress_meisa_app;
DROP ROLE IF EXISTS regress_meisa_admin;
DROP ROLE IF EXISTS regress_meisa_reader;
DROP ROLE IF EXISTS regress_meisa_evil;
RESET client_min_messages;
CREATE ROLE regress_meisa_nobody;
CREATE ROLE regress_meisa_app IN ROLE meisa_app;
CREATE ROLE regress_meisa_admin IN ROLE meisa_admin;
CREATE ROLE regress_meisa_reader IN ROLE meisa_reader;
CREATE ROLE regress_meisa_evil;

-- Fixtures, as the superuser.
INSERT INTO meisa.templates (key, kind, subject, text)
VALUES ('sec_receipt', 'transactional', 'Receipt for {{first_name}}', 'Thanks {{data.item}}');
SELECT meisa_upsert('{"email": "owner@example.com", "external_id": "sec-1", "first_name": "Olga"}') ->> 'created' AS fixture_created;

-- ---------------------------------------------------------------------
-- PUBLIC (a role without any meisa role) can use nothing of the extension.
-- Catalog-wide: no extension function executable, no table or view usable,
-- no schema usage.
SELECT count(*) AS public_executable_functions
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
 WHERE has_function_privilege('regress_meisa_nobody', p.oid, 'EXECUTE');
SELECT count(*) AS public_usable_relations
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
 WHERE c.relkind IN ('r', 'v', 'm', 'p')
   AND has_table_privilege('regress_meisa_nobody', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER');
SELECT count(*) AS public_usable_sequences
  FROM pg_class c WHERE c.relnamespace = 'meisa'::regnamespace
   AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege('regress_meisa_nobody', c.oid, 'USAGE,SELECT,UPDATE') END;
SELECT has_schema_privilege('regress_meisa_nobody', 'meisa', 'USAGE') AS public_schema_usage;
SET ROLE regress_meisa_nobody;
SELECT meisa_upsert('{"email": "nobody@example.com"}');
SELECT meisa_track('login', '{"email": "nobody@example.com"}');
SELECT meisa_trigger_email('sec_receipt', '{"email": "nobody@example.com"}');
SELECT meisa_unsubscribe('owner@example.com');
SELECT count(*) FROM meisa.contacts;
SELECT count(*) FROM meisa.unsubscribed_emails;
RESET ROLE;

-- ---------------------------------------------------------------------
-- meisa_app: the API works ...
SET ROLE regress_meisa_app;
SELECT meisa_upsert('{"email": "app@example.com", "first_name": "Ann"}') ->> 'created' AS app_created;
SELECT meisa_track('login', '{"email": "app@example.com"}') > 0 AS app_tracked;
SELECT count(*) AS add_tag_called FROM (SELECT meisa_add_tag('app@example.com', 'beta')) x;
SELECT meisa_trigger_email('sec_receipt', '{"email": "app@example.com", "data_variables": {"item": "tea"}}') > 0 AS app_triggered;
SELECT count(*) AS unsubscribe_called FROM (SELECT meisa_unsubscribe('app@example.com')) x;
SELECT email, reason FROM meisa.unsubscribed_emails ORDER BY email;
-- ... but contacts, events, messages and the rules are out of reach
SELECT count(*) FROM meisa.contacts;
SELECT count(*) FROM meisa.events;
SELECT count(*) FROM meisa.messages;
UPDATE meisa.contacts SET first_name = 'X';
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('app_rule', 'contact_created', '[{"add_tag": "x"}]');
UPDATE meisa.automations SET enabled = false;
DELETE FROM meisa.templates;
SELECT count(*) FROM meisa.templates;
RESET ROLE;

-- ---------------------------------------------------------------------
-- meisa_reader: reads every reporting view, writes nothing, calls no API.
SET ROLE regress_meisa_reader;
SELECT count(*) > 0 AS reader_sees_activity FROM meisa.contact_activity;
SELECT count(*) >= 0 AS reader_sees_funnel FROM meisa.sequence_funnel;
SELECT count(*) >= 0 AS reader_sees_automation_stats FROM meisa.automation_stats;
SELECT count(*) >= 0 AS reader_sees_message_stats FROM meisa.message_stats;
SELECT count(*) AS reader_unsubscribed FROM meisa.unsubscribed_emails;
SELECT meisa_upsert('{"email": "reader@example.com"}');
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('reader_rule', 'contact_created', '[{"add_tag": "x"}]');
DELETE FROM meisa.contacts;
RESET ROLE;

-- ---------------------------------------------------------------------
-- meisa_admin: configures automations and templates ...
SET ROLE regress_meisa_admin;
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions)
VALUES ('admin_rule', 'tag_added', 'vip', '[{"add_tag": "very_important"}]');
UPDATE meisa.automations SET enabled = false WHERE name = 'admin_rule';
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('admin_tpl', 'marketing', 'Hi', 'Hello {{first_name}}');
SELECT name, enabled FROM meisa.automations ORDER BY name;
RESET ROLE;
-- ... but reads no secret: the files meisa.secret_file and
-- meisa.smtp_password_file name, and the refused inline settings, stay hidden.
LOAD 'meisa';
COPY (SELECT 'regress-secret') TO PROGRAM 'umask 077 && cat > meisa_regress_key_70';
COPY (SELECT 'regress-password') TO PROGRAM 'umask 077 && cat > meisa_regress_password_70';
SET meisa.secret_file = 'meisa_regress_key_70';
SET meisa.smtp_password_file = 'meisa_regress_password_70';
SET ROLE regress_meisa_admin;
SHOW meisa.secret;
SHOW meisa.smtp_password;
SELECT current_setting('meisa.secret');
SELECT current_setting('meisa.smtp_password');
SELECT count(*) AS visible_secret_settings FROM pg_settings WHERE name IN ('meisa.secret', 'meisa.smtp_password');
SELECT pg_read_file('meisa_regress_key_70');
SELECT pg_read_file('meisa_regress_password_70');
SELECT count(*) FROM pg_file_settings;
SET meisa.secret = 'mine';
SET meisa.secret_file = 'PG_VERSION';
SELECT meisa.unsubscribe_url(1) IS NOT NULL AS admin_builds_link;
RESET ROLE;
SET ROLE regress_meisa_app;
SHOW meisa.secret;
SELECT pg_read_file('meisa_regress_key_70');
RESET ROLE;
SHOW meisa.secret;
RESET meisa.secret_file;
RESET meisa.smtp_password_file;

-- ---------------------------------------------------------------------
-- Every SECURITY DEFINER function of the extension pins its search_path,
-- and no SQL or PL/pgSQL function of the extension runs with the caller's
-- search_path (lists the offenders; none expected).
SELECT p.oid::regprocedure AS definer_without_pinned_search_path
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
 WHERE p.prosecdef
   AND NOT coalesce('search_path=pg_catalog, meisa, pg_temp' = ANY (p.proconfig), false)
 ORDER BY 1;
SELECT p.oid::regprocedure AS sql_function_without_search_path
  FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
  JOIN pg_language l ON l.oid = p.prolang
 WHERE l.lanname IN ('sql', 'plpgsql')
   AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%')
 ORDER BY 1;

-- ---------------------------------------------------------------------
-- search_path attack: an unprivileged role plants look-alikes of the
-- functions and operators meisa uses; each one announces itself and tries
-- to make its author superuser.  A victim session then puts public first.
GRANT CREATE ON SCHEMA public TO regress_meisa_evil;
SET ROLE regress_meisa_evil;
CREATE FUNCTION public.meisa_evil_hit(what text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  RAISE NOTICE 'evil % ran as %', what, current_user;
  BEGIN
    EXECUTE 'ALTER ROLE regress_meisa_evil SUPERUSER';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
END $$;
CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('lower'); RETURN pg_catalog.lower($1); END $$;
CREATE FUNCTION public.btrim(text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('btrim'); RETURN pg_catalog.btrim($1); END $$;
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('now'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION public.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('jsonb_typeof'); RETURN pg_catalog.jsonb_typeof($1); END $$;
CREATE FUNCTION public.array_append(text[], text) RETURNS text[] LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('array_append'); RETURN pg_catalog.array_append($1, $2); END $$;
CREATE FUNCTION public.evil_texteq(text, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('text ='); RETURN pg_catalog.texteq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.evil_texteq);
CREATE FUNCTION public.evil_int8eq(bigint, bigint) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('bigint ='); RETURN pg_catalog.int8eq($1, $2); END $$;
CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.evil_int8eq);
CREATE FUNCTION public.evil_textcat(text, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('text ||'); RETURN pg_catalog.textcat($1, $2); END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.evil_textcat);
CREATE FUNCTION public.evil_jsonb_field(jsonb, text) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('jsonb ->>'); RETURN pg_catalog.jsonb_object_field_text($1, $2); END $$;
CREATE OPERATOR public.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.evil_jsonb_field);
CREATE FUNCTION public.evil_jsonb_exists(jsonb, text) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('jsonb ?'); RETURN pg_catalog.jsonb_exists($1, $2); END $$;
CREATE OPERATOR public.? (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.evil_jsonb_exists);
-- better matches than pg_catalog's polymorphic operators (win in any path order)
CREATE FUNCTION public.evil_textint(text, integer) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('text || integer'); RETURN pg_catalog.textcat($1, $2::text); END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.evil_textint);
CREATE FUNCTION public.evil_textbigint(text, bigint) RETURNS text LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('text || bigint'); RETURN pg_catalog.textcat($1, $2::text); END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = bigint, FUNCTION = public.evil_textbigint);
CREATE FUNCTION public.evil_arrappend(text[], text) RETURNS text[] LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('text[] || text'); RETURN pg_catalog.array_append($1, $2); END $$;
CREATE OPERATOR public.|| (LEFTARG = text[], RIGHTARG = text, FUNCTION = public.evil_arrappend);
CREATE FUNCTION public.evil_arrhas(text[], text[]) RETURNS boolean LANGUAGE plpgsql AS
  $$ BEGIN PERFORM public.meisa_evil_hit('text[] @> text[]'); RETURN pg_catalog.arraycontains($1, $2); END $$;
CREATE OPERATOR public.@> (LEFTARG = text[], RIGHTARG = text[], FUNCTION = public.evil_arrhas);
RESET ROLE;

-- the victims: the superuser with public first (the worst case), then the app
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('sec_on_update', 'contact_updated', '{"field": "custom_fields.plan", "changed_to": "pro"}',
   '[{"add_tag": "paid"}, {"set_field": {"custom_fields.level": "gold"}}, {"notify": {"channel": "sales", "message": "{{email}} upgraded"}}]'),
  ('sec_on_event', 'custom_event', NULL, '[{"add_tag": "active"}]');
SET search_path = public, pg_catalog;
-- (the statements below avoid the planted operators themselves: only what
-- runs inside meisa may be tempted)
SELECT pg_catalog.jsonb_object_field_text(meisa_upsert('{"email": " Victim@Example.COM ", "external_id": "sec-2", "custom_fields": {"plan": "free"}}'), 'created') AS victim_created;
SELECT meisa_upsert('{"email": "victim@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed' AS victim_changed;
SELECT meisa_track('purchase', '{"email": "victim@example.com", "properties": {"amount": 5}, "event_id": "sec-ev-1"}') > 0 AS victim_tracked;
SELECT count(*) AS victim_tagged FROM (SELECT meisa_add_tag('victim@example.com', 'vip')) x;
SELECT count(*) AS victim_untagged FROM (SELECT meisa_remove_tag('victim@example.com', 'vip')) x;
SELECT meisa_trigger_email('sec_receipt', '{"email": "victim@example.com", "data_variables": {"item": "pen"}}') > 0 AS victim_mailed;
SELECT meisa.render('Hi {{name}}', '{"name": "Vic"}') AS victim_render;
SELECT meisa.jsonb_diff('{"a": 1, "b": "x"}', '{"a": 2, "b": "x"}') AS victim_diff;
UPDATE meisa.contacts SET first_name = 'Vic', tags = pg_catalog.array_cat(tags, '{sql_tag}')
 WHERE email OPERATOR(pg_catalog.=) 'victim@example.com';
SELECT count(*) AS victim_unsubscribed FROM (SELECT meisa_unsubscribe('victim@example.com')) x;
SELECT count(*) AS victim_resubscribed FROM (SELECT meisa_resubscribe('victim@example.com')) x;
SELECT meisa_run_due(pg_catalog.now() + interval '1 day') >= 0 AS victim_run_due;
SET client_min_messages = error;  -- no SMTP server here: only the code path matters
SELECT count(*) AS victim_delivered FROM (SELECT meisa_deliver(10)) x;
RESET client_min_messages;
SET ROLE regress_meisa_app;
SELECT pg_catalog.jsonb_object_field_text(meisa_upsert('{"email": "victim2@example.com", "custom_fields": {"plan": "pro"}}'), 'created') AS app_victim_created;
SELECT meisa_upsert('{"email": "victim2@example.com", "custom_fields": {"plan": "free"}}') -> 'changed' AS app_victim_changed;
RESET ROLE;
RESET search_path;
SELECT rolsuper AS evil_became_superuser FROM pg_roles WHERE rolname = 'regress_meisa_evil';
SELECT email, tags, custom_fields FROM meisa.contacts WHERE email LIKE 'victim%' ORDER BY email;

-- clean up the roles (cluster-wide objects)
DROP FUNCTION public.lower(text), public.btrim(text), public.now(), public.jsonb_typeof(jsonb),
  public.array_append(text[], text);
DROP OPERATOR public.= (text, text), public.= (bigint, bigint), public.|| (text, text),
  public.->> (jsonb, text), public.? (jsonb, text);
DROP OPERATOR public.|| (text, integer), public.|| (text, bigint), public.|| (text[], text), public.@> (text[], text[]);
DROP FUNCTION public.evil_textint(text, integer), public.evil_textbigint(text, bigint),
  public.evil_arrappend(text[], text), public.evil_arrhas(text[], text[]);
DROP FUNCTION public.evil_texteq(text, text), public.evil_int8eq(bigint, bigint),
  public.evil_textcat(text, text), public.evil_jsonb_field(jsonb, text),
  public.evil_jsonb_exists(jsonb, text), public.meisa_evil_hit(text);
REVOKE CREATE ON SCHEMA public FROM regress_meisa_evil;
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
DROP ROLE regress_meisa_nobody, regress_meisa_app, regress_meisa_admin, regress_meisa_reader, regress_meisa_evil;

-- Objects in a schema the caller put before pg_catalog in search_path are
-- never picked up by meisa's queries in the code that runs with the
-- caller's search_path (triggers on meisa.automations and meisa.contacts,
-- automation actions, condition evaluation).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('hello', 'marketing', 'Hi', 'Hello');
INSERT INTO meisa.sequences (name) VALUES ('real');
SELECT meisa_upsert('{"email": "ann@example.com"}') ->> 'created' AS created;

CREATE SCHEMA evil;
CREATE FUNCTION evil.eq_text(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'evil text = called'; RETURN true; END $$;
CREATE FUNCTION evil.eq_int8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'evil bigint = called'; RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE FUNCTION evil.ge_tstz(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'evil timestamptz >= called'; RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq_text);
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq_int8);
CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ge_tstz);
SET search_path = evil, pg_catalog, public;

-- the validator still finds no sequence "nosuch" (no NOTICE)
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('bad ref', 'contact_updated', '[{"enroll": "nosuch"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('bad template', 'contact_updated', '[{"send_email": "nosuch"}]');
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('tagger', 'contact_updated', '{"performed": "login", "within": "1 day"}',
   '[{"add_tag": "active"}, {"set_field": {"custom_fields.seen": true}}, {"enroll": "real"}]');

-- plain DML on meisa.contacts: the automation's actions and its event count
-- use pg_catalog's operators (no NOTICE)
SELECT meisa_track('login', '{"email": "ann@example.com"}') > 0 AS tracked;
UPDATE meisa.contacts SET first_name = 'Ann' WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
SELECT tags, custom_fields FROM meisa.contacts WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
SELECT status FROM meisa.automation_runs ORDER BY id;
SELECT s.name, e.status FROM meisa.enrollments e JOIN meisa.sequences s ON s.id OPERATOR(pg_catalog.=) e.sequence_id;
-- a condition that reads the contact's data (lacks_tag) from a plain UPDATE:
-- the contact is loaded with pg_catalog's = (no NOTICE)
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('reader', 'contact_updated', '{"lacks_tag": "vip"}', '[{"add_tag": "regular"}]');
UPDATE meisa.contacts SET last_name = 'Lee' WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
SELECT tags FROM meisa.contacts WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
-- an event with an event_id looks its first copy up with pg_catalog's =
SELECT meisa_track('login', '{"email": "ann@example.com", "event_id": "e-1"}') OPERATOR(pg_catalog.=)
       meisa_track('login', '{"email": "ann@example.com", "event_id": "e-1"}') AS same_event;
RESET search_path;

-- Functions planted in the install schema and leaky functions of a reader:
--  1. meisa--1.1--1.2.sql binds the views to pg_catalog functions even
--     when a role with CREATE on the install schema planted count(bigint) and
--     lag(integer, integer, integer) there before CREATE EXTENSION (1.0 calls
--     them unqualified: the planted ones are exact matches), and
--  2. every view is a security_barrier view: a reader's leaky function in
--     WHERE sees no row the view filters out.
--  3. the default version (1.3): a fresh CREATE EXTENSION meisa (from
--     meisa--1.3.sql) and the update from 1.0 (the direct meisa--1.0--1.2.sql,
--     then meisa--1.2--1.3.sql) bind no planted function, and
--     automation_stats has last_run.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
DROP ROLE IF EXISTS regress_a6_evil;
DROP ROLE IF EXISTS regress_a6_reader;
RESET client_min_messages;

-- 1. -------------------------------------------------------------------
CREATE ROLE regress_a6_evil;
GRANT CREATE ON SCHEMA public TO regress_a6_evil;
SET ROLE regress_a6_evil;
CREATE TABLE public.a6_hits (what text, who text);
GRANT INSERT ON public.a6_hits TO PUBLIC;
CREATE FUNCTION public.a6_count_sf(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.a6_hits VALUES ('count(bigint)', current_user);
  RETURN $1 OPERATOR(pg_catalog.+) 1;
END $$;
CREATE AGGREGATE public.count(bigint) (SFUNC = public.a6_count_sf, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION public.lag(integer, integer, integer) RETURNS integer LANGUAGE plpgsql WINDOW AS $$
BEGIN
  INSERT INTO public.a6_hits VALUES ('lag(integer, integer, integer)', current_user);
  RETURN 0;
END $$;
RESET ROLE;
-- 1.1 explicitly (1.0 + meisa--1.0--1.1.sql): the planted functions are
-- exact matches for 1.0's unqualified count(r.id) and lag(...)
CREATE EXTENSION meisa VERSION '1.1';

CREATE VIEW a6_view_functions AS
SELECT c.relname AS view, p.oid::regprocedure AS function
  FROM pg_depend d
  JOIN pg_rewrite rw ON rw.oid = d.objid
  JOIN pg_class c ON c.oid = rw.ev_class
  JOIN pg_proc p ON p.oid = d.refobjid
 WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_proc'::regclass
   AND p.pronamespace <> 'pg_catalog'::regnamespace
   AND c.relnamespace = (SELECT n.oid FROM pg_namespace n WHERE n.nspname = 'meisa');
-- 1.1: the planted functions are part of the views
SELECT view, function FROM a6_view_functions ORDER BY 1;
SELECT relname, relacl FROM pg_class WHERE relnamespace = 'meisa'::regnamespace AND relkind = 'v' ORDER BY 1;
CREATE TEMP TABLE a6_acl_11 AS
  SELECT relname, relacl::text AS acl FROM pg_class WHERE relnamespace = 'meisa'::regnamespace AND relkind = 'v';
ALTER EXTENSION meisa UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
-- 1.2: only pg_catalog functions
SELECT view, function FROM a6_view_functions ORDER BY 1;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('a6_tpl', 'marketing', 'S', 'T');
INSERT INTO meisa.sequences (name) VALUES ('a6_seq');
INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template) SELECT id, 2, '1 day', 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a6_rule', 'contact_created', '[{"enroll": "a6_seq"}]');
SELECT meisa_upsert('{"email": "a6@example.com"}') ->> 'created' AS created;
SELECT name, matched, done FROM meisa.automation_stats;
SELECT sequence, position, entered, active, sent, completed FROM meisa.sequence_funnel ORDER BY position;
SELECT count(*) AS planted_functions_ran FROM public.a6_hits;
-- same columns and ACLs as 1.1, and every view a security_barrier view
SELECT c.relname, c.reloptions, c.relacl::text = a.acl AS same_acl
  FROM pg_class c JOIN a6_acl_11 a USING (relname)
 WHERE c.relnamespace = 'meisa'::regnamespace AND c.relkind = 'v' ORDER BY 1;

-- 2. -------------------------------------------------------------------
-- A bounce is activity that meisa.contact_activity does not show.
SELECT meisa_record_bounce('a6@example.com', 'soft', 'mailbox full (private detail)');
CREATE ROLE regress_a6_reader IN ROLE meisa_reader;
SET ROLE regress_a6_reader;
CREATE TEMP TABLE a6_seen (detail jsonb);
CREATE FUNCTION pg_temp.a6_leak(jsonb) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
  INSERT INTO a6_seen VALUES ($1);
  RETURN true;
END $$;
SELECT count(*) AS visible_rows FROM meisa.contact_activity WHERE kind = 'created' AND pg_temp.a6_leak(detail);
-- the leaky function saw only the rows the view returns: no bounce detail
SELECT count(*) AS rows_seen_by_leak, count(*) FILTER (WHERE detail ? 'detail') AS bounce_details_seen FROM a6_seen;
-- leakproof comparisons still reach the scan (no slower polling by contact)
EXPLAIN (COSTS OFF) SELECT email FROM meisa.unsubscribed_emails WHERE email = 'a6@example.com';
RESET ROLE;
DROP TABLE a6_seen;
DROP FUNCTION pg_temp.a6_leak(jsonb);

-- 3. -------------------------------------------------------------------
-- the planted count(bigint) and lag(integer, integer, integer) are still in
-- public: a fresh install of 1.3 binds only pg_catalog functions
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
TRUNCATE public.a6_hits;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT view, function FROM a6_view_functions ORDER BY 1;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('a6_tpl', 'marketing', 'S', 'T');
INSERT INTO meisa.sequences (name) VALUES ('a6_seq');
INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a6_rule', 'contact_created', '[{"enroll": "a6_seq"}]');
SELECT meisa_upsert('{"email": "a6@example.com"}') ->> 'created' AS created;
SELECT name, matched, done, last_run = last_run_at AS last_run_is_last_run_at, last_run IS NOT NULL AS has_last_run
  FROM meisa.automation_stats;
SELECT sequence, position, entered, active, sent, completed FROM meisa.sequence_funnel ORDER BY position;
SELECT count(*) AS planted_functions_ran FROM public.a6_hits;
SELECT relname, reloptions FROM pg_class WHERE relnamespace = 'meisa'::regnamespace AND relkind = 'v' ORDER BY 1;
-- 1.0 binds them; the update from 1.0 (the shortest path: the direct
-- 1.0 -> 1.2, then 1.2 -> 1.3) re-binds the views to pg_catalog
SET client_min_messages = warning;
DROP EXTENSION meisa CASCADE;
RESET client_min_messages;
CREATE EXTENSION meisa VERSION '1.0';
SELECT view, function FROM a6_view_functions ORDER BY 1;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('a6_tpl', 'marketing', 'S', 'T');
INSERT INTO meisa.sequences (name) VALUES ('a6_seq');
INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'a6_tpl' FROM meisa.sequences;
INSERT INTO meisa.automations (name, trigger, actions) VALUES ('a6_rule', 'contact_created', '[{"enroll": "a6_seq"}]');
SELECT meisa_upsert('{"email": "a6@example.com"}') ->> 'created' AS created;
TRUNCATE public.a6_hits;
SELECT name, matched FROM meisa.automation_stats;
SELECT count(*) AS funnel_rows FROM meisa.sequence_funnel;
-- (in 1.0 the planted functions run when the views are read)
SELECT what, count(*) FROM public.a6_hits GROUP BY 1 ORDER BY 1;
SELECT path FROM pg_extension_update_paths('meisa') WHERE source = '1.0' AND target = '1.3';
ALTER EXTENSION meisa UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SELECT view, function FROM a6_view_functions ORDER BY 1;
TRUNCATE public.a6_hits;
SELECT name, matched, done, last_run = last_run_at AS last_run_is_last_run_at FROM meisa.automation_stats;
SELECT sequence, position, entered, active, sent, completed FROM meisa.sequence_funnel ORDER BY position;
SELECT count(*) AS planted_functions_ran FROM public.a6_hits;

-- clean up (cluster-wide roles)
SET client_min_messages = warning;
DROP VIEW a6_view_functions;
DROP EXTENSION meisa CASCADE;
DROP AGGREGATE public.count(bigint);
DROP FUNCTION public.a6_count_sf(bigint, bigint), public.lag(integer, integer, integer);
DROP TABLE public.a6_hits;
REVOKE CREATE ON SCHEMA public FROM regress_a6_evil;
DROP ROLE regress_a6_evil, regress_a6_reader;
RESET client_min_messages;
