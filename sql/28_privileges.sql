-- Privilege sets: app, admin and reader can do their job and nothing more; PUBLIC can do nothing.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
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
SET client_min_messages = warning;
DROP ROLE IF EXISTS fnd_app, fnd_admin, fnd_reader, fnd_nobody;
RESET client_min_messages;
CREATE ROLE fnd_app NOLOGIN IN ROLE meisa_app;
CREATE ROLE fnd_admin NOLOGIN IN ROLE meisa_admin;
CREATE ROLE fnd_reader NOLOGIN IN ROLE meisa_reader;
CREATE ROLE fnd_nobody NOLOGIN;
SELECT meisa_upsert('{"email": "seed@example.com"}')->'id';
SELECT meisa_unsubscribe('seed@example.com');
-- app: the API and the unsubscribed list, nothing else
SET ROLE fnd_app;
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "app@example.com", "tag_names": ["x"]}')->>'created'$$);
SELECT pg_temp.try($$SELECT meisa_track('login', '{"email": "app@example.com"}') > 0$$);
SELECT pg_temp.try($$SELECT meisa_add_tag('app@example.com', 'y')$$);
SELECT pg_temp.try($$SELECT meisa_remove_tag('app@example.com', 'y')$$);
SELECT pg_temp.try($$SELECT meisa_unsubscribe('app@example.com')$$);
SELECT pg_temp.try($$SELECT meisa_resubscribe('app@example.com')$$);
SELECT pg_temp.try($$SELECT meisa_record_bounce('app@example.com', 'soft', 'x')$$);
SELECT pg_temp.try($$SELECT meisa_record_complaint('app@example.com')$$);
SELECT pg_temp.try($$SELECT string_agg(email, ',') FROM meisa.unsubscribed_emails$$);
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('{"a": 1}', '{}')::text$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.contacts$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.activity$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET first_name = 'x' RETURNING id$$);
SELECT pg_temp.try($$DELETE FROM meisa.automations WHERE false RETURNING id$$);
SELECT pg_temp.try($$SELECT meisa.contact_data(1)::text$$);
SELECT pg_temp.try($$SELECT meisa.normalize_email('a@b.io')$$);
SELECT pg_temp.try($$SELECT set_config('meisa.max_tags', '5', false)$$);
RESET ROLE;
-- reader: the views, nothing else
SET ROLE fnd_reader;
SELECT pg_temp.try($$SELECT string_agg(email || ':' || reason, ',') FROM meisa.unsubscribed_emails$$);
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('{}', '{"a": 1}')::text$$);
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "reader@example.com"}')::text$$);
SELECT pg_temp.try($$SELECT meisa_unsubscribe('seed@example.com')$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.contacts$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET first_name = 'x' RETURNING id$$);
SELECT pg_temp.try($$DELETE FROM meisa.automations WHERE false RETURNING id$$);
RESET ROLE;
-- admin: configures automations, sequences, steps and templates, reads the data
SET ROLE fnd_admin;
SELECT pg_temp.try($$DELETE FROM meisa.automations WHERE false RETURNING id$$);
SELECT pg_temp.try($$UPDATE meisa.templates SET subject = subject WHERE false RETURNING key$$);
SELECT pg_temp.try($$UPDATE meisa.sequences SET enabled = enabled WHERE false RETURNING id$$);
SELECT pg_temp.try($$DELETE FROM meisa.sequence_steps WHERE false RETURNING id$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.contacts$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.unsubscribed_emails$$);
SELECT pg_temp.try($$SELECT meisa.contact_data(1)->>'email'$$);
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('{}', '{}')::text$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET first_name = 'x' RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.activity (contact_id, kind) VALUES (1, 'x') RETURNING id$$);
RESET ROLE;
-- a role with no grants: nothing at all
SET ROLE fnd_nobody;
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "nobody@example.com"}')::text$$);
SELECT pg_temp.try($$SELECT meisa_track('x', '{"email": "nobody@example.com"}')$$);
SELECT pg_temp.try($$SELECT meisa_unsubscribe('seed@example.com')$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.unsubscribed_emails$$);
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('{}', '{}')::text$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.contacts$$);
RESET ROLE;
-- no meisa function or relation is usable by PUBLIC
SELECT count(*) AS public_functions FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
 WHERE d.deptype = 'e' AND has_function_privilege('fnd_nobody', p.oid, 'EXECUTE');
SELECT count(*) AS public_relations FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'meisa' AND (has_table_privilege('fnd_nobody', c.oid, 'SELECT') OR has_table_privilege('fnd_nobody', c.oid, 'INSERT'));
SELECT has_schema_privilege('fnd_nobody', 'meisa', 'USAGE') AS nobody_uses_schema;
-- every SECURITY DEFINER function pins search_path
SELECT p.proname FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
 WHERE d.deptype = 'e' AND p.prosecdef
   AND NOT coalesce('search_path=pg_catalog, meisa, pg_temp' = ANY (p.proconfig), false);
-- the writes of the app role went through
SELECT email, tags, subscribed, complained_at IS NOT NULL AS complained FROM meisa.contacts ORDER BY id;
DROP ROLE fnd_app, fnd_admin, fnd_reader, fnd_nobody;
