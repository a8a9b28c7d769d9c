-- Objects in a schema the caller put before pg_catalog in search_path are
-- never picked up by meisa's queries in the code that runs with the
-- caller's search_path (triggers on meisa.automations and meisa.contacts,
-- automation actions, condition evaluation).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('hello', 'marketing', 'Hi', 'Hello');
INSERT INTO meisa.sequences (name) VALUES ('real');
SELECT meisa_upsert('{"email": "ann@example.com"}') ->> 'created' AS created;

CREATE SCHEMA evil;
CREATE FUNCTION evil.eq_text(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'evil text = called'; RETURN true; END $$;
CREATE FUNCTION evil.eq_int8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'evil bigint = called'; RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE FUNCTION evil.ge_tstz(a timestamptz, b timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 'evil timestamptz >= called'; RETURN true; END $$;
CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq_text);
CREATE OPERATOR evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.eq_int8);
CREATE OPERATOR evil.>= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = evil.ge_tstz);
SET search_path = evil, pg_catalog, public;

-- the validator still finds no sequence "nosuch" (no NOTICE)
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('bad ref', 'contact_updated', '[{"enroll": "nosuch"}]');
INSERT INTO meisa.automations (name, trigger, actions) VALUES
  ('bad template', 'contact_updated', '[{"send_email": "nosuch"}]');
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('tagger', 'contact_updated', '{"performed": "login", "within": "1 day"}',
   '[{"add_tag": "active"}, {"set_field": {"custom_fields.seen": true}}, {"enroll": "real"}]');

-- plain DML on meisa.contacts: the automation's actions and its event count
-- use pg_catalog's operators (no NOTICE)
SELECT meisa_track('login', '{"email": "ann@example.com"}') > 0 AS tracked;
UPDATE meisa.contacts SET first_name = 'Ann' WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
SELECT tags, custom_fields FROM meisa.contacts WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
SELECT status FROM meisa.automation_runs ORDER BY id;
SELECT s.name, e.status FROM meisa.enrollments e JOIN meisa.sequences s ON s.id OPERATOR(pg_catalog.=) e.sequence_id;
-- a condition that reads the contact's data (lacks_tag) from a plain UPDATE:
-- the contact is loaded with pg_catalog's = (no NOTICE)
INSERT INTO meisa.automations (name, trigger, conditions, actions) VALUES
  ('reader', 'contact_updated', '{"lacks_tag": "vip"}', '[{"add_tag": "regular"}]');
UPDATE meisa.contacts SET last_name = 'Lee' WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
SELECT tags FROM meisa.contacts WHERE email OPERATOR(pg_catalog.=) 'ann@example.com';
-- an event with an event_id looks its first copy up with pg_catalog's =
SELECT meisa_track('login', '{"email": "ann@example.com", "event_id": "e-1"}') OPERATOR(pg_catalog.=)
       meisa_track('login', '{"email": "ann@example.com", "event_id": "e-1"}') AS same_event;
RESET search_path;
