-- MIME assembly: meisa.mime(message_id) shows the exact bytes delivery sends.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_60';
SET meisa.secret_file = 'meisa_regress_key_60';
SET meisa.unsubscribe_base_url = 'https://example.com/u/';
SET meisa.from_address = 'Acme Team <hello@acme.test>';

INSERT INTO meisa.contacts (id, email, first_name) VALUES (1, 'ada@example.com', 'Ada'), (2, 'bob@example.com', 'Bob');

-- a marketing message with text and HTML: multipart/alternative, List-Unsubscribe
INSERT INTO meisa.messages (id, contact_id, to_email, kind, template_key, subject, html, text, message_id, created_at)
VALUES (101, 1, 'ada@example.com', 'marketing', 'welcome', 'Welcome, Ada!',
        '<p>Hello <b>Ada</b></p>', E'Hello Ada\nSee you soon.', 'm101@meisa.test',
        '2026-01-05 10:20:30+00');
-- lines of the message (CRLF split), then proof that every line end is CRLF
SELECT line FROM regexp_split_to_table(meisa.mime(101), E'\r\n') AS line;
SELECT meisa.mime(101) ~ E'[^\r]\n' AS has_bare_lf, meisa.mime(101) ~ E'\r[^\n]' AS has_bare_cr;
-- the token in List-Unsubscribe names the contact
SELECT meisa.unsubscribe_token_contact(substring(meisa.mime(101) FROM 'List-Unsubscribe: <https://example.com/u/([A-Za-z0-9_-]+)>')) AS contact;

-- transactional: no List-Unsubscribe; own sender with a non-ASCII display name; Reply-To
INSERT INTO meisa.messages (id, contact_id, to_email, from_address, reply_to, kind, subject, text, message_id, created_at)
VALUES (102, 2, 'bob@example.com', 'Zoë Müller <zoe@acme.test>', '"Support \"Desk\"" <help@acme.test>',
        'transactional', 'Ihr Passwort: Grüße aus Köln — ünïcödé ✓ and a rather long tail of words to fold',
        E'Line one\r\n.starts with a dot\r\nFrom here on\r\ntrailing space \r\nequals = sign\r\nÜmlaut', '<m102@meisa.test>',
        '2026-02-28 23:59:59+00');
SELECT line FROM regexp_split_to_table(meisa.mime(102), E'\r\n') AS line;
SELECT position('List-Unsubscribe' IN meisa.mime(102)) AS list_unsubscribe_at;

-- every line is at most 78 characters, encoded-words at most 75
SELECT max(length(line)) <= 78 AS lines_short
  FROM regexp_split_to_table(meisa.mime(102), E'\r\n') AS line;
SELECT bool_and(length(w[1]) <= 75) AS words_short
  FROM regexp_matches(meisa.mime(102), '(=\?UTF-8\?B\?[A-Za-z0-9+/=]*\?=)', 'g') AS w;

-- quoted-printable: long lines are soft-broken at 76, no line starts with '.'
INSERT INTO meisa.messages (id, contact_id, to_email, kind, subject, html, message_id, created_at)
VALUES (103, 2, 'bob@example.com', 'transactional', 'HTML only',
        '<p>' || repeat('abcdefghij', 12) || '</p>' || E'\n.\n..\n' || repeat('é', 40), 'm103@meisa.test',
        '2026-03-01 00:00:00+00');
SELECT line FROM regexp_split_to_table(meisa.mime(103), E'\r\n') AS line;
SELECT max(length(line)) <= 76 AS qp_lines_short
  FROM regexp_split_to_table(split_part(meisa.mime(103), E'\r\n\r\n', 2), E'\r\n') AS line;
SELECT count(*) AS lines_starting_with_dot
  FROM regexp_split_to_table(meisa.mime(103), E'\r\n') AS line WHERE line LIKE '.%';

-- no text and no HTML: an empty text/plain body
INSERT INTO meisa.messages (id, to_email, kind, subject, message_id, created_at)
VALUES (104, 'nobody@example.com', 'transactional', '', 'm104@meisa.test', '2026-03-01 00:00:00+00');
SELECT line FROM regexp_split_to_table(meisa.mime(104), E'\r\n') AS line;

-- header injection: CR or LF in any header value is rejected when queued
INSERT INTO meisa.messages (to_email, kind, subject, message_id)
VALUES ('ada@example.com', 'transactional', E'Hi\r\nBcc: evil@example.com', 'x1@meisa.test');
INSERT INTO meisa.messages (to_email, kind, subject, message_id)
VALUES (E'ada@example.com\nBcc: evil@example.com', 'transactional', 'Hi', 'x2@meisa.test');
INSERT INTO meisa.messages (to_email, kind, subject, from_address, message_id)
VALUES ('ada@example.com', 'transactional', 'Hi', E'a@b.c\rX: y', 'x3@meisa.test');
INSERT INTO meisa.messages (to_email, kind, subject, reply_to, message_id)
VALUES ('ada@example.com', 'transactional', 'Hi', E'a@b.c\n', 'x4@meisa.test');
INSERT INTO meisa.messages (to_email, kind, subject, message_id)
VALUES ('ada@example.com', 'transactional', 'Hi', E'x5@meisa.test\r\nX: y');
UPDATE meisa.messages SET subject = E'changed\nX-Evil: 1' WHERE id = 101;
SELECT count(*) AS messages FROM meisa.messages;

