-- Privilege sets granted with meisa.grant(role, set) and taken back with
-- meisa.revoke(role, set): ordinary ACLs of this database, no role created.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
DROP ROLE IF EXISTS regress_g_app, regress_g_both, regress_g_nobody;
RESET client_min_messages;
CREATE EXTENSION meisa;
CREATE ROLE regress_g_app;
CREATE ROLE regress_g_both;
CREATE ROLE regress_g_nobody;
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; st text; m text;
BEGIN
  EXECUTE q INTO r;
  RETURN coalesce(r, '(null)');
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT;
  RETURN st || ': ' || m;
END $$;
-- what each set holds
SELECT s.set_name, p.object_type, count(*)
  FROM unnest(ARRAY['app', 'admin', 'reader']) AS s(set_name), meisa.privileges(s.set_name) p
 GROUP BY 1, 2 ORDER BY 1, 2;
SELECT object_name, privilege FROM meisa.privileges('app') ORDER BY 1, 2;
-- errors: an unknown set, an unknown role, PUBLIC
SELECT meisa.grant('regress_g_app', 'owner');
SELECT meisa.revoke('regress_g_app', 'APP');
SELECT meisa.grant('regress_no_such_role', 'app');
SELECT meisa.grant('public', 'app');
-- before: nothing
SET ROLE regress_g_app;
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "g1@example.com"}')->>'created'$$);
RESET ROLE;
-- grant app (twice: the second is a no-op)
SELECT meisa.grant('regress_g_app', 'app');
SELECT meisa.grant('regress_g_app', 'app');
SET ROLE regress_g_app;
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "g1@example.com"}')->>'created'$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.unsubscribed_emails$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.contacts$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.sequence_funnel$$);
-- a role with a set cannot hand sets out
SELECT pg_temp.try($$SELECT meisa.grant('regress_g_nobody', 'app')$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.privileges('app')$$);
RESET ROLE;
-- the grants are ordinary ACL entries of this database's objects
SELECT count(*) AS acl_entries
  FROM pg_proc p, aclexplode(p.proacl) a
 WHERE a.grantee = 'regress_g_app'::regrole;
-- revoke app: the API is gone again
SELECT meisa.revoke('regress_g_app', 'app');
SET ROLE regress_g_app;
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "g1@example.com"}')->>'created'$$);
RESET ROLE;
SELECT count(*) AS acl_entries_left
  FROM (SELECT proacl AS acl FROM pg_proc UNION ALL SELECT relacl FROM pg_class
        UNION ALL SELECT nspacl FROM pg_namespace) o, aclexplode(o.acl) a
 WHERE a.grantee = 'regress_g_app'::regrole;
-- two sets: taking one back keeps what the other needs (schema usage,
-- meisa.jsonb_diff, meisa.unsubscribed_emails are in app and reader)
SELECT meisa.grant('regress_g_both', 'app'), meisa.grant('regress_g_both', 'reader');
SELECT meisa.revoke('regress_g_both', 'reader');
SET ROLE regress_g_both;
SELECT pg_temp.try($$SELECT meisa_upsert('{"email": "g2@example.com"}')->>'created'$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.unsubscribed_emails$$);
SELECT pg_temp.try($$SELECT meisa.jsonb_diff('{}', '{"a": 1}')::text$$);
SELECT pg_temp.try($$SELECT count(*) FROM meisa.sequence_funnel$$);
RESET ROLE;
SELECT meisa.revoke('regress_g_both', 'app');
SELECT has_schema_privilege('regress_g_both', 'meisa', 'USAGE') AS usage_left,
       has_function_privilege('regress_g_both', 'meisa.jsonb_diff(jsonb, jsonb)', 'EXECUTE') AS diff_left;
-- admin includes all of reader: revoking reader from an admin keeps what
-- admin needs; revoking admin takes everything
SELECT meisa.grant('regress_g_both', 'admin');
SELECT meisa.revoke('regress_g_both', 'reader');
SELECT has_table_privilege('regress_g_both', 'meisa.sequence_funnel', 'SELECT') AS admin_still_reads_views;
SELECT meisa.revoke('regress_g_both', 'admin');
SELECT count(*) AS acl_entries_left
  FROM (SELECT proacl AS acl FROM pg_proc UNION ALL SELECT relacl FROM pg_class
        UNION ALL SELECT nspacl FROM pg_namespace) o, aclexplode(o.acl) a
 WHERE a.grantee = 'regress_g_both'::regrole;
-- revoking a set the role never had is harmless
SELECT meisa.revoke('regress_g_nobody', 'admin');
-- DROP ROLE needs the grants gone first, as with any grant
SELECT meisa.grant('regress_g_nobody', 'admin');
SELECT pg_temp.try($$DROP ROLE regress_g_nobody$$);
SELECT meisa.revoke('regress_g_nobody', 'admin');
DROP ROLE regress_g_app, regress_g_both, regress_g_nobody;
-- restore the suite's roles for the tests after this one
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
