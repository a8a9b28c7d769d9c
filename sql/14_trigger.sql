-- The contacts triggers: plain SQL writes are normalised and recorded; nested writes are safe.
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
-- plain INSERT: email and tags normalised; its change set is the 'created'
-- entry meisa.contact_activity derives from the row (no activity row)
INSERT INTO meisa.contacts (email, tags, custom_fields) VALUES ('  Sql@Example.COM', '{" b", a, b}', '{"plan": "free"}');
SELECT id, email, tags, subscribed FROM meisa.contacts;
SELECT kind, detail FROM meisa.contact_activity WHERE kind = 'created' ORDER BY contact_id;
SELECT count(*) AS activity_rows FROM meisa.activity;
-- plain UPDATE: only real changes are recorded
UPDATE meisa.contacts SET first_name = 'Sue', custom_fields = custom_fields || '{"plan": "pro"}';
SELECT kind, detail FROM meisa.activity ORDER BY id DESC LIMIT 1;
UPDATE meisa.contacts SET first_name = 'Sue';
SELECT count(*) AS activity_rows FROM meisa.activity;
UPDATE meisa.contacts SET tags = tags || '{c}'::text[] || '{a}'::text[];
SELECT tags FROM meisa.contacts;
SELECT detail FROM meisa.activity ORDER BY id DESC LIMIT 1;
UPDATE meisa.contacts SET tags = '{}';
SELECT detail->'tags' FROM meisa.activity ORDER BY id DESC LIMIT 1;
-- plain SQL subscription changes keep the bookkeeping
UPDATE meisa.contacts SET subscribed = false;
SELECT subscribed, unsubscribe_reason, unsubscribed_at IS NOT NULL AS has_time FROM meisa.contacts;
SELECT email, external_id, reason, changed_at IS NOT NULL AS has_time FROM meisa.unsubscribed_emails;
UPDATE meisa.contacts SET subscribed = true;
SELECT subscribed, unsubscribe_reason FROM meisa.contacts;
INSERT INTO meisa.contacts (email, subscribed) VALUES ('off@example.com', false);
SELECT email, unsubscribe_reason, unsubscribed_at IS NOT NULL AS has_time FROM meisa.contacts WHERE NOT subscribed;
-- bad values from plain SQL are rejected
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email) VALUES ('nope') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, tags) VALUES ('t@example.com', '{""}') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, tags) VALUES ('t@example.com', '{NULL}') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, tags) VALUES ('t@example.com', '{{a},{b}}') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, custom_fields) VALUES ('t@example.com', '[]') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, custom_fields) VALUES ('t@example.com', '{"a": {"b": 1}}') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, custom_fields) VALUES ('t@example.com', '{"bad name": 1}') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, external_id) VALUES ('t@example.com', '') RETURNING id$$);
SELECT pg_temp.try($$INSERT INTO meisa.contacts (email, external_id) VALUES ('t@example.com', E'a\nb') RETURNING id$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET email = 'x y@example.com' RETURNING id$$);
SELECT pg_temp.try($$UPDATE meisa.contacts SET email = 'OFF@example.com' WHERE email = 'sql@example.com' RETURNING id$$);
SELECT count(*) FROM meisa.contacts;
-- nested writes: a write made from inside the contacts trigger (here from a
-- trigger on meisa.activity, as automation actions will) is recorded too and
-- does not disturb the outer call's result
CREATE FUNCTION pg_temp.welcome() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.kind = 'updated' AND NEW.detail ? 'custom_fields.plan' THEN
    UPDATE meisa.contacts SET tags = tags || '{welcomed}'::text[],
           custom_fields = custom_fields || '{"welcomed": true}' WHERE id = NEW.contact_id;
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER welcome AFTER INSERT ON meisa.activity FOR EACH ROW EXECUTE FUNCTION pg_temp.welcome();
SELECT meisa_upsert('{"email": "nested@example.com", "custom_fields": {"plan": "free"}}');
SELECT meisa_upsert('{"email": "nested@example.com", "custom_fields": {"plan": "pro"}}');
SELECT tags, custom_fields FROM meisa.contacts WHERE email = 'nested@example.com';
SELECT a.kind, a.detail FROM meisa.activity a JOIN meisa.contacts c ON c.id = a.contact_id
 WHERE c.email = 'nested@example.com' ORDER BY a.id;
DROP TRIGGER welcome ON meisa.activity;
-- activity goes with its contact
DELETE FROM meisa.contacts WHERE email = 'nested@example.com';
SELECT count(*) FROM meisa.activity a WHERE NOT EXISTS (SELECT 1 FROM meisa.contacts c WHERE c.id = a.contact_id);
-- the trigger functions refuse to be called otherwise
SELECT pg_temp.try($$SELECT meisa.contacts_after()$$);
