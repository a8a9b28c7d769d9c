-- Header lines of meisa.mime(): every header is folded at whitespace so its
-- lines stay within 78 characters (RFC 5322 §2.1.1, §2.2.3), long ASCII display
-- names in From and Reply-To included; a value that cannot be folded (a
-- Message-ID, the List-Unsubscribe URL) is refused before its line could pass
-- 998 characters.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_77';
SET meisa.secret_file = 'meisa_regress_key_77';
SET meisa.unsubscribe_base_url = 'https://example.com/u/';
-- errors as SQLSTATE: message (detail)
CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE r text; st text; m text; d text;
BEGIN
  EXECUTE q INTO r;
  RETURN coalesce(r, '(null)');
EXCEPTION WHEN others THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, m = MESSAGE_TEXT, d = PG_EXCEPTION_DETAIL;
  RETURN st || ': ' || left(m, 80) || coalesce(nullif(' (' || d || ')', ' ()'), '');
END $$;
-- a sender whose display name is 400 words: one From line of 2,016
-- characters unless folded
SELECT length(set_config('meisa.from_address', repeat('Word ', 400) || '<a@b.io>', false)) AS from_length;

INSERT INTO meisa.contacts (id, email) VALUES (1, 'ada@example.com');

-- header lines of message id; unfolded: the header section with folds removed
CREATE FUNCTION pg_temp.head(id bigint) RETURNS SETOF text LANGUAGE sql AS
  $$ SELECT regexp_split_to_table(split_part(meisa.mime(id), E'\r\n\r\n', 1), E'\r\n') $$;
CREATE FUNCTION pg_temp.unfolded(id bigint, field text) RETURNS text LANGUAGE sql AS
  $$ SELECT substr(h, length(field) + 3)
       FROM regexp_split_to_table(regexp_replace(split_part(meisa.mime(id), E'\r\n\r\n', 1),
                                                 E'\r\n([ \t])', '\1', 'g'), E'\r\n') AS h
      WHERE h LIKE field || ': %' $$;

-- 201: the sender of meisa.from_address; Reply-To with quotes and backslashes
-- to escape; a subject of many words; marketing (List-Unsubscribe)
INSERT INTO meisa.messages (id, contact_id, to_email, reply_to, kind, subject, text, message_id, created_at)
VALUES (201, 1, 'ada@example.com',
        repeat('Support "Desk" \ ', 60) || 'End <help@acme.test>', 'marketing',
        rtrim(repeat('Subject words ', 120)), 'body', 'm201@meisa.test', '2026-01-05 10:20:30+00');
-- 202: a display name and a subject that are one word each, too long to fold
-- (written as encoded-words), and a long non-ASCII display name
INSERT INTO meisa.messages (id, contact_id, to_email, from_address, reply_to, kind, subject, text, message_id, created_at)
VALUES (202, 1, 'ada@example.com', repeat('X', 1200) || ' <x@acme.test>', repeat('Zoë ', 300) || '<z@acme.test>',
        'transactional', repeat('Y', 1200), 'body', 'm202@meisa.test', '2026-01-05 10:20:30+00');

-- every line of both messages, headers and bodies, is at most 998 characters
SELECT m.id, max(length(line)) <= 998 AS within_998, count(*) > 20 AS folded
  FROM unnest(ARRAY[201, 202]) AS m(id), regexp_split_to_table(meisa.mime(m.id), E'\r\n') AS line
 GROUP BY m.id ORDER BY m.id;
-- every header line is at most 78 characters, but for List-Unsubscribe (a URL
-- cannot be folded); all fields present once
SELECT m.id, count(*) FILTER (WHERE length(h) > 78 AND h NOT LIKE 'List-Unsubscribe: <%') AS over_78,
       string_agg(split_part(h, ':', 1), ' ' ORDER BY n) FILTER (WHERE h !~ '^[ \t]') AS fields
  FROM unnest(ARRAY[201, 202]) AS m(id), pg_temp.head(m.id) WITH ORDINALITY AS x(h, n)
 GROUP BY m.id ORDER BY m.id;
-- encoded-words stay within 75 characters
SELECT bool_and(length(w[1]) <= 75) AS words_short, count(*) > 40 AS many_words
  FROM regexp_matches(meisa.mime(202), '(=\?UTF-8\?B\?[A-Za-z0-9+/=]*\?=)', 'g') AS w;

