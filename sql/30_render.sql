-- meisa.render: the Mustache engine feature by feature (see
-- docs/templates.md); syntax errors are in 32_render_errors, limits in
-- 33_render_limits, the specification's own tests in 31_mustache_spec.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
DO $$ BEGIN PERFORM meisa.grant('meisa_app', 'app'); PERFORM meisa.grant('meisa_admin', 'admin'); PERFORM meisa.grant('meisa_reader', 'reader'); END $$;
RESET client_min_messages;

-- interpolation: escaped, raw (triple and ampersand), padding
SELECT meisa.render('Hi {{name}}!', '{"name": "Ada"}');
SELECT meisa.render('{{x}}|{{{x}}}|{{& x}}|{{ x }}|{{{ x }}}', $${"x": "<b>\"Tom\" & 'Jerry'</b>"}$$);
-- missing and null render empty
SELECT meisa.render('[{{missing}}][{{n}}][{{{n}}}]', '{"n": null}');
-- numbers: no trailing zeros, integers without a decimal point
SELECT meisa.render('{{a}} {{b}} {{c}} {{d}} {{e}} {{f}} {{g}}',
       '{"a": 1.210, "b": 85, "c": 1.0, "d": -0.50, "e": 1e3, "f": 12345678901234567890, "g": 0.000}');
-- booleans; objects and arrays render as JSON (escaped unless raw)
SELECT meisa.render('{{t}} {{f}} {{o}} {{{o}}} {{l}}', '{"t": true, "f": false, "o": {"k": "v"}, "l": [1, "a"]}');

-- dotted names, list indexes, context precedence
SELECT meisa.render('{{contact.name.first}} {{custom_fields.plan}}',
       '{"contact": {"name": {"first": "Ada"}}, "custom_fields": {"plan": "pro"}}');
SELECT meisa.render('{{items.0.name}},{{items.1}},{{items.7}},{{items.x}},{{name.0}}',
       '{"items": [{"name": "first"}, "second"], "name": "s"}');
SELECT meisa.render('{{#a}}[{{b.c}}]{{/a}}', '{"a": {"b": {}}, "b": {"c": "ERROR"}}');
SELECT meisa.render('{{a.b}}', '{"a.b": "single key is never used"}');
-- parent contexts are visible inside sections
SELECT meisa.render('{{#items}}{{name}} of {{shop}}; {{/items}}',
       '{"shop": "Acme", "items": [{"name": "a"}, {"name": "b", "shop": "Other"}]}');

-- sections over lists, objects, scalars; the implicit iterator
SELECT meisa.render('{{#tags}}<{{.}}>{{/tags}}', '{"tags": ["vip", "beta", "<x>"]}');
SELECT meisa.render('{{#list}}({{#.}}{{.}}{{/.}}){{/list}}', '{"list": [[1, 2], ["a"], []]}');
SELECT meisa.render('{{#user}}{{first}} {{last}}{{/user}}', '{"user": {"first": "Ada", "last": "Lovelace"}}');
SELECT meisa.render('{{#n}}n={{.}}{{/n}}', '{"n": 5}');
SELECT meisa.render('{{#.}}[{{v}}]{{/.}}', '[{"v": 1}, {"v": 2}]');
SELECT meisa.render('root: {{.}}', '"<scalar>"');
SELECT meisa.render('root: {{.}}', '42');
-- truthiness: false, null, missing, "", 0 and [] are false; {} and the rest true
SELECT v AS value,
       meisa.render('{{#v}}yes{{/v}}{{^v}}no{{/v}}', jsonb_build_object('v', v)) AS section
  FROM (VALUES ('false'::jsonb), ('null'), ('""'), ('0'), ('0.0'), ('[]'),
               ('true'), ('" "'), ('1'), ('-0.5'), ('"0"'), ('{}'), ('[0]'), ('[false]')) AS t(v);
SELECT meisa.render('{{#missing}}yes{{/missing}}{{^missing}}no{{/missing}}', '{}');
-- nested sections and lists of lists
SELECT meisa.render('{{#orders}}#{{id}}:{{#lines}} {{qty}}x{{sku}}{{/lines}}{{^lines}} empty{{/lines}}|{{/orders}}',
       '{"orders": [{"id": 1, "lines": [{"qty": 2, "sku": "A"}, {"qty": 1, "sku": "B"}]}, {"id": 2, "lines": []}]}');

-- comments (a comment ends at the first closing delimiter) and set delimiters
SELECT meisa.render('a{{! a comment {{with}} braces }}b{{!
multi-line
}}c', '{}');
SELECT meisa.render('{{=<% %>=}}<% x %> {{x}} <%{x}%> <%& x%><%={{ }}=%> {{x}}', '{"x": "<1>"}');
SELECT meisa.render('{{=« »=}}«x» «#l»[«.»]«/l»', '{"x": "é", "l": ["ü", "ß"]}');

-- standalone lines disappear, CRLF included; inline tags keep their line
SELECT meisa.render(E'<ul>\n  {{#items}}\n  <li>{{.}}</li>\n  {{/items}}\n</ul>\n', '{"items": ["a", "b"]}');
SELECT meisa.render(E'a\r\n  {{#t}}  \r\nb\r\n{{/t}}\r\nc', '{"t": true}');
SELECT meisa.render(E'  {{#t}}x{{/t}}  \n', '{"t": true}');
SELECT meisa.render(E'x\n  {{! comment }}\n  {{=| |=}}\n|y|\n', '{"y": 1}');