-- unusable values are named
SELECT meisa.mime(999);
INSERT INTO meisa.messages (id, to_email, kind, subject, message_id) VALUES (105, 'not-an-address', 'transactional', 'x', 'm105@meisa.test');
SELECT meisa.mime(105);
INSERT INTO meisa.messages (id, to_email, from_address, kind, subject, message_id) VALUES (106, 'a@example.com', 'Broken <x@y', 'transactional', 'x', 'm106@meisa.test');
SELECT meisa.mime(106);
INSERT INTO meisa.messages (id, to_email, kind, subject, message_id) VALUES (107, 'a@example.com', 'transactional', 'x', 'has space@meisa.test');
SELECT meisa.mime(107);
-- no sender anywhere
RESET meisa.from_address;
SELECT meisa.mime(104);
SET meisa.from_address = 'hello@acme.test';
SELECT split_part(meisa.mime(104), E'\r\n', 2) AS from_line;
-- a marketing message cannot be assembled without meisa.secret_file
RESET meisa.secret_file;
SELECT meisa.mime(101);
-- a bad setting is refused
SET meisa.from_address = 'no address here';
SET meisa.from_address = E'a@b.c\nBcc: x@y.z';
SET meisa.unsubscribe_base_url = 'https://example.com/u/ x';

-- bodies round-trip exactly: no line break is added (a final soft line break
-- "=" ends content without one), none is doubled (content ending in one)
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_63';
SET meisa.secret_file = 'meisa_regress_key_63';
SET meisa.unsubscribe_base_url = 'https://example.com/unsub/';
SET meisa.from_address = 'Acme Team <hello@acme.test>';
INSERT INTO meisa.contacts (id, email) VALUES (1, 'ada@example.com');
INSERT INTO meisa.messages (id, to_email, kind, subject, text, html, message_id, created_at)
VALUES (304, 'ada@example.com', 'transactional', 'Bodies', E'no newline', E'<p>newline</p>\n',
        'a304@meisa.test', '2026-01-05 10:20:30+00'),
       (305, 'ada@example.com', 'transactional', 'Bodies', E'two\n\n', NULL,
        'a305@meisa.test', '2026-01-05 10:20:30+00'),
       (306, 'ada@example.com', 'transactional', 'Bodies', '', NULL,
        'a306@meisa.test', '2026-01-05 10:20:30+00');
SELECT replace(substring(meisa.mime(304) FROM E'quoted-printable\r\n\r\n(.*)$'), E'\r\n', '|') AS body304;
SELECT replace(substring(meisa.mime(305) FROM E'quoted-printable\r\n\r\n(.*)$'), E'\r\n', '|') AS body305;
SELECT replace(substring(meisa.mime(306) FROM E'quoted-printable\r\n\r\n(.*)$'), E'\r\n', '|') AS body306;
-- quoted-printable lines stay within 76 with the final soft break
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id, created_at)
VALUES (307, 'ada@example.com', 'transactional', 'Long', repeat('y', 75), 'a307@meisa.test', '2026-01-05 10:20:30+00');
SELECT replace(substring(meisa.mime(307) FROM E'quoted-printable\r\n\r\n(.*)$'), E'\r\n', '|') AS body307;

-- a Message-ID with unbalanced or inner angle brackets would make a broken
-- header ("Message-ID: <abc@x"): invalid, like one with a space
INSERT INTO meisa.messages (id, to_email, kind, subject, text, message_id, status)
VALUES (310, 'ada@example.com', 'transactional', 'M', 'x', '<open@meisa.test', 'cancelled'),
       (311, 'ada@example.com', 'transactional', 'M', 'x', 'close@meisa.test>', 'cancelled'),
       (312, 'ada@example.com', 'transactional', 'M', 'x', '<a<b@meisa.test>', 'cancelled'),
       (313, 'ada@example.com', 'transactional', 'M', 'x', '<>', 'cancelled'),
       (314, 'ada@example.com', 'transactional', 'M', 'x', '<ok@meisa.test>', 'cancelled'),
       (315, 'ada@example.com', 'transactional', 'M', 'x', 'ok@meisa.test', 'cancelled');
\set VERBOSITY terse
SELECT meisa.mime(310);
SELECT meisa.mime(311);
SELECT meisa.mime(312);
SELECT meisa.mime(313);
\set VERBOSITY default
SELECT substring(meisa.mime(314) FROM E'Message-ID: [^\r]*') AS m314,
       substring(meisa.mime(315) FROM E'Message-ID: [^\r]*') AS m315;
