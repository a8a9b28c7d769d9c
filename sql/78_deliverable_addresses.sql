-- One address rule: what meisa_upsert stores (email.c) is exactly what
-- delivery sends.  Quoted local parts with specials ("a,b", "x>y", "x<y",
-- escaped quotes) are valid RFC 5321 addresses: stored, enrolled, assembled
-- into To: and sent in RCPT TO:<...> as they are (the live SMTP exchange is in
-- test/delivery/run.py); what the upsert rejects, delivery rejects with the
-- same reason.  (sql/11_isemail.sql checks the same over the is_email set.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET meisa.from_address = 'Acme <hello@acme.test>';

CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; st text; m text; d text;
BEGIN
  EXECUTE q INTO r;
  RETURN coalesce(r, '(null)');
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || m || coalesce(nullif(' (' || d || ')', ' ()'), '');
END $$;

-- stored and enrolled: a welcome sequence whose first step is due at once
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('welcome', 'marketing', 'Welcome', 'Hello');
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('receipt', 'transactional', 'Receipt', 'Paid');
INSERT INTO meisa.sequences (name) VALUES ('onboarding');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
  SELECT id, 1, interval '0', 'welcome' FROM meisa.sequences;
INSERT INTO meisa.automations (name, trigger, actions)
  VALUES ('enrol', 'contact_created', '[{"enroll": "onboarding"}]');
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_78';
SET meisa.secret_file = 'meisa_regress_key_78';
SET meisa.unsubscribe_base_url = 'https://example.com/u/';
CREATE TEMP TABLE addr (n int, email text);
INSERT INTO addr VALUES (1, '"a,b"@example.com'), (2, '"x>y"@example.com'), (3, '"x<y"@example.com'),
  (4, '"say\"hi\""@example.com'), (5, '"back\\slash"@example.com'), (6, '"a@b"@example.com'),
  (7, '"a b"@example.com'), (8, 'plain.dot-atom+tag@example.com');
SELECT n, email, pg_temp.try(format($$SELECT meisa_upsert(%L)->>'created'$$,
                                    jsonb_build_object('email', email))) AS created
  FROM addr ORDER BY n;
SELECT meisa_run_due() AS queued;
SELECT c.email, e.status AS enrollment, m.status AS message
  FROM meisa.contacts c JOIN meisa.enrollments e ON e.contact_id = c.id
  LEFT JOIN meisa.messages m ON m.contact_id = c.id ORDER BY c.id;
-- each queued message is assembled (as delivery does) with the address as
-- stored in its To: line; delivery sends RCPT TO:<to_email>
SELECT m.to_email, substring(meisa.mime(m.id) FROM E'\r\nTo: ([^\r]*)\r\n') AS to_header
  FROM meisa.messages m ORDER BY m.id;
-- transactional mail too
SELECT meisa_trigger_email('receipt', '{"email": "\"a,b\"@example.com"}') > 0 AS queued;
SELECT status, substring(meisa.mime(id) FROM E'\r\nTo: ([^\r]*)\r\n') AS to_header
  FROM meisa.messages WHERE template_key = 'receipt';

-- what the upsert rejects, delivery rejects for the same reason: a message
-- row written by hand to such an address fails when assembled, naming to_email
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id) VALUES
  (901, 'bogus-address', 'transactional', 'x', 'x', 'm901@meisa.test'),
  (902, 'a@localhost', 'transactional', 'x', 'x', 'm902@meisa.test'),
  (903, '"unclosed@example.com', 'transactional', 'x', 'x', 'm903@meisa.test'),
  (904, 'a..b@example.com', 'transactional', 'x', 'x', 'm904@meisa.test'),
  (905, repeat('a', 65) || '@example.com', 'transactional', 'x', 'x', 'm905@meisa.test');
SELECT id, pg_temp.try(format('SELECT meisa.mime(%s)', id)) AS mime,
       pg_temp.try(format('SELECT meisa.normalize_email(%L)', to_email)) AS upsert_rule
  FROM meisa.messages WHERE id > 900 ORDER BY id;
-- the sender is judged by the same rule (a display name may hold "<", ">" in quotes)
UPDATE meisa.messages SET from_address = '"Acme <News>" <"x>y"@acme.test>' WHERE id = 901;
UPDATE meisa.messages SET to_email = 'ok@example.com' WHERE id = 901;
SELECT substring(meisa.mime(901) FROM E'\r\nFrom: ([^\r]*)\r\n') AS from_header;
UPDATE meisa.messages SET from_address = 'News <news@localhost>' WHERE id = 901;
SELECT pg_temp.try('SELECT meisa.mime(901)') AS mime;
