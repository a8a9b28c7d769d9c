-- Unsubscribe tokens: HMAC-SHA256 signed, base64url, verified in constant time.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;

INSERT INTO meisa.contacts (id, email) VALUES (7, 'ada@example.com'), (8, 'bob@example.com');

-- without meisa.secret nothing can be signed or verified
SELECT meisa.unsubscribe_url(7);
SELECT meisa.unsubscribe_token_contact('AAAA');

SET meisa.secret = 'test-secret-0123456789abcdef';
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
-- a token signed under another secret is invalid
SET meisa.secret = 'another-secret';
SELECT meisa.unsubscribe_token_contact(t) FROM tok;
SET meisa.secret = 'test-secret-0123456789abcdef';
SELECT meisa.unsubscribe_token_contact(t) FROM tok;

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
-- the app may build links, but not deliver or inspect messages
SELECT meisa.unsubscribe_url(7) IS NOT NULL AS app_builds_link;
SELECT meisa_deliver();
SELECT meisa.mime(1);
RESET ROLE;
DROP ROLE meisa_token_tester;
SELECT name, setting, context FROM pg_settings WHERE name IN ('meisa.secret', 'meisa.smtp_password', 'meisa.smtp_url', 'meisa.worker_naptime') ORDER BY name;
SET meisa.smtp_url = 'http://example.com';
SET meisa.smtp_url = 'ftp://example.com';
SET meisa.smtp_url = 'smtps://mail.example.com:465';
SHOW meisa.smtp_url;
