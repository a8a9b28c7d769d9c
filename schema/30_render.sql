
-- ---------------------------------------------------------------------------
-- Template engine (Mustache), see docs/templates_engine.md.

-- API: Private (admin set).  Renders a Mustache template over 'data';
-- 'partials' is an object of template texts by name.  NULL template: NULL;
-- NULL data: an empty context; NULL partials: none.
CREATE FUNCTION meisa.render(template text, data jsonb, partials jsonb DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'meisa_render'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION meisa.render(text, jsonb, jsonb) IS
  'renders a Mustache template over jsonb data with partials {name: template}';

-- API: Private (admin set).  meisa.render for plain text (subject lines,
-- text/plain parts): {{name}} is not HTML-escaped.
CREATE FUNCTION meisa.render_text(template text, data jsonb, partials jsonb DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'meisa_render_text'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION meisa.render_text(text, jsonb, jsonb) IS
  'renders a Mustache template for plain text: like meisa.render without HTML escaping';

-- API: Private (admin set, and table checks).  True when 'template' is a valid
-- Mustache template; otherwise ERROR 22023 naming 'field' and the line.
CREATE FUNCTION meisa.validate_template(template text, field text DEFAULT 'template')
RETURNS boolean
AS 'MODULE_PATHNAME', 'meisa_validate_template'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION meisa.validate_template(text, text) IS
  'true when the text is a valid Mustache template, otherwise an error naming the field and line';

GRANT EXECUTE ON FUNCTION meisa.render(text, jsonb, jsonb) TO meisa_admin;
GRANT EXECUTE ON FUNCTION meisa.render_text(text, jsonb, jsonb) TO meisa_admin;
GRANT EXECUTE ON FUNCTION meisa.validate_template(text, text) TO meisa_admin;
