-- Template syntax errors: ERROR 22023 naming the field (or partial) and the
-- line, from meisa.render, meisa.validate_template and partials.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

-- SQLSTATE and message of a render, or 'ok'
CREATE OR REPLACE FUNCTION render_error(t text, d jsonb DEFAULT '{}', p jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa.render(t, d, p);
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

-- unclosed section, naming the line it was opened on
SELECT meisa.validate_template(E'<p>\n<ul>\n{{#items}}\n<li>{{name}}</li>\n</ul>', 'html');
SELECT meisa.render(E'a\n{{#outer}}\n{{#inner}}\n{{/inner}}', '{}');
-- closing tags that do not match or close nothing
SELECT meisa.validate_template(E'{{#a}}\n{{#b}}\n{{/a}}\n{{/b}}', 'text');
SELECT meisa.validate_template(E'x\n\n{{/a}}', 'subject');
-- unclosed tags: variable, raw, set delimiter, custom delimiters
SELECT meisa.validate_template(E'line 1\nHi {{name', 'html');
SELECT meisa.validate_template('{{{name}}', 'html');
SELECT meisa.validate_template('{{=<% %>}}', 'html');
SELECT meisa.validate_template(E'{{=<% %>=}}\n<% x }}', 'html');
-- bad delimiters
SELECT meisa.validate_template('{{=<%%>=}}', 'html');
SELECT meisa.validate_template('{{= a b c =}}', 'html');
SELECT meisa.validate_template('{{=<= =>=}}', 'html');
SELECT meisa.validate_template('{{==}}', 'html');
-- bad names
SELECT meisa.validate_template('{{}}', 'html');
SELECT meisa.validate_template('{{#}}{{/}}', 'html');
SELECT meisa.validate_template('{{first name}}', 'html');
SELECT meisa.validate_template('{{a..b}}', 'html');
SELECT meisa.validate_template('{{.a}}', 'html');
SELECT meisa.validate_template('{{> }}', 'html');
-- default field name
SELECT meisa.validate_template('{{#a}}');
-- the same errors through render, with their SQLSTATE
SELECT t, render_error(t)
  FROM unnest(ARRAY['{{#a}}', '{{/a}}', '{{#a}}{{/b}}', '{{a', '{{{a}}', '{{=x=}}', '{{a b}}', 'fine {{a}}']) t;
-- a syntax error in a partial names the partial (only when it is used)
SELECT meisa.render('[{{>p}}]', '{}', '{"p": "x\n{{#open"}');
SELECT meisa.render('[{{>q}}]', '{}', '{"p": "{{#open}}"}');
-- partials must be an object of strings
SELECT meisa.render('x', '{}', '[]');
SELECT meisa.render('x', '{}', '{"p": 1}');
SELECT render_error('x', '{}', '"p"');
-- an error leaves nothing behind: the next render works
SELECT meisa.render('{{#a}}{{.}}{{/a}}', '{"a": [1, 2]}');

DROP FUNCTION render_error(text, jsonb, jsonb);
