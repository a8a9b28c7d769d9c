-- Email normalisation and validation (RFC 5321 shape).
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
-- trimmed (spaces only) and lower-cased
SELECT meisa.normalize_email('  Ann.Smith+Tag@Example.COM ');
SELECT meisa.normalize_email('"quoted.local"@example.com');
SELECT meisa.normalize_email('a@b.co');
-- lengths: 64-byte local part and 254-byte address are the limits
SELECT length(meisa.normalize_email(repeat('a', 64) || '@example.com'));
SELECT pg_temp.try($$SELECT meisa.normalize_email(repeat('a', 65) || '@example.com')$$);
SELECT length(meisa.normalize_email('a@' || repeat(repeat('b', 63) || '.', 3) || repeat('c', 57) || '.io'));
SELECT pg_temp.try($$SELECT meisa.normalize_email('a@' || repeat(repeat('b', 63) || '.', 3) || repeat('c', 58) || '.io')$$);
SELECT pg_temp.try($$SELECT meisa.normalize_email('a@' || repeat('b', 64) || '.io')$$);
-- every rule has its reason
SELECT e, pg_temp.try(format('SELECT meisa.normalize_email(%L)', e)) FROM (VALUES
  (''), ('   '), ('plain'), ('a@b'), ('a@@b.io'), ('a@b@c.io'), ('@b.io'), ('a@'),
  ('a b@c.io'), ('a@c .io'), (E'a\t@c.io'), (E'a@c.io\n'), ('zoë@example.com'), ('a@exämple.com'),
  ('.a@b.io'), ('a.@b.io'), ('a..b@c.io'), ('a(b)@c.io'), ('a,b@c.io'), ('a@-b.io'), ('a@b-.io'),
  ('a@b..io'), ('a@.b.io'), ('a@b.io.'), ('a@b_c.io'), ('a@1.2.3.4'), ('a@[1.2.3.4]'),
  ('""@b.io'), ('"a b"@c.io'), ('"a"b@c.io'), ('"a\"@c.io'), ('"a\"b"@c.io')
) v(e);
-- null is rejected by name
SELECT pg_temp.try($$SELECT meisa.normalize_email(NULL)$$);
