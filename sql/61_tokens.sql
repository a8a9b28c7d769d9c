-- Unsubscribe tokens: HMAC-SHA256 signed, base64url, verified in constant time.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;

INSERT INTO meisa.contacts (id, email) VALUES (7, 'ada@example.com'), (8, 'bob@example.com');

-- without a key (meisa.secret_file) nothing can be signed or verified
SELECT meisa.unsubscribe_url(7);
SELECT meisa.unsubscribe_token_contact('AAAA');

-- the key is read from a file only the server's user can read; a relative
-- path is relative to the data directory, one trailing newline is not part
-- of the key
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_61';
SET meisa.secret_file = 'meisa_regress_key_61';
SET meisa.unsubscribe_base_url = 'https://example.com/unsubscribe?t=';
SELECT meisa.unsubscribe_url(7) ~ '^https://example\.com/unsubscribe\?t=[A-Za-z0-9_-]{44}$' AS url_shape;
-- the token round-trips, alone or as the whole URL
SELECT meisa.unsubscribe_token_contact(substring(meisa.unsubscribe_url(7) FROM 't=(.*)$')) AS from_token,
       meisa.unsubscribe_token_contact(meisa.unsubscribe_url(8)) AS from_url;
-- the same contact gets the same token within a transaction, another contact another token
SELECT meisa.unsubscribe_url(7) = meisa.unsubscribe_url(7) AS stable, meisa.unsubscribe_url(7) <> meisa.unsubscribe_url(8) AS distinct_contacts;

-- tampering: each changed character, a wrong length, a foreign alphabet
CREATE TEMP TABLE tok AS SELECT substring(meisa.unsubscribe_url(7) FROM 't=(.*)$') AS t;
SELECT meisa.unsubscribe_token_contact(overlay(t PLACING (CASE WHEN substr(t, 44, 1) = 'A' THEN 'B' ELSE 'A' END) FROM 44 FOR 1)) FROM tok;
SELECT meisa.unsubscribe_token_contact(overlay(t PLACING (CASE WHEN substr(t, 5, 1) = 'A' THEN 'B' ELSE 'A' END) FROM 5 FOR 1)) FROM tok;
SELECT meisa.unsubscribe_token_contact(t || 'A') FROM tok;
SELECT meisa.unsubscribe_token_contact(left(t, 43)) FROM tok;
SELECT meisa.unsubscribe_token_contact(replace(t, substr(t, 10, 1), '+')) FROM tok;
SELECT meisa.unsubscribe_token_contact(replace(t, substr(t, 10, 1), '/')) FROM tok;
SELECT meisa.unsubscribe_token_contact(left(t, 43) || '=') FROM tok;
SELECT meisa.unsubscribe_token_contact('');
SELECT meisa.unsubscribe_token_contact('ada@example.com');
-- every single-character change is rejected
DO $$
DECLARE t text; bad text; n int := 0; i int;
BEGIN
  SELECT tok.t INTO t FROM tok;
  FOR i IN 1..44 LOOP
    bad := overlay(t PLACING (CASE WHEN substr(t, i, 1) = 'x' THEN 'y' ELSE 'x' END) FROM i FOR 1);
    BEGIN
      PERFORM meisa.unsubscribe_token_contact(bad);
    EXCEPTION WHEN invalid_parameter_value THEN n := n + 1;
    END;
  END LOOP;
  RAISE NOTICE 'rejected % of 44 altered tokens', n;
END $$;
-- a token signed under another key is invalid
COPY (SELECT 'another-secret') TO PROGRAM 'umask 077 && cat > meisa_regress_key_61_other';
SET meisa.secret_file = 'meisa_regress_key_61_other';
SELECT meisa.unsubscribe_token_contact(t) FROM tok;
SET meisa.secret_file = 'meisa_regress_key_61';
SELECT meisa.unsubscribe_token_contact(t) FROM tok;
-- the same key without the trailing newline
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && tr -d ''\n'' > meisa_regress_key_61_nonl';
SET meisa.secret_file = 'meisa_regress_key_61_nonl';
SELECT meisa.unsubscribe_token_contact(t) FROM tok;

-- unusable key files are refused: readable by others (COPY TO a file
-- creates it with mode 0644), empty, too large, with a zero byte, missing,
-- not a regular file
DO $$ BEGIN
  EXECUTE format('COPY (SELECT %L) TO %L', 'test-secret-0123456789abcdef',
                 current_setting('data_directory') || '/meisa_regress_key_61_public');
