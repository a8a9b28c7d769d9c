-- "contains" on strings: a linear search (time in proportion to the string
-- plus the needle, whatever their content) that a cancel or statement_timeout
-- interrupts; byte-wise and case-sensitive, as before.
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
RESET client_min_messages;

CREATE FUNCTION pg_temp.has(s text, needle text) RETURNS boolean LANGUAGE sql AS
  $$ SELECT meisa.condition_test(jsonb_build_object('field', 'custom_fields.s', 'contains', needle),
                                 jsonb_build_object('custom_fields', jsonb_build_object('s', s))) $$;

-- edge cases: empty needle, needle longer than the string, the whole string,
-- at the start and the end, partial matches that overlap, case, multibyte
SELECT s, needle, pg_temp.has(s, needle) AS contains, strpos(s, needle) > 0 AS strpos
  FROM (VALUES ('', ''), ('abc', ''), ('', 'a'), ('ab', 'abc'), ('abc', 'abc'),
               ('abc', 'ab'), ('abc', 'bc'), ('aaab', 'aab'), ('abababc', 'ababc'),
               ('abacabab', 'abab'), ('aabaabaaab', 'aabaaab'), ('abcabd', 'abd'),
               ('Hello', 'hello'), ('Hello', 'ell'), ('Zoë Müller', 'ë M'), ('Zoë', 'e'),
               ('Zoë', 'ë'), ('日本語のテキスト', '語の'), ('日本語', '本日')) AS t(s, needle);
-- a list means any of
SELECT meisa.condition_test('{"field": "custom_fields.s", "contains": ["xyz", "", "q"]}',
                            '{"custom_fields": {"s": "abc"}}') AS empty_in_list,
       meisa.condition_test('{"field": "custom_fields.s", "contains": ["xyz", "bc", "q"]}',
                            '{"custom_fields": {"s": "abcd"}}') AS second_in_list;

-- every needle of up to 5 letters over {a, b} against every string of up to 8
-- letters: the same answers as strpos()
CREATE TEMP TABLE words AS
WITH RECURSIVE w(s) AS (SELECT '' UNION ALL SELECT w.s || c FROM w, (VALUES ('a'), ('b')) AS l(c)
                        WHERE length(w.s) < 8)
SELECT s FROM w;
SELECT count(*) AS pairs,
       count(*) FILTER (WHERE pg_temp.has(h.s, n.s) <> (strpos(h.s, n.s) > 0 OR n.s = '')) AS wrong
  FROM words h, words n WHERE length(n.s) <= 5;
-- needles longer than the 64-entry table kept on the stack
SELECT pg_temp.has(repeat('ab', 100) || 'c' || repeat('ab', 50), repeat('ab', 49) || 'c' || repeat('ab', 50)) AS long_found,
       pg_temp.has(repeat('ab', 100) || 'c' || repeat('ab', 50), repeat('ab', 49) || 'c' || repeat('ab', 51)) AS long_not_found;

-- the worst case of a search that compares the needle at every position: a
-- 500 kB needle over a 1 MB string of one letter took 7.8 s, past the
-- timeout, and could not be cancelled; now it answers within milliseconds
SET statement_timeout = '1s';
SELECT pg_temp.has(repeat('a', 1000000), repeat('a', 499999) || 'b') AS worst_case,
       pg_temp.has(repeat('a', 1000000) || 'b', repeat('a', 499999) || 'b') AS worst_case_at_end;
RESET statement_timeout;
