-- The subject and the text/plain part are plain text: {{name}} is not
-- HTML-escaped there; the html part escapes it.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES
  ('order', 'transactional', 'Order for {{data.who}} <{{email}}>', '<p>{{data.who}}</p>', 'Hi {{data.who}} "{{first_name}}"');
SELECT meisa_upsert('{"email": "tom@example.com", "first_name": "O''Neil & <Co>"}') ->> 'created' AS created;
SELECT meisa_trigger_email('order', '{"email": "tom@example.com", "data_variables": {"who": "Tom & Jerry"}}') > 0 AS queued;
SELECT subject, html, text FROM meisa.messages;