END $$;
SET meisa.secret_file = 'meisa_regress_key_61_public';
SELECT meisa.unsubscribe_url(7);
COPY (SELECT '') TO PROGRAM 'umask 077 && cat > meisa_regress_key_61_empty';
SET meisa.secret_file = 'meisa_regress_key_61_empty';
SELECT meisa.unsubscribe_url(7);
COPY (SELECT repeat('k', 4097)) TO PROGRAM 'umask 077 && cat > meisa_regress_key_61_large';
SET meisa.secret_file = 'meisa_regress_key_61_large';
SELECT meisa.unsubscribe_url(7);
COPY (SELECT 'key0with0zeros') TO PROGRAM 'umask 077 && tr 0 ''\000'' > meisa_regress_key_61_nul';
SET meisa.secret_file = 'meisa_regress_key_61_nul';
SELECT meisa.unsubscribe_url(7);
SET meisa.secret_file = 'meisa_regress_no_such_file';
SELECT meisa.unsubscribe_token_contact('AAAA');
SET meisa.secret_file = 'global';
SELECT meisa.unsubscribe_url(7);
-- 4096 bytes is the limit
COPY (SELECT repeat('k', 4096)) TO PROGRAM 'umask 077 && cat > meisa_regress_key_61_large';
SET meisa.secret_file = 'meisa_regress_key_61_large';
SELECT meisa.unsubscribe_url(7) ~ '[A-Za-z0-9_-]{44}$' AS signed;
SET meisa.secret_file = 'meisa_regress_key_61';

-- the former inline settings are refused wherever they are set (22023);
-- the message never repeats the value
SET meisa.secret = 'test-secret-0123456789abcdef';
SET meisa.smtp_password = 'password';
ALTER ROLE CURRENT_USER SET meisa.secret = 'test-secret-0123456789abcdef';
ALTER ROLE CURRENT_USER SET meisa.smtp_password = 'password';
SHOW meisa.secret;
SHOW meisa.smtp_password;
SELECT count(*) AS stored FROM pg_db_role_setting WHERE array_to_string(setconfig, ',') LIKE '%meisa.s%';

-- secrets are superuser-only: hidden from and unsettable by other roles
SET client_min_messages = warning;
DROP ROLE IF EXISTS meisa_token_tester;
RESET client_min_messages;
CREATE ROLE meisa_token_tester;
GRANT meisa_app TO meisa_token_tester;
SET ROLE meisa_token_tester;
SHOW meisa.secret;
SHOW meisa.smtp_password;
SELECT count(*) FROM pg_settings WHERE name IN ('meisa.secret', 'meisa.smtp_password');
SET meisa.smtp_url = 'smtp://attacker.example:25';
SET meisa.secret = 'mine';
-- the paths are no secret; the files and what they hold are
SHOW meisa.secret_file;
SET meisa.secret_file = 'PG_VERSION';
SET meisa.smtp_password_file = 'PG_VERSION';
SELECT pg_read_file('meisa_regress_key_61');
SELECT count(*) FROM pg_file_settings;
-- the app may build links, but not deliver or inspect messages
SELECT meisa.unsubscribe_url(7) IS NOT NULL AS app_builds_link;
SELECT meisa_deliver();
SELECT meisa.mime(1);
RESET ROLE;
DROP ROLE meisa_token_tester;
SELECT name, setting, context FROM pg_settings
WHERE name IN ('meisa.secret', 'meisa.secret_file', 'meisa.smtp_password', 'meisa.smtp_password_file', 'meisa.smtp_url', 'meisa.worker_naptime')
ORDER BY name;
SET meisa.smtp_url = 'http://example.com';
SET meisa.smtp_url = 'ftp://example.com';
SET meisa.smtp_url = 'smtps://mail.example.com:465';
SHOW meisa.smtp_url;

-- meisa.smtp_url refuses credentials (user:password@): unlike the file
-- meisa.smtp_password_file names, it is readable by every role
SET meisa.smtp_url = 'smtp://bob:hunter2@mail.example.com:587';
SET meisa.smtp_url = 'smtps://bob@mail.example.com';
SET meisa.smtp_url = 'smtp://mail.example.com:587/acme@example.com';  -- '@' in the path (EHLO name) is not a credential
SHOW meisa.smtp_url;
SET meisa.smtp_url = 'smtp://mail.example.com:587';
SHOW meisa.smtp_url;
RESET meisa.smtp_url;