-- unfolding (removing each CRLF before a blank) gives back the display names
SELECT pg_temp.unfolded(201, 'From') = '"' || rtrim(repeat('Word ', 400)) || '" <a@b.io>' AS from_round_trips,
       pg_temp.unfolded(201, 'Reply-To') = '"' || replace(replace(repeat('Support "Desk" \ ', 60) || 'End', '\', '\\'), '"', '\"')
                                      || '" <help@acme.test>' AS reply_to_round_trips,
       pg_temp.unfolded(201, 'Subject') = rtrim(repeat('Subject words ', 120)) AS subject_round_trips,
       pg_temp.unfolded(201, 'To') AS to_address;
-- the folded From of 201: folds only at the spaces between words
SELECT h FROM pg_temp.head(201) AS h LIMIT 4;
SELECT h FROM pg_temp.head(202) AS h WHERE h LIKE '%<x@acme.test>' OR h LIKE '%<z@acme.test>';

-- a Message-ID cannot be folded: one that could not fit its line is refused
-- when queued (986 characters with brackets fit exactly: 998 with "Message-ID: ")
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id)
VALUES (203, 'ada@example.com', 'transactional', 'Hi', 'x', '<' || repeat('m', 973) || '@meisa.test>');
SELECT max(length(h)) AS longest_header_line FROM pg_temp.head(203) AS h;
SELECT pg_temp.try($$INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id)
  VALUES (204, 'ada@example.com', 'transactional', 'Hi', 'x', '<' || repeat('m', 974) || '@meisa.test>') RETURNING id$$) AS too_long;
-- without brackets (the header adds them)
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id)
VALUES (204, 'ada@example.com', 'transactional', 'Hi', 'x', repeat('m', 973) || '@meisa.test');
SELECT max(length(h)) AS longest_header_line FROM pg_temp.head(204) AS h;
SELECT pg_temp.try($$UPDATE meisa.messages SET message_id = repeat('m', 974) || '@meisa.test' WHERE id = 204 RETURNING id$$) AS too_long;
-- a row written while the check was off is refused when assembled
ALTER TABLE meisa.messages DISABLE TRIGGER messages_check_write;
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id)
VALUES (205, 'ada@example.com', 'transactional', 'Hi', 'x', repeat('m', 2000) || '@meisa.test');
ALTER TABLE meisa.messages ENABLE TRIGGER messages_check_write;
SELECT pg_temp.try('SELECT meisa.mime(205)') AS assembled;

-- the List-Unsubscribe URL: a base URL that could not fit the line is refused
-- (918 characters fit: "List-Unsubscribe: <" + 918 + 60-character topic token + ">" = 998)
SELECT pg_temp.try($$SELECT set_config('meisa.unsubscribe_base_url', 'https://example.com/u/' || repeat('a', 897), false)$$) AS too_long;
SELECT length(set_config('meisa.unsubscribe_base_url', 'https://example.com/u/' || repeat('a', 896), false)) AS base_length;
SELECT max(length(h)) AS longest_header_line FROM pg_temp.head(201) AS h;
SELECT count(*) AS lines_over_998 FROM regexp_split_to_table(meisa.mime(201), E'\r\n') AS line WHERE length(line) > 998;

-- an ASCII subject with a word too long to fold within 78 characters
-- becomes encoded-words; the List-Unsubscribe URL stays on one line (it
-- cannot be folded, and a value starting on a continuation line parses
-- with a leading blank)
SET meisa.unsubscribe_base_url = 'https://example.com/unsub/';
SET meisa.from_address = 'Acme Team <hello@acme.test>';
INSERT INTO meisa.messages (id, contact_id, to_email, kind, subject, text, message_id, created_at)
VALUES (301, 1, 'ada@example.com', 'marketing', 'Reset: ' || repeat('A', 100), 'x',
        'a301@meisa.test', '2026-01-05 10:20:30+00');
SELECT line FROM regexp_split_to_table(meisa.mime(301), E'\r\n') AS line;
SELECT max(length(line)) AS longest_but_list_unsubscribe
  FROM regexp_split_to_table(meisa.mime(301), E'\r\n') AS line WHERE line NOT LIKE 'List-Unsubscribe:%';
SELECT meisa.unsubscribe_token_contact(substring(meisa.mime(301)
       FROM E'\r\nList-Unsubscribe: <https://example.com/unsub/([A-Za-z0-9_-]+)>\r\n')) AS contact;
RESET meisa.unsubscribe_base_url;

-- leading or trailing blanks of a subject survive (parsers drop them from plain text)
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id, created_at)
VALUES (302, 'ada@example.com', 'transactional', ' padded ', 'x', 'a302@meisa.test', '2026-01-05 10:20:30+00');
SELECT line FROM regexp_split_to_table(meisa.mime(302), E'\r\n') AS line WHERE line LIKE 'Subject:%';
-- ordinary ASCII subjects are unchanged: folded at spaces
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id, created_at)
VALUES (303, 'ada@example.com', 'transactional', rtrim(repeat('word ', 20)), 'x', 'a303@meisa.test', '2026-01-05 10:20:30+00');
SELECT line FROM regexp_split_to_table(meisa.mime(303), E'\r\n') AS line WHERE line LIKE 'Subject:%' OR line LIKE ' word%';
