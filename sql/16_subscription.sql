-- Tags and subscription: add/remove tag, unsubscribe, resubscribe, bounces, complaints, the view.
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
SELECT meisa_upsert('{"email": "ann@example.com", "external_id": "u1"}')->'id';
SELECT meisa_upsert('{"email": "bob@example.com"}')->'id';
-- tags: true when the call changed the contact
SELECT meisa_add_tag('ANN@example.com', '  vip ');
SELECT meisa_add_tag('ann@example.com', 'vip');
SELECT meisa_add_tag('ann@example.com', 'alpha');
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT meisa_remove_tag('ann@example.com', 'vip');
SELECT meisa_remove_tag('ann@example.com', 'vip');
SELECT tags FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT kind, detail->'tags' FROM meisa.activity WHERE detail ? 'tags' ORDER BY id;
SELECT pg_temp.try($$SELECT meisa_add_tag('nobody@example.com', 'x')$$);
SELECT pg_temp.try($$SELECT meisa_add_tag('ann@example.com', ' ')$$);
SELECT pg_temp.try($$SELECT meisa_add_tag('ann@example.com', NULL)$$);
SELECT pg_temp.try($$SELECT meisa_add_tag(NULL, 'x')$$);
SELECT pg_temp.try($$SELECT meisa_add_tag('not an email', 'x')$$);
SELECT pg_temp.try($$SELECT meisa_remove_tag('nobody@example.com', 'x')$$);
-- unsubscribe by email; the view lists it
SELECT * FROM meisa.unsubscribed_emails;
SELECT meisa_unsubscribe('Ann@Example.com');
SELECT meisa_unsubscribe('ann@example.com');
SELECT email, external_id, reason, changed_at IS NOT NULL AS has_time FROM meisa.unsubscribed_emails;
SELECT pg_temp.try($$SELECT meisa_unsubscribe('ann@example.com', 'because')$$);
SELECT pg_temp.try($$SELECT meisa_unsubscribe('ann@example.com', NULL)$$);
SELECT pg_temp.try($$SELECT meisa_unsubscribe(NULL)$$);
SELECT pg_temp.try($$SELECT meisa_unsubscribe('nobody@example.com')$$);
-- an argument without "@" is an unsubscribe token: without a key
-- (meisa.secret_file) tokens cannot be checked (55000); with it, an invalid
-- one is refused (22023).  The keys are files in the data directory that only
-- the server's user can read.
SELECT split_part(pg_temp.try($$SELECT meisa_unsubscribe('not-a-valid-token')$$), ':', 1);
COPY (SELECT 'regress-secret') TO PROGRAM 'umask 077 && cat > meisa_regress_key_16a';
SET meisa.secret_file = 'meisa_regress_key_16a';
SELECT split_part(pg_temp.try($$SELECT meisa_unsubscribe('not-a-valid-token')$$), ':', 1);
RESET meisa.secret_file;
-- a valid token (the one in the contact's unsubscribe link) unsubscribes that contact
SELECT meisa_resubscribe('ann@example.com');
COPY (SELECT 'foundation-test-secret-0123456789') TO PROGRAM 'umask 077 && cat > meisa_regress_key_16b';
SET meisa.secret_file = 'meisa_regress_key_16b';
SET meisa.unsubscribe_base_url = 'https://example.com/u?t=';
SELECT meisa_unsubscribe(substring(meisa.unsubscribe_url(c.id) FROM 't=(.*)$')) FROM meisa.contacts c WHERE email = 'ann@example.com';
SELECT email, reason FROM meisa.unsubscribed_emails;
RESET meisa.secret_file;
RESET meisa.unsubscribe_base_url;
-- resubscribe clears everything
SELECT meisa_resubscribe('ann@example.com');
SELECT meisa_resubscribe('ann@example.com');
SELECT subscribed, unsubscribe_reason, bounced_at, complained_at FROM meisa.contacts WHERE email = 'ann@example.com';
SELECT count(*) FROM meisa.unsubscribed_emails;
-- bounces: soft is recorded only, hard suppresses
SELECT meisa_record_bounce('bob@example.com', 'soft', '452 mailbox full');
SELECT subscribed, bounced_at IS NULL AS not_bounced FROM meisa.contacts WHERE email = 'bob@example.com';
SELECT meisa_record_bounce('bob@example.com', 'HARD', '550 no such user');
SELECT meisa_record_bounce('bob@example.com', 'hard', '550 no such user');
SELECT subscribed, unsubscribe_reason, bounced_at IS NOT NULL AS bounced FROM meisa.contacts WHERE email = 'bob@example.com';
SELECT a.kind, a.detail - 'bounced_at' FROM meisa.activity a JOIN meisa.contacts c ON c.id = a.contact_id
 WHERE c.email = 'bob@example.com' ORDER BY a.id;
SELECT email, reason FROM meisa.unsubscribed_emails;
SELECT pg_temp.try($$SELECT meisa_record_bounce('bob@example.com', 'medium', NULL)$$);
SELECT pg_temp.try($$SELECT meisa_record_bounce('nobody@example.com', 'hard', NULL)$$);
-- complaints suppress too, and win over a bounce in the view
SELECT meisa_record_complaint('bob@example.com');
SELECT meisa_record_complaint('bob@example.com');
SELECT email, reason FROM meisa.unsubscribed_emails;
SELECT pg_temp.try($$SELECT meisa_record_complaint('nobody@example.com')$$);
-- polling: WHERE changed_at > last poll
SELECT now() AS last_poll \gset
SELECT count(*) FROM meisa.unsubscribed_emails WHERE changed_at > :'last_poll';
BEGIN;
SELECT meisa_resubscribe('bob@example.com');
SELECT meisa_unsubscribe('bob@example.com');
SELECT email, reason FROM meisa.unsubscribed_emails;
COMMIT;
SELECT email FROM meisa.unsubscribed_emails WHERE changed_at > :'last_poll';
