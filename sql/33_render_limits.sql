-- Rendering limits: nesting (meisa.max_render_depth), output size
-- (meisa.max_render_size) and work (meisa.max_render_steps) end in ERROR
-- 54000, never a crash or runaway memory.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

CREATE OR REPLACE FUNCTION render_error(t text, d jsonb DEFAULT '{}', p jsonb DEFAULT '{}') RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa.render(t, d, p);
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

SHOW meisa.max_render_depth;
SHOW meisa.max_render_size;
SHOW meisa.max_render_steps;

-- a partial that includes itself
SELECT meisa.render('{{>p}}', '{}', '{"p": "again {{>p}}"}');
-- ... or two partials that include each other, inside a list
SELECT render_error('{{#l}}{{>a}}{{/l}}', '{"l": [1]}', '{"a": "{{>b}}", "b": "{{#l}}{{>a}}{{/l}}"}');
-- a self-including partial that doubles at every level: the work bound stops it
-- (data 30 deep keeps the nesting under 64, but the work is 2^30 visits)
SET meisa.max_render_steps = 100000;
SELECT meisa.render('{{>p}}', (repeat('{"n":', 30) || 'false' || repeat('}', 30))::jsonb,
       '{"p": "{{#n}}{{>p}}{{>p}}{{/n}}"}');
-- the same with data 10 deep (9 truthy levels) is fine: 2^9 - 1 = 511 "x"
SELECT length(meisa.render('{{>p}}', (repeat('{"n":', 10) || 'false' || repeat('}', 10))::jsonb,
       '{"p": "{{#n}}{{>p}}{{>p}}x{{/n}}"}')) AS x_count;
RESET meisa.max_render_steps;
-- lists multiplied by nesting also count
SET meisa.max_render_steps = 1000;
SELECT render_error('{{#l}}{{#l}}{{#l}}x{{/l}}{{/l}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 20) i)));
RESET meisa.max_render_steps;

-- nesting depth: sections in the text are checked when compiling ...
SET meisa.max_render_depth = 3;
SELECT meisa.validate_template('{{#a}}{{#b}}{{#c}}{{/c}}{{/b}}{{/a}}', 'html') AS three_levels_ok;
SELECT meisa.validate_template(E'{{#a}}{{#b}}\n{{#c}}{{#d}}{{/d}}{{/c}}{{/b}}{{/a}}', 'html');
-- ... and sections plus partials when rendering
SELECT meisa.render('{{#a}}{{>p}}{{/a}}', '{"a": {"b": {"c": 1}}}', '{"p": "{{#b}}{{c}}{{/b}}"}');
SELECT meisa.render('{{#a}}{{>p}}{{/a}}', '{"a": {"b": {"c": 1}}}', '{"p": "{{#b}}{{#c}}{{.}}{{/c}}{{/b}}"}');
RESET meisa.max_render_depth;
-- a template nested 100000 deep is rejected without exhausting the stack
SELECT render_error(repeat('{{#a}}', 100000) || repeat('{{/a}}', 100000));
SET meisa.max_render_depth = 1000;
SELECT render_error(repeat('{{#a}}', 100000) || repeat('{{/a}}', 100000));
SELECT length(meisa.render(repeat('{{#a}}', 999) || 'x' || repeat('{{/a}}', 999), '{"a": true}')) AS deep_but_allowed;
RESET meisa.max_render_depth;

-- output size
SET meisa.max_render_size = '1kB';
SELECT length(meisa.render('{{x}}', jsonb_build_object('x', repeat('a', 1024)))) AS exactly_the_limit;
SELECT meisa.render('{{x}}!', jsonb_build_object('x', repeat('a', 1024)));
-- escaping counts the entities
SELECT render_error('{{x}}', jsonb_build_object('x', repeat('<', 300)));
SELECT render_error('{{#l}}0123456789{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 200) i)));
RESET meisa.max_render_size;
-- the default bound stops a template that explodes a small input
SELECT render_error('{{#l}}{{#l}}{{#l}}{{#l}}{{x}}{{/l}}{{/l}}{{/l}}{{/l}}',
       jsonb_build_object('x', repeat('y', 100), 'l', (SELECT jsonb_agg(i) FROM generate_series(1, 30) i)));

-- bounds of the settings
SET meisa.max_render_depth = 0;
SET meisa.max_render_steps = 10;
SET meisa.max_render_size = '2GB';

DROP FUNCTION render_error(text, jsonb, jsonb);

-- meisa.max_render_steps counts every element a section iterates over,
-- also when the section's body is empty: nested empty loops over a large
-- list end at the limit (three levels of 1000 would be 1e9 iterations)
SET meisa.max_render_steps = 1000;
SELECT meisa.render('{{#l}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 2000) i)));
SELECT meisa.render('{{#l}}{{#l}}{{/l}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 40) i)));
SELECT meisa.render('{{^l}}{{/l}}{{#l}}{{/l}}x', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 900) i)));
RESET meisa.max_render_steps;
SELECT meisa.render('{{#l}}{{#l}}{{#l}}{{/l}}{{/l}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg(i) FROM generate_series(1, 1000) i)));
-- lists still render as before
SELECT meisa.render('{{#l}}{{.}},{{/l}}', '{"l": [1, 2, 3]}');
