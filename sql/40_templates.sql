-- meisa.templates: validation on write (key, kind, body, headers, Mustache
-- syntax) and updated_at maintenance.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;
\set VERBOSITY default

-- a valid template of each kind
INSERT INTO meisa.templates (key, kind, subject, html, text, "from", reply_to)
VALUES ('welcome', 'marketing', 'Welcome {{first_name}}', '<p>Hi {{first_name}}</p>', 'Hi {{first_name}}',
        'Team <team@example.com>', 'help@example.com'),
       ('password_reset', 'transactional', 'Reset your password', NULL, 'Reset: {{{data.url}}}', NULL, NULL);
SELECT key, kind, html IS NOT NULL AS has_html, text IS NOT NULL AS has_text FROM meisa.templates ORDER BY key;

-- html only and text only are both fine
INSERT INTO meisa.templates (key, kind, subject, html) VALUES ('html_only', 'marketing', 'S', '<b>x</b>');
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('text_only', 'marketing', 'S', 'x');

-- neither html nor text (null or blank): rejected
INSERT INTO meisa.templates (key, kind, subject) VALUES ('nobody', 'marketing', 'S');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES ('blank', 'marketing', 'S', '  ', E'\n');
\echo :LAST_ERROR_SQLSTATE

-- key: empty, bad characters, too long
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('', 'marketing', 'S', 'x');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('bad key', 'marketing', 'S', 'x');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text) VALUES (repeat('k', 101), 'marketing', 'S', 'x');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text) VALUES (repeat('k', 100), 'marketing', 'S', 'x');

-- kind
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('k1', 'newsletter', 'S', 'x');
\echo :LAST_ERROR_SQLSTATE

-- header values: line breaks in subject, from, reply_to; from/reply_to must be addresses
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('k2', 'marketing', E'Hi\r\nBcc: x@y.io', 'x');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text, "from") VALUES ('k3', 'marketing', 'S', 'x', E'a@b.io\nBcc: c@d.io');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text, reply_to) VALUES ('k4', 'marketing', 'S', 'x', E'a@b.io\r');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text, "from") VALUES ('k5', 'marketing', 'S', 'x', 'nobody');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text, reply_to) VALUES ('k6', 'marketing', 'S', 'x', 'nobody');
\echo :LAST_ERROR_SQLSTATE

-- Mustache syntax of subject, html and text is checked (the error names the part)
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('k7', 'marketing', '{{#a}}open', 'x');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, html) VALUES ('k8', 'marketing', 'S', E'<p>\n{{#items}}\n<li>{{name}}</li>\n');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('k9', 'marketing', 'S', E'line one\n{{/closed}}');
\echo :LAST_ERROR_SQLSTATE

-- nothing of the rejected rows was written
SELECT count(*) AS templates FROM meisa.templates;

-- updates are checked too, and keep updated_at current
UPDATE meisa.templates SET html = '{{#x}}' WHERE key = 'welcome';
\echo :LAST_ERROR_SQLSTATE
UPDATE meisa.templates SET kind = 'other' WHERE key = 'welcome';
\echo :LAST_ERROR_SQLSTATE
UPDATE meisa.templates SET html = NULL, text = NULL WHERE key = 'welcome';
\echo :LAST_ERROR_SQLSTATE
UPDATE meisa.templates SET updated_at = '2000-01-01', created_at = '2000-01-01' WHERE key = 'welcome';
SELECT updated_at > '2000-01-02' AS updated_at_refreshed FROM meisa.templates WHERE key = 'welcome';
BEGIN;
UPDATE meisa.templates SET subject = 'Welcome!' WHERE key = 'welcome';
SELECT updated_at = now() AS updated_at_is_now FROM meisa.templates WHERE key = 'welcome';
COMMIT;

-- a template used by a sequence step cannot be deleted; renaming its key follows
INSERT INTO meisa.sequences (name) VALUES ('onboarding');
INSERT INTO meisa.sequence_steps (sequence_id, position, template)
SELECT id, 1, 'welcome' FROM meisa.sequences WHERE name = 'onboarding';
DELETE FROM meisa.templates WHERE key = 'welcome';
\echo :LAST_ERROR_SQLSTATE
UPDATE meisa.templates SET key = 'welcome_v2' WHERE key = 'welcome';
SELECT template FROM meisa.sequence_steps;
