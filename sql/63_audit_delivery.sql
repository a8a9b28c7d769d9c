-- Audit of delivery (issue 5): MIME details found in review.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
SET meisa.secret = 'test-secret-0123456789abcdef';
SET meisa.unsubscribe_base_url = 'https://example.com/unsub/';
SET meisa.from_address = 'Acme Team <hello@acme.test>';
INSERT INTO meisa.contacts (id, email) VALUES (1, 'ada@example.com');

-- every header line within 78 characters: a marketing message's
-- List-Unsubscribe is folded before the URL (it was 90 characters long), an
-- ASCII subject with a word too long to fold becomes encoded-words
INSERT INTO meisa.messages (id, contact_id, to_email, kind, subject, text, message_id, created_at)
VALUES (301, 1, 'ada@example.com', 'marketing', 'Reset: ' || repeat('A', 100), 'x',
        'a301@meisa.test', '2026-01-05 10:20:30+00');
SELECT line FROM regexp_split_to_table(meisa.mime(301), E'\r\n') AS line;
SELECT max(length(line)) AS longest FROM regexp_split_to_table(meisa.mime(301), E'\r\n') AS line;
-- the folded List-Unsubscribe still names the contact
SELECT meisa.unsubscribe_token_contact(substring(meisa.mime(301)
       FROM E'List-Unsubscribe:\r\n <https://example.com/unsub/([A-Za-z0-9_-]+)>')) AS contact;
-- a short URL stays on one line
SET meisa.unsubscribe_base_url = 'https://a.io/';
SELECT line FROM regexp_split_to_table(meisa.mime(301), E'\r\n') AS line WHERE line LIKE 'List-Unsubscribe:%';
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
