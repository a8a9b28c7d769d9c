-- meisa_trigger_email: rendering when queued, sender and Message-ID,
-- suppression of transactional mail, idempotency, and every error path.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;

INSERT INTO meisa.templates (key, kind, subject, html, text, "from", reply_to) VALUES
  ('password_reset', 'transactional', 'Reset for {{email}}',
   '<p>Reset: <a href="{{data.url}}">{{data.url}}</a></p>{{> footer}}',
   E'Reset: {{{data.url}}}\n{{> footer}}', 'Acme <no-reply@Mail.Acme.io>', 'help@acme.io'),
  ('footer', 'transactional', 'unused', '<small>{{email}} &amp; co</small>', '-- {{email}}', NULL, NULL),
  ('receipt', 'transactional', 'Receipt {{data.order}}', NULL, 'Total {{data.total}} ({{unsubscribe_url}})', NULL, NULL),
  ('bad_subject', 'transactional', 'Order {{{data.order}}}', NULL, 'x', NULL, NULL),
  ('newsletter', 'marketing', 'News', NULL, 'news', NULL, NULL);

-- unsubscribe links are signed with the key in the file meisa.secret_file names
COPY (SELECT 'regression-secret') TO PROGRAM 'umask 077 && cat > meisa_regress_key_41';
SET meisa.secret_file = 'meisa_regress_key_41';
SET meisa.unsubscribe_base_url = 'https://acme.io/u/';

INSERT INTO meisa.contacts (email, first_name, subscribed) VALUES
  ('ann@example.com', 'Ann', true),
  ('unsub@example.com', 'Una', false);
INSERT INTO meisa.contacts (email, bounced_at) VALUES ('bounced@example.com', now());
INSERT INTO meisa.contacts (email, complained_at) VALUES ('complained@example.com', now());