-- partials: by name, context, indentation of standalone partials, unknown ones
SELECT meisa.render('<p>{{> greeting}}</p>', '{"name": "Ada"}', '{"greeting": "Hi {{name}}"}');
SELECT meisa.render('[{{>nope}}]', '{}', '{"other": "x"}');
SELECT meisa.render('[{{>nope}}]', '{}');
SELECT meisa.render(E'<div>\n  {{> box}}\n</div>\n', '{"v": "a\nb"}', $${"box": "<p>\n{{v}}\n</p>\n"}$$);
SELECT meisa.render('{{#items}}{{> item}}{{/items}}', '{"items": [{"n": 1}, {"n": 2}]}',
       '{"item": "<{{n}}>"}');
-- a recursive partial that ends with the data
SELECT meisa.render('{{>node}}',
       '{"name": "root", "kids": [{"name": "a", "kids": [{"name": "a1", "kids": []}]}, {"name": "b", "kids": []}]}',
       '{"node": "{{name}}({{#kids}}{{>node}}{{/kids}})"}');
-- partials use default delimiters and do not change the caller's
SELECT meisa.render('{{=<% %>=}}<%>p%> <%x%>', '{"x": 1}', '{"p": "{{x}}{{=| |=}}|x|"}');

-- NULL and odd input
SELECT meisa.render(NULL, '{}') IS NULL AS null_template;
SELECT meisa.render('static {{x}} {{#x}}never{{/x}}{{^x}}inverted{{/x}}', NULL);
SELECT meisa.render('{{>p}}|{{x}}', '{"x": 1}', NULL);
SELECT meisa.render('', '{}') = '' AS empty_template;
-- a lone opening delimiter is an unclosed tag; single braces are text
SELECT meisa.render('no tags at all, { } {{', '{}');
SELECT meisa.render('{ {x} }', '{"x": 1}');
SELECT meisa.render('{{x}}', '{"x": "line1\nline2\u0001"}') = E'line1\nline2\u0001' AS control_chars_kept;

-- unicode: names, values, escaping next to multibyte characters
SELECT meisa.render('{{prénom}} — {{ville}} 🚀 {{e}}', '{"prénom": "Zoë", "ville": "Zürich", "e": "<日本>&"}');
SELECT length(meisa.render('{{#l}}{{.}}{{/l}}', jsonb_build_object('l', (SELECT jsonb_agg('語'::text) FROM generate_series(1, 1000))))) AS chars;

-- many distinct templates in one statement: the compiled-template cache
-- evicts safely and every result stays right
SELECT count(*) AS wrong
  FROM generate_series(1, 300) i
 WHERE meisa.render('{{x}}-' || i || '{{#l}}{{.}}{{/l}}', '{"x": "a", "l": [1, 2]}') <> 'a-' || i || '12';
SELECT count(*) AS wrong
  FROM generate_series(1, 300) i
 WHERE meisa.render('{{>p}}', jsonb_build_object('i', i), jsonb_build_object('p', '{{i}}/' || i)) <> i || '/' || i;
-- the cache keeps at most 64 compiled templates per backend
SELECT count(*) AS cached, sum(total_bytes) < 32 * 1024 * 1024 AS under_32mb
  FROM pg_backend_memory_contexts WHERE parent = 'meisa template cache';

-- a realistic email
SELECT meisa.render($t$<h1>Welcome, {{#first_name}}{{first_name}}{{/first_name}}{{^first_name}}there{{/first_name}}!</h1>
{{#custom_fields.trial_days}}
<p>Your trial ends in {{custom_fields.trial_days}} days.</p>
{{/custom_fields.trial_days}}
<ul>
{{#data.items}}
  <li>{{name}}: {{price}} €</li>
{{/data.items}}
</ul>
<a href="{{{unsubscribe_url}}}">Unsubscribe</a>
$t$, $${"first_name": "Ada", "custom_fields": {"trial_days": 14},
        "data": {"items": [{"name": "Pro <annual>", "price": 99.90}, {"name": "Seat", "price": 5}]},
        "unsubscribe_url": "https://x.io/u?t=a&b=c"}$$);

-- render_text: the same engine for plain text (subject, text/plain): no HTML escaping
SELECT meisa.render_text('Order {{n}} for {{who}} {{{who}}} {{#l}}[{{.}}]{{/l}}{{>p}}',
       $${"n": 1.50, "who": "Tom & \"Jerry\" <t@x.io>", "l": ["<a>"]}$$, '{"p": " {{who}}"}');
SELECT meisa.render_text(NULL, '{}') IS NULL AS null_template;
SELECT meisa.render_text('{{#a}}', '{}');

-- validate_template: true for valid text, NULL for NULL
SELECT meisa.validate_template('Hi {{name}} {{#a}}{{/a}}', 'html') AS valid,
       meisa.validate_template(NULL) IS NULL AS null_is_null;

-- privileges: the admin set renders, nobody else does
SELECT r AS role,
       has_function_privilege(r, 'meisa.render(text,jsonb,jsonb)', 'EXECUTE') AS render,
       has_function_privilege(r, 'meisa.render_text(text,jsonb,jsonb)', 'EXECUTE') AS render_text,
       has_function_privilege(r, 'meisa.validate_template(text,text)', 'EXECUTE') AS validate
  FROM unnest(ARRAY['meisa_admin', 'meisa_app', 'meisa_reader', 'public']) r;
-- properties of the functions
SELECT p.proname, p.provolatile, p.proisstrict, p.proparallel
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'meisa' AND p.proname IN ('render', 'render_text', 'validate_template') ORDER BY 1;
