-- The Mustache specification (test/data/mustache-spec, MIT licensed): every
-- test of every module is fed through meisa.render(template, data, partials)
-- and compared with its expected output.  Per file: the number of tests, how
-- many pass, and the names of the failing ones (with the error, if any).
-- The files are read by psql relative to the directory the suite runs in
-- (the source tree for make installcheck).
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

CREATE TABLE spec (file text, tests jsonb);
-- NULL when the test passes, else its name and what went wrong.
CREATE FUNCTION spec_failure(t jsonb) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
  got text;
BEGIN
  got := meisa.render(t->>'template', t->'data', coalesce(t->'partials', '{}'));
  IF got IS DISTINCT FROM t->>'expected' THEN
    RETURN (t->>'name') || ' (got ' || coalesce(to_json(got)::text, 'NULL') || ')';
  END IF;
  RETURN NULL;
EXCEPTION WHEN OTHERS THEN
  RETURN (t->>'name') || ' (error: ' || SQLERRM || ')';
END
$$;

-- the spec files are read from the source tree (PG_ABS_SRCDIR: out-of-tree builds too)
\getenv abs_srcdir PG_ABS_SRCDIR
\set spec `cat :abs_srcdir/test/data/mustache-spec/comments.json`
INSERT INTO spec VALUES ('comments', (:'spec')::jsonb->'tests');
\set spec `cat :abs_srcdir/test/data/mustache-spec/delimiters.json`
INSERT INTO spec VALUES ('delimiters', (:'spec')::jsonb->'tests');
\set spec `cat :abs_srcdir/test/data/mustache-spec/interpolation.json`
INSERT INTO spec VALUES ('interpolation', (:'spec')::jsonb->'tests');
\set spec `cat :abs_srcdir/test/data/mustache-spec/inverted.json`
INSERT INTO spec VALUES ('inverted', (:'spec')::jsonb->'tests');
\set spec `cat :abs_srcdir/test/data/mustache-spec/partials.json`
INSERT INTO spec VALUES ('partials', (:'spec')::jsonb->'tests');
\set spec `cat :abs_srcdir/test/data/mustache-spec/sections.json`
INSERT INTO spec VALUES ('sections', (:'spec')::jsonb->'tests');

SELECT s.file,
       count(*) AS tests,
       count(*) FILTER (WHERE spec_failure(t) IS NULL) AS passed,
       coalesce(string_agg(spec_failure(t), E'\n'), '') AS failing
  FROM spec s, jsonb_array_elements(s.tests) t
 GROUP BY s.file ORDER BY s.file;

-- every test of every module ran
SELECT count(*) AS all_tests,
       count(*) FILTER (WHERE spec_failure(t) IS NULL) AS all_passed
  FROM spec s, jsonb_array_elements(s.tests) t;

DROP TABLE spec;
DROP FUNCTION spec_failure(jsonb);
