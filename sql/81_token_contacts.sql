-- Unsubscribe tokens name existing contacts only: meisa.unsubscribe_url()
-- signs for no missing id, and a token whose contact does not exist (deleted,
-- or an id that never existed) is answered exactly like a forged token.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_81';
SET meisa.secret_file = 'meisa_regress_key_81';
SET meisa.unsubscribe_base_url = 'https://example.com/u/';

-- SQLSTATE: message (detail)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; st text; m text; d text;
BEGIN
  EXECUTE q INTO r;
  RETURN coalesce(r, '(null)');
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || m || coalesce(nullif(' (' || d || ')', ' ()'), '');
END $$;
-- a token signed in SQL the way meisa signs (HMAC-SHA256 from sha256()), for
-- ids meisa.unsubscribe_url() no longer signs for
CREATE FUNCTION pg_temp.pad(key bytea, b int) RETURNS bytea LANGUAGE sql AS $$
  SELECT string_agg(set_byte('\x00'::bytea, 0,
                             (CASE WHEN i < length(key) THEN get_byte(key, i) ELSE 0 END) # b), ''::bytea ORDER BY i)
    FROM generate_series(0, 63) AS i $$;
CREATE FUNCTION pg_temp.hmac(key bytea, msg bytea) RETURNS bytea LANGUAGE sql AS $$
  SELECT sha256(pg_temp.pad(key, 92) || sha256(pg_temp.pad(key, 54) || msg)) $$;
CREATE FUNCTION pg_temp.token(id bigint) RETURNS text LANGUAGE sql AS $$
  SELECT translate(encode(b || substr(pg_temp.hmac(convert_to('test-secret-0123456789abcdef', 'UTF8'),
                                                   convert_to('meisa-unsubscribe', 'UTF8') || b), 1, 16), 'base64'),
                   '+/', '-_')
    FROM (SELECT '\x01'::bytea || int8send(id) || int8send(1700000000::bigint) AS b) AS body $$;

INSERT INTO meisa.contacts (id, email) VALUES (7, 'ada@example.com'), (8, 'bob@example.com');

-- links are signed for existing contacts only; any other id is P0002
SELECT meisa.unsubscribe_url(7) ~ '^https://example\.com/u/[A-Za-z0-9_-]{44}$' AS signed_for_7;
SELECT id, pg_temp.try(format('SELECT meisa.unsubscribe_url(%s)', id)) AS unsubscribe_url
  FROM unnest(ARRAY[999, 0, -1, -9223372036854775808]) AS id;

-- the app role builds links (it cannot read meisa.contacts) and gets the same answers
SET client_min_messages = warning;
DROP ROLE IF EXISTS meisa_token_app;
RESET client_min_messages;
CREATE ROLE meisa_token_app;
GRANT meisa_app TO meisa_token_app;
SET ROLE meisa_token_app;
SELECT meisa.unsubscribe_url(7) ~ '/u/[A-Za-z0-9_-]{44}$' AS app_signs_for_7,
       pg_temp.try('SELECT meisa.unsubscribe_url(999)') AS app_missing;
RESET ROLE;
DROP ROLE meisa_token_app;

-- the SQL-signed token is the format meisa verifies
SELECT meisa.unsubscribe_token_contact(pg_temp.token(7)) AS sql_token_names;

-- a token for a contact deleted since it was issued, a token for an id that
-- never existed (signed by an older version), a negative id, and a forged
-- token (a changed signature) all get one answer, the same SQLSTATE,
-- message and detail
CREATE TEMP TABLE issued AS SELECT substring(meisa.unsubscribe_url(8) FROM '/u/(.*)$') AS t;
DELETE FROM meisa.contacts WHERE id = 8;
CREATE TEMP TABLE answers AS
SELECT what, pg_temp.try(format('SELECT meisa_unsubscribe(%L)', token)) AS unsubscribe,
       pg_temp.try(format('SELECT meisa.unsubscribe_token_contact(%L)', token)) AS token_contact
  FROM (SELECT 'deleted contact', t FROM issued
        UNION ALL SELECT 'never existed', pg_temp.token(999)
        UNION ALL SELECT 'negative id', pg_temp.token(-1)
        UNION ALL SELECT 'forged', overlay(pg_temp.token(7) PLACING
                                           CASE WHEN substr(pg_temp.token(7), 40, 1) = 'A' THEN 'B' ELSE 'A' END
                                           FROM 40 FOR 1)) AS x(what, token);
SELECT what, unsubscribe, token_contact = unsubscribe AS same_from_token_contact FROM answers ORDER BY what;
SELECT count(DISTINCT unsubscribe) AS distinct_answers FROM answers;
-- a token of an existing contact still unsubscribes it
SELECT meisa_unsubscribe(pg_temp.token(7)) AS unsubscribed;
SELECT subscribed, unsubscribe_reason FROM meisa.contacts WHERE id = 7;