-- the message is rendered when queued: partials are other templates by key
-- (html renders the partial's html, text its text), data_variables is "data"
SELECT meisa_trigger_email('password_reset',
         '{"email": "ann@example.com", "data_variables": {"url": "https://acme.io/r?a=1&b=2"}}') > 0 AS queued;
SELECT to_email, kind, template_key, trigger_key, status, subject, html, text,
       from_address, reply_to, attempts, last_error, idempotency_key,
       contact_id = (SELECT id FROM meisa.contacts WHERE email = 'ann@example.com') AS right_contact,
       next_attempt_at <= now() AS due_now
  FROM meisa.messages;
-- Message-ID: <random hex.id@domain of the sender> (lower-cased domain)
SELECT message_id ~ ('^<[0-9a-f]{24}\.' || id || '@mail\.acme\.io>$') AS message_id_ok FROM meisa.messages;

-- without a sender domain the Message-ID uses meisa.local; the email is
-- matched trimmed and case-insensitively; unsubscribe_url is template data
SELECT meisa_trigger_email('receipt', '{"email": "  ANN@Example.com ", "data_variables": {"order": 7, "total": "9.90"}}') AS receipt_id \gset
SELECT to_email, subject, text ~ '^Total 9\.90 \(https://acme\.io/u/[A-Za-z0-9_-]+\)$' AS text_ok, from_address IS NULL AS no_from,
       message_id ~ ('^<[0-9a-f]{24}\.' || id || '@meisa\.local>$') AS message_id_ok
  FROM meisa.messages WHERE id = :receipt_id;
-- without a "from" in the template the sender is meisa.from_address
SET meisa.from_address = 'News <news@Example.org>';
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com"}') AS guc_from_id \gset
SELECT from_address, message_id ~ ('^<[0-9a-f]{24}\.' || id || '@example\.org>$') AS message_id_ok
  FROM meisa.messages WHERE id = :guc_from_id;
RESET meisa.from_address;
-- the template's own "from" wins over the setting
SET meisa.from_address = 'news@example.org';
SELECT meisa_trigger_email('password_reset', '{"email": "ann@example.com"}') AS tpl_from_id \gset
SELECT from_address FROM meisa.messages WHERE id = :tpl_from_id;
RESET meisa.from_address;
-- Message-IDs are unique
SELECT count(DISTINCT message_id) = count(*) AS unique_ids FROM meisa.messages;

-- transactional mail goes to marketing-unsubscribed contacts
SELECT meisa_trigger_email('receipt', '{"email": "unsub@example.com", "data_variables": {"order": 8}}') AS unsub_id \gset
SELECT to_email, status, last_error FROM meisa.messages WHERE id = :unsub_id;

-- but never to a bounced or complained address: a suppressed row, and a NOTICE
SELECT meisa_trigger_email('receipt', '{"email": "bounced@example.com"}') AS bounced_id \gset
SELECT meisa_trigger_email('receipt', '{"email": "complained@example.com", "data_variables": null}') AS complained_id \gset
SELECT to_email, status, last_error, subject FROM meisa.messages
 WHERE id IN (:bounced_id, :complained_id) ORDER BY id;

-- idempotency_key: a retry returns the first message id and queues nothing
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com", "idempotency_key": "order-9", "data_variables": {"order": 9}}') AS first_id \gset
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com", "idempotency_key": "order-9", "data_variables": {"order": 10}}') = :first_id AS same_id;
SELECT count(*) AS order_9_messages, min(subject) AS subject FROM meisa.messages WHERE idempotency_key = 'order-9';
-- the key is scoped to the template: another template with the same key is a new message
SELECT meisa_trigger_email('password_reset', '{"email": "ann@example.com", "idempotency_key": "order-9"}') <> :first_id AS other_template_new;
-- a retry of a suppressed message says so again
SELECT meisa_trigger_email('receipt', '{"email": "bounced@example.com", "idempotency_key": "b-1"}') AS b1 \gset
SELECT meisa_trigger_email('receipt', '{"email": "bounced@example.com", "idempotency_key": "b-1"}') = :b1 AS same_suppressed_id;
-- an idempotency key at the limit is fine
SELECT meisa_trigger_email('receipt', jsonb_build_object('email', 'ann@example.com', 'idempotency_key', repeat('i', 255))) > 0 AS ok;

-- template data: the contact's data at top level (custom_fields, tags ...)
INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('profile', 'transactional', 'Hi {{first_name}}',
   'plan={{custom_fields.plan}} tags={{#tags}}[{{.}}]{{/tags}} id={{#id}}yes{{/id}} data={{data.x}}');
UPDATE meisa.contacts SET custom_fields = '{"plan": "pro"}', tags = '{beta,vip}' WHERE email = 'ann@example.com';
SELECT meisa_trigger_email('profile', '{"email": "ann@example.com", "data_variables": {"x": "<1>"}}') AS profile_id \gset
SELECT subject, text FROM meisa.messages WHERE id = :profile_id;

-- an unknown address: the contact is created through meisa_upsert (the same
-- path as the API: normalised, validated, contact_created fires)
INSERT INTO meisa.automations (name, trigger, actions)
VALUES ('tag new contacts', 'contact_created', '[{"add_tag": "new"}]');
SELECT meisa_trigger_email('receipt', '{"email": " New.User@Example.com"}') AS new_id \gset
SELECT c.email, c.subscribed, c.tags, m.to_email, m.status
  FROM meisa.messages m JOIN meisa.contacts c ON c.id = m.contact_id WHERE m.id = :new_id;
-- an invalid unknown address is rejected by that path, and nothing is left
SELECT meisa_trigger_email('receipt', '{"email": "not an address"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS contacts FROM meisa.contacts WHERE email LIKE 'not%';
-- an unknown template never creates a contact
SELECT meisa_trigger_email('nope', '{"email": "ghost@example.com"}');
\echo :LAST_ERROR_SQLSTATE
SELECT count(*) AS ghosts FROM meisa.contacts WHERE email = 'ghost@example.com';

SELECT count(*) AS messages_before_errors FROM meisa.messages;
-- errors: unknown template (42704), marketing template (42704)
SELECT meisa_trigger_email('nope', '{"email": "ann@example.com"}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('newsletter', '{"email": "ann@example.com"}');
\echo :LAST_ERROR_SQLSTATE
-- missing or empty email, wrong types (22023)
SELECT meisa_trigger_email('receipt', '{"data_variables": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', '{"email": ""}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', '{"email": 42}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com", "data_variables": [1, 2]}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com", "data_variables": "x"}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com", "idempotency_key": 5}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com", "idempotency_key": ""}');
\echo :LAST_ERROR_SQLSTATE
-- an idempotency_key over 255 bytes (54000)
SELECT meisa_trigger_email('receipt', jsonb_build_object('email', 'ann@example.com', 'idempotency_key', repeat('i', 256)));
\echo :LAST_ERROR_SQLSTATE
-- size limits (54000): the payload (meisa.max_payload_size) and data_variables
-- (meisa.max_property_size, as event properties)
SET meisa.max_payload_size = 1024;
SELECT meisa_trigger_email('receipt', jsonb_build_object('email', 'ann@example.com', 'data_variables', jsonb_build_object('x', repeat('x', 2000))));
\echo :LAST_ERROR_SQLSTATE
RESET meisa.max_payload_size;
SET meisa.max_property_size = 100;
SELECT meisa_trigger_email('receipt', jsonb_build_object('email', 'ann@example.com', 'data_variables', jsonb_build_object('x', repeat('x', 200))));
\echo :LAST_ERROR_SQLSTATE
RESET meisa.max_property_size;
-- unknown payload key, payload not an object, null arguments (22023)
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com", "data": {}}');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', '["ann@example.com"]');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email(NULL, '{"email": "ann@example.com"}');
\echo :LAST_ERROR_SQLSTATE
-- a rendered subject with a line break (header injection) is rejected (22023)
SELECT meisa_trigger_email('bad_subject', E'{"email": "ann@example.com", "data_variables": {"order": "1\\r\\nBcc: evil@x.io"}}');
\echo :LAST_ERROR_SQLSTATE
-- a recipient address with a line break never gets queued: contacts reject it
-- (also for plain SQL), and so does the creation path of meisa_trigger_email
INSERT INTO meisa.contacts (email) VALUES (E'crlf@example.com\r\nBcc: evil@x.io');
\echo :LAST_ERROR_SQLSTATE
SELECT meisa_trigger_email('receipt', E'{"email": "crlf@example.com\\r\\nBcc: evil@x.io"}');
\echo :LAST_ERROR_SQLSTATE
-- a render failure (output limit) is an error too
SET meisa.max_render_size = 1024;
SELECT meisa_trigger_email('receipt', jsonb_build_object('email', 'ann@example.com', 'data_variables', jsonb_build_object('total', repeat('x', 5000))));
\echo :LAST_ERROR_SQLSTATE
RESET meisa.max_render_size;
-- nothing partial was left behind by the errors
SELECT count(*) AS messages_after_errors FROM meisa.messages;
SELECT count(*) AS contacts FROM meisa.contacts;

-- the privilege sets: meisa_app may call it, meisa_reader may not
SET ROLE meisa_app;
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com"}') > 0 AS app_can_send;
RESET ROLE;
SET ROLE meisa_reader;
SELECT meisa_trigger_email('receipt', '{"email": "ann@example.com"}');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- a render failure of meisa_trigger_email names the template and the
-- part being rendered (CONTEXT), also for the header check of the subject
INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES
  ('loop', 'transactional', 'Loop', '<p>{{> loop}}</p>', 'ok'),
  ('subj', 'transactional', 'Hi {{data.name}}', NULL, 'ok');
SELECT meisa_trigger_email('loop', '{"email": "r@example.com"}');
SELECT meisa_trigger_email('subj', '{"email": "r@example.com", "data_variables": {"name": "a\nBcc: x@y.io"}}');
SELECT count(*) AS contacts_left_behind FROM meisa.contacts WHERE email = 'r@example.com';
