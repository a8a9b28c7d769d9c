-- Audit of delivery (issue 5): MIME details found in review.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
COPY (SELECT 'test-secret-0123456789abcdef') TO PROGRAM 'umask 077 && cat > meisa_regress_key_63';
SET meisa.secret_file = 'meisa_regress_key_63';
SET meisa.unsubscribe_base_url = 'https://example.com/unsub/';
SET meisa.from_address = 'Acme Team <hello@acme.test>';
INSERT INTO meisa.contacts (id, email) VALUES (1, 'ada@example.com');

-- header lines: an ASCII subject with a word too long to fold within 78
-- characters becomes encoded-words (it was one 107-character line); the
-- List-Unsubscribe URL stays on one line (it cannot be folded, and a value
-- starting on a continuation line parses with a leading blank)
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

-- bodies round-trip exactly: no line break is added (a final soft line break
-- "=" ends content without one), none is doubled (content ending in one)
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
