-- test/hardening/sql/identity_setup.sql
--	The identity database of identity.sh: meisa and schema "idrace" with
--	wrappers the pgbench scripts call; each records any error it catches in
--	idrace.errors (op, SQLSTATE, message, detail) instead of aborting the
--	client, so every error is counted.
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS meisa;
RESET client_min_messages;

CREATE SCHEMA idrace;
CREATE TABLE idrace.errors (
  at       timestamptz NOT NULL DEFAULT clock_timestamp(),
  part     text NOT NULL,
  op       text NOT NULL,
  sqlstate text NOT NULL,
  message  text,
  detail   text
);

-- meisa_upsert or meisa_track of one payload; an error is recorded
CREATE FUNCTION idrace.call(part text, op text, payload jsonb) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text;
BEGIN
  IF op = 'track' THEN
    PERFORM meisa_track('visit', payload);
  ELSE
    PERFORM meisa_upsert(payload);
  END IF;
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, det = PG_EXCEPTION_DETAIL;
  INSERT INTO idrace.errors (part, op, sqlstate, message, detail) VALUES (part, op, st, msg, det);
END $$;

-- the keys part starts user n again: its contacts are deleted
CREATE FUNCTION idrace.reset(n int) RETURNS void
LANGUAGE sql AS $$
  DELETE FROM meisa.contacts
   WHERE email IN ('r' || n || '@race.test', 'r' || n || '-alt@race.test') OR external_id = 'rx' || n;
$$;

-- one contact, self1, whose email the self part switches back and forth
SELECT meisa_upsert('{"external_id": "self1", "email": "sc-b@race.test"}') IS NOT NULL AS self1;
