-- Topics: a contact leaves one topic at a time; a message of a topic the
-- contact left is suppressed with reason topic_unsubscribed, when queued
-- and again when sent; the token of a topic's message leaves that topic.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET timezone = 'UTC';
SET meisa.from_address = 'news@example.com';

INSERT INTO meisa.topics (name, description) VALUES
  ('product-updates', 'What we shipped'), ('tips', 'How to get more out of it');
INSERT INTO meisa.topics (name, description, default_subscribed) VALUES ('beta', 'Opt in only', false);
-- names: letters, digits, space, "_", ".", "-", at most 100 characters
\set VERBOSITY terse
INSERT INTO meisa.topics (name) VALUES ('');
INSERT INTO meisa.topics (name) VALUES ('bad/name');
INSERT INTO meisa.topics (name) VALUES (repeat('x', 101));
INSERT INTO meisa.topics (name) VALUES ('tips');
\set VERBOSITY default

SELECT meisa_upsert(format('{"email": "t%s@example.com", "first_name": "T%s"}', i, i)::jsonb) ->> 'created'
  FROM generate_series(1, 6) i;

-- meisa_set_topic: true when it changed whether the contact gets the topic
SELECT meisa_set_topic('t1@example.com', 'product-updates', false) AS left_it,
       meisa_set_topic('t1@example.com', 'product-updates', false) AS again;
SELECT meisa_set_topic('t1@example.com', 'product-updates', true) AS back;
SELECT meisa_set_topic('t1@example.com', 'product-updates', false) AS left_again;
-- a subscribed choice equal to the default still records the row, not a change
SELECT meisa_set_topic('t2@example.com', 'tips', true) AS default_already;
SELECT meisa_set_topic('t2@example.com', 'beta', true) AS opted_in;
-- errors name the field
SELECT meisa_set_topic('t1@example.com', 'nope', false);
SELECT meisa_set_topic('nobody@example.com', 'tips', false);
SELECT meisa_set_topic(NULL, 'tips', false);
SELECT meisa_set_topic('t1@example.com', NULL, false);
SELECT meisa_set_topic('t1@example.com', 'tips', NULL);

-- the upsert payload key "topics"
SELECT meisa_upsert('{"email": "t3@example.com", "topics": {"tips": false, "beta": true}}') ->> 'created';
SELECT meisa_upsert('{"email": "t7@example.com", "topics": {"tips": false}}') ->> 'created' AS new_contact;
SELECT meisa_upsert('{"email": "t3@example.com", "topics": {"nope": false}}');
SELECT meisa_upsert('{"email": "t3@example.com", "topics": {"tips": "no"}}');
SELECT meisa_upsert('{"email": "t3@example.com", "topics": ["tips"]}');
SELECT meisa_upsert('{"email": "t3@example.com", "topics": {"": true}}');
-- a failed upsert leaves nothing: neither the contact nor a topic choice
SELECT meisa_upsert('{"email": "t8@example.com", "topics": {"tips": false, "nope": true}}');
SELECT count(*) AS t8 FROM meisa.contacts WHERE email = 't8@example.com';

SELECT c.email, t.name AS topic, s.subscribed
  FROM meisa.topic_subscriptions s JOIN meisa.topics t ON t.id = s.topic_id
  JOIN meisa.contacts c ON c.id = s.contact_id ORDER BY 1, 2;

-- the view of opt-outs (explicit choices to leave)
SELECT email, topic, changed_at IS NOT NULL AS has_time FROM meisa.topic_opt_outs ORDER BY 1, 2;
-- global unsubscribes stay in meisa.unsubscribed_emails only
SELECT count(*) AS global_unsubscribes FROM meisa.unsubscribed_emails;

-- a transactional template has no topic
INSERT INTO meisa.templates (key, kind, subject, text, topic) VALUES ('receipt', 'transactional', 'R', 'r', 'tips');
INSERT INTO meisa.templates (key, kind, subject, text, topic) VALUES ('news', 'marketing', 'News for {{first_name}}', 'u={{unsubscribe_url}}', 'product-updates');
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('plain', 'marketing', 'Plain', 'u={{unsubscribe_url}}');
INSERT INTO meisa.templates (key, kind, subject, text, topic) VALUES ('betanews', 'marketing', 'Beta', 'b', 'beta');
INSERT INTO meisa.templates (key, kind, subject, text, topic) VALUES ('ghost', 'marketing', 'G', 'g', 'no-such-topic');
UPDATE meisa.templates SET kind = 'transactional' WHERE key = 'news';

-- automation mail of a topic: suppressed for a contact who left it
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('send news', 'tag_added', 'news', '[{"send_email": "news"}]'),
  ('send beta', 'tag_added', 'beta', '[{"send_email": "betanews"}]');
SELECT meisa_add_tag(email, 'news') FROM meisa.contacts WHERE email IN ('t1@example.com', 't2@example.com') ORDER BY email;
SELECT meisa_add_tag(email, 'beta') FROM meisa.contacts WHERE email IN ('t2@example.com', 't4@example.com') ORDER BY email;
SELECT to_email, template_key, topic, status, last_error FROM meisa.messages ORDER BY id;

-- a sequence's topic wins over its templates'
INSERT INTO meisa.sequences (name, topic) VALUES ('tips course', 'tips');
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
  SELECT id, 1, 'plain' FROM meisa.sequences WHERE name = 'tips course';
