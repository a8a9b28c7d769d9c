#!/usr/bin/env bash
# test/mustache/run.sh [--bindir DIR] [--quick]: robustness of the template
# engine on a throwaway server (127.0.0.1:26422, data under /tmp): thousands
# of broken and mutated templates (every prefix of every Mustache spec
# template, random insertions of tags and delimiters) and random data go
# through meisa.render; each must render or fail with 22023/54000, the
# backend must survive, and the template cache must stay bounded.
# Prints "N passed, M failed"; exits non-zero on failure.  Needs meisa
# installed for DIR (default /usr/lib/postgresql/15/bin).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bindir=/usr/lib/postgresql/15/bin
mutations=40
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --quick) mutations=15; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
port=26422
data=/tmp/meisa-test-mustache
work=$(mktemp -d /tmp/meisa-test-mustache-work.XXXXXX)
chown postgres: "$work"
as_pg() { runuser -u postgres -- "$@"; }
cleanup() { as_pg "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$data" "$work"; }
trap cleanup EXIT
rm -rf "$data"
as_pg "$bindir/initdb" -D "$data" -A trust -U postgres >/dev/null || exit 1
as_pg "$bindir/pg_ctl" -D "$data" -l "$work/log" -w \
  -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null || { cat "$work/log"; exit 1; }
psql() { as_pg "$bindir/psql" -h 127.0.0.1 -p $port -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }

passed=0; failed=0
check() {	# check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1";
  else failed=$((failed + 1)); echo "FAIL $1: expected [$2], got [$3]"; fi
}

/usr/bin/python3 - "$top/test/data/mustache-spec" "$mutations" > "$work/cases.json" <<'PY'
import glob, json, random, sys
random.seed(20261122)
pieces = ['{{', '}}', '{', '}', '#', '/', '^', '>', '=', '!', '&', '.', ' ', '\n', '\r\n',
          '{{{', '}}}', '{{=| |=}}', '{{=<% %>=}}', '{{/a}}', '{{#a}}', '{{^a}}', '{{>p}}',
          '{{.}}', '{{a.b}}', '\u00e9', '\U0001F680', '{{!', '|', '<%', '%>']
values = [None, True, False, 0, 1.5, "", "<&\">", [], [1, 2], {}, {"a": {"b": 1}}]
cases = []
for f in sorted(glob.glob(sys.argv[1] + '/*.json')):
    for t in json.load(open(f))['tests']:
        tpl, parts = t['template'], t.get('partials', {})
        for i in range(len(tpl) + 1):
            cases.append([tpl[:i], t['data'], parts])
        for _ in range(int(sys.argv[2])):
            s = list(tpl)
            for _ in range(random.randint(1, 5)):
                s.insert(random.randrange(len(s) + 1), random.choice(pieces))
            p = dict(parts)
            p['p'] = ''.join(random.sample(s, len(s)))
            d = t['data'] if random.random() < 0.5 else {"a": random.choice(values), "l": random.choice(values)}
            cases.append([''.join(s), d, p])
print(json.dumps(cases))
PY
chmod 644 "$work/cases.json"

psql -c "CREATE EXTENSION meisa" >/dev/null
res=$(psql <<SQL
\set c \`cat $work/cases.json\`
CREATE TEMP TABLE cases AS SELECT e FROM jsonb_array_elements((:'c')::jsonb) e;
CREATE FUNCTION pg_temp.try(t jsonb) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM meisa.render(t->>0, t->1, t->2);
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE;
END \$\$;
SELECT count(*) || ' cases, ' ||
       count(*) FILTER (WHERE r NOT IN ('ok', '22023', '54000')) || ' unexpected'
  FROM (SELECT pg_temp.try(e) AS r FROM cases) s;
SQL
)
echo "$res"
check "broken templates render or fail with 22023/54000" "0 unexpected" "${res#*, }"
check "server still up after the broken templates" "1" "$(psql -c 'SELECT 1' 2>&1)"

# a hostile partial in a long-lived backend: every render fails cleanly,
# memory stays bounded
res=$(psql <<'SQL'
CREATE FUNCTION pg_temp.try2(i int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  PERFORM meisa.render('{{>p}}' || i, '{"n": 1}', '{"p": "{{#n}}{{>p}}{{>p}}{{/n}}"}');
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE;
END $$;
SET meisa.max_render_steps = 20000;
SELECT string_agg(DISTINCT pg_temp.try2(i), ',') FROM generate_series(1, 200) i;
SQL
)
check "self-including partials end in 54000" "54000" "$res"
res=$(psql -c "SELECT count(*) FROM generate_series(1, 5000) i WHERE meisa.render(repeat('{{#l}}<{{.}}>{{/l}}', 100) || i, '{\"l\": [1, 2, 3]}') IS NOT NULL" \
           -c "SELECT count(*) <= 64 AND sum(total_bytes) < 32 * 1024 * 1024 FROM pg_backend_memory_contexts WHERE parent = 'meisa template cache'")
check "template cache bounded after 5000 distinct templates" "$(printf '5000\nt')" "$res"
grep -E 'PANIC|terminated by signal|server process .* was terminated' "$work/log" && failed=$((failed + 1))

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
