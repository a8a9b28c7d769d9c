-- meisa_deliver() without a reachable SMTP server: settings, suppression at
-- send time, leases, invalid messages and connection failures.  (Delivery to
-- a real SMTP server is tested by test/delivery/run.sh.)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET meisa.from_address = 'hello@acme.test';

INSERT INTO meisa.contacts (id, email, subscribed, bounced_at) VALUES
  (1, 'ok@example.com', true, NULL),
  (2, 'unsub@example.com', false, NULL),
  (3, 'bounced@example.com', true, now());
INSERT INTO meisa.messages (id, contact_id, to_email, kind, subject, text, message_id, next_attempt_at) VALUES
  (1, 2, 'unsub@example.com', 'marketing', 'news', 'x', 'm1@t', now() - interval '5 min'),
  (2, 3, 'bounced@example.com', 'transactional', 'receipt', 'x', 'm2@t', now() - interval '4 min'),
  (3, 1, 'bogus-address', 'transactional', 'hi', 'x', 'm3@t', now() - interval '3 min'),
  (4, 2, 'unsub@example.com', 'transactional', 'receipt', 'x', 'm4@t', now() - interval '2 min'),
  (5, 1, 'ok@example.com', 'transactional', 'hi', 'x', 'm5@t', now() - interval '1 min');

-- no meisa.smtp_url: nothing happens, a warning says why
SELECT meisa_deliver();
SELECT id, status, attempts FROM meisa.messages ORDER BY id;

-- bad arguments
SELECT meisa_deliver(0);
SELECT meisa_deliver(10001);

-- an SMTP server that refuses connections (port 1): suppression is checked
-- first (marketing to the unsubscribed, anything to the bounced), an invalid
-- message fails, the first real send (a receipt: transactional mail still goes
-- to an unsubscribed contact) finds the server down and is retried in 30 s,
-- and the rest of the batch goes back to the queue without an attempt
SET meisa.smtp_url = 'smtp://127.0.0.1:1';
SET meisa.retry_backoff_base = '30s';
COPY (SELECT 's3cret-for-tests') TO PROGRAM 'umask 077 && cat > meisa_regress_key_62';
SET meisa.secret_file = 'meisa_regress_key_62';
SET client_min_messages = error;
SELECT meisa_deliver(10) AS sent;
RESET client_min_messages;
SELECT id, status, attempts, lease_until IS NULL AS no_lease,
       CASE WHEN status = 'queued' AND attempts > 0
            THEN next_attempt_at BETWEEN now() + interval '29 s' AND now() + interval '31 s' END AS backoff_30s,
       regexp_replace(last_error, '^(Couldn''t connect to server).*', '\1') AS last_error
  FROM meisa.messages ORDER BY id;

-- nothing is due now: a second call does nothing
SET client_min_messages = error;
SELECT meisa_deliver(10) AS sent;
RESET client_min_messages;
SELECT count(*) FILTER (WHERE status = 'queued') AS queued, sum(attempts) AS attempts FROM meisa.messages;

-- the second failure doubles the delay (60 s); past the give-up age it fails
UPDATE meisa.messages SET next_attempt_at = now() - interval '1 s' WHERE id = 4;
SET client_min_messages = error;
SELECT meisa_deliver(10) AS sent;
RESET client_min_messages;
SELECT id, status, attempts, next_attempt_at BETWEEN now() + interval '59 s' AND now() + interval '61 s' AS backoff_60s
  FROM meisa.messages WHERE id = 4;
UPDATE meisa.messages SET next_attempt_at = now() - interval '1 s', created_at = now() - interval '4 days' WHERE id = 4;
SET client_min_messages = error;
SELECT meisa_deliver(10) AS sent;
RESET client_min_messages;
SELECT id, status, attempts, regexp_replace(last_error, ':.*', '') AS last_error FROM meisa.messages WHERE id = 4;

-- an expired lease (a crash between claim and settle) goes back to the queue
-- and is tried again; a live lease is left alone; a 'sending' row without a
-- lease (set by hand) is queued again too
INSERT INTO meisa.messages (id, contact_id, to_email, kind, subject, text, message_id, status, attempts, lease_until) VALUES
  (6, 1, 'ok@example.com', 'transactional', 'crashed', 'x', 'm6@t', 'sending', 1, now() - interval '1 s'),
  (7, 1, 'ok@example.com', 'transactional', 'in flight', 'x', 'm7@t', 'sending', 1, now() + interval '1 min'),
  (11, 1, 'ok@example.com', 'transactional', 'no lease', 'x', 'm11@t', 'sending', 1, NULL);
SET client_min_messages = error;
SELECT meisa_deliver(10) AS sent;
RESET client_min_messages;
SELECT id, status, attempts, message_id, lease_until IS NULL AS no_lease FROM meisa.messages WHERE id IN (6, 7, 11) ORDER BY id;

-- marketing mail waits for meisa.secret_file; mail without any sender waits for meisa.from_address
RESET meisa.secret_file;
RESET meisa.from_address;
INSERT INTO meisa.messages (id, contact_id, to_email, kind, subject, text, message_id) VALUES
  (8, 1, 'ok@example.com', 'marketing', 'promo', 'x', 'm8@t'),
  (9, 1, 'ok@example.com', 'transactional', 'no sender', 'x', 'm9@t');
SET client_min_messages = error;
SELECT meisa_deliver(10) AS sent;
RESET client_min_messages;
SELECT id, status, attempts FROM meisa.messages WHERE id IN (8, 9) ORDER BY id;

-- a message that names its own sender goes without meisa.from_address
INSERT INTO meisa.messages (id, contact_id, to_email, from_address, kind, subject, text, message_id) VALUES
  (10, 1, 'ok@example.com', 'Own <own@acme.test>', 'transactional', 'own sender', 'x', 'm10@t');
SET client_min_messages = error;
SELECT meisa_deliver(10) AS sent;
RESET client_min_messages;
SELECT id, status, attempts FROM meisa.messages WHERE id IN (8, 9, 10) ORDER BY id;

-- settings and their contexts
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'meisa.%'
   AND name IN ('meisa.database', 'meisa.smtp_url', 'meisa.smtp_user', 'meisa.from_address',
                'meisa.unsubscribe_base_url', 'meisa.worker_naptime', 'meisa.max_send_rate', 'meisa.batch_size',
                'meisa.lease_time', 'meisa.retry_backoff_base', 'meisa.retry_backoff_max',
                'meisa.retry_give_up_after', 'meisa.smtp_connect_timeout', 'meisa.smtp_timeout',
                'meisa.smtp_ca_file', 'meisa.smtp_connections')
 ORDER BY name;
-- meisa.smtp_connections: 1 to 64, set in the server configuration (reload)
SELECT min_val, max_val, boot_val FROM pg_settings WHERE name = 'meisa.smtp_connections';
SET meisa.smtp_connections = 2;
ALTER SYSTEM SET meisa.smtp_connections = 0;
ALTER SYSTEM SET meisa.smtp_connections = 65;