SELECT meisa_enroll(email, 'tips course') > 0 FROM meisa.contacts WHERE email IN ('t3@example.com', 't4@example.com') ORDER BY email;
SELECT meisa_run_due();
SELECT c.email, e.status, e.exit_reason FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id ORDER BY 1;
SELECT to_email, template_key, topic, status, last_error FROM meisa.messages WHERE sequence_id IS NOT NULL ORDER BY id;

-- unsubscribe tokens: a topic's message carries a 60-character token that
-- leaves the topic; other marketing mail a 44-character one (all marketing)
COPY (SELECT 'topic-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_92';
SET meisa.secret_file = 'meisa_regress_key_92';
SET meisa.unsubscribe_base_url = 'https://example.com/u/';
SELECT meisa_add_tag('t5@example.com', 'news');
INSERT INTO meisa.automations (name, trigger, trigger_filter, actions) VALUES
  ('send plain', 'tag_added', 'plain', '[{"send_email": "plain"}]');
SELECT meisa_add_tag('t5@example.com', 'plain');
SELECT template_key, length(substring(text FROM 'u=https://example.com/u/(.*)$')) AS token_length
  FROM meisa.messages WHERE to_email = 't5@example.com' ORDER BY id;
-- the List-Unsubscribe header of the message carries the same kind of token
SELECT template_key, length(substring(meisa.mime(id) FROM 'List-Unsubscribe: <https://example.com/u/([A-Za-z0-9_-]+)>')) AS header_token
  FROM meisa.messages WHERE to_email = 't5@example.com' ORDER BY id;
CREATE TEMP TABLE tok AS
  SELECT template_key, substring(text FROM 'u=https://example.com/u/(.*)$') AS t
    FROM meisa.messages WHERE to_email = 't5@example.com';
SELECT template_key, meisa.unsubscribe_token_topic(t) AS topic,
       meisa.unsubscribe_token_contact(t) = (SELECT id FROM meisa.contacts WHERE email = 't5@example.com') AS names_contact
  FROM tok ORDER BY 1;
-- meisa_unsubscribe with the topic's token leaves the topic only
SELECT meisa_unsubscribe(t) FROM tok WHERE template_key = 'news';
SELECT meisa_unsubscribe(t) FROM tok WHERE template_key = 'news';
SELECT email, topic FROM meisa.topic_opt_outs WHERE email = 't5@example.com';
SELECT count(*) AS t5_globally_unsubscribed FROM meisa.unsubscribed_emails WHERE email = 't5@example.com';
-- the whole URL works too, and a forged topic token is refused
SELECT meisa_unsubscribe_topic('https://example.com/u/' || t, 'tips') FROM tok WHERE template_key = 'news';
SELECT meisa_unsubscribe(overlay(t PLACING (CASE WHEN substr(t, 30, 1) = 'A' THEN 'B' ELSE 'A' END) FROM 30 FOR 1))
  FROM tok WHERE template_key = 'news';
-- meisa_unsubscribe_topic by email, and errors
SELECT meisa_unsubscribe_topic('t6@example.com', 'product-updates') AS by_email,
       meisa_unsubscribe_topic('t6@example.com', 'product-updates') AS again;
SELECT meisa_unsubscribe_topic('t6@example.com', 'nope');
SELECT meisa_unsubscribe_topic(NULL, 'tips');
SELECT meisa_unsubscribe_topic('t6@example.com', NULL);
-- the token of mail without a topic unsubscribes from all marketing mail
SELECT meisa_unsubscribe(t) FROM tok WHERE template_key = 'plain';
SELECT email, reason FROM meisa.unsubscribed_emails WHERE email = 't5@example.com';

-- send time: a contact who left the topic after the message was queued
SELECT meisa_resubscribe('t5@example.com');
SELECT meisa_set_topic('t5@example.com', 'product-updates', true);
SELECT meisa_add_tag('t6@example.com', 'news');   -- t6 left product-updates: suppressed now
SELECT meisa_set_topic('t6@example.com', 'product-updates', true);
SELECT meisa_add_tag('t6@example.com', 'news');   -- already tagged: nothing
SELECT meisa_remove_tag('t6@example.com', 'news');
SELECT meisa_add_tag('t6@example.com', 'news');   -- queued
SELECT meisa_set_topic('t6@example.com', 'product-updates', false);
UPDATE meisa.messages SET status = 'cancelled' WHERE status = 'queued' AND to_email <> 't6@example.com';
SET meisa.smtp_url = 'smtp://127.0.0.1:9';
SELECT meisa_deliver(10);
SELECT to_email, status, last_error FROM meisa.messages WHERE to_email = 't6@example.com' ORDER BY id;
RESET meisa.smtp_url;

-- deleting a contact deletes its topic choices; deleting a topic its choices
DELETE FROM meisa.contacts WHERE email = 't1@example.com';
SELECT count(*) AS t1_choices FROM meisa.topic_subscriptions s
 WHERE NOT EXISTS (SELECT 1 FROM meisa.contacts c WHERE c.id = s.contact_id);
DELETE FROM meisa.templates WHERE topic = 'beta';
DELETE FROM meisa.topics WHERE name = 'beta';
SELECT count(*) AS beta_choices FROM meisa.topic_subscriptions s
 WHERE NOT EXISTS (SELECT 1 FROM meisa.topics t WHERE t.id = s.topic_id);
-- a topic in use by a template cannot be deleted; renaming follows
DELETE FROM meisa.topics WHERE name = 'product-updates';
UPDATE meisa.topics SET name = 'updates' WHERE name = 'product-updates';
SELECT key, topic FROM meisa.templates WHERE key = 'news';
SELECT * FROM meisa.check_invariants();
