#!/usr/bin/env bash
# test/docs/run.sh [--bindir DIR] [--quick]: every object of the installed
# extension is documented in docs/.  Starts a throwaway cluster
# (127.0.0.1:26490, data under /tmp, meisa preloaded so its settings are
# registered), installs meisa, and reads its objects from the catalogs:
# functions (pg_proc members of the extension), settings (pg_settings
# meisa.*), tables and views (pg_class in schema meisa) and the columns of
# each view (pg_attribute).  Each must be named in docs/*.md: a function or
# relation of schema meisa as "meisa.<name>" (application functions in the
# install schema by their name), a setting by its full name, a view's column
# by its name in the same docs file as the view.  One check per object.
# Then test/docs/links.py: every relative link and #anchor of README.md and
# docs/*.md resolves and every file of the tree they name exists (one check
# per link and per named file).  Last, the README's "Getting started" runs
# as written (its SQL blocks, the delivery worker preloaded, an aiosmtpd sink
# on 127.0.0.1:26491): both messages are sent and arrive.
# Prints what fails and "N passed, M failed".
# Run as root.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bindir=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --quick) shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
port=26490
smtp_port=26491
work=$(mktemp -d /tmp/meisa-test-docs.XXXXXX)
chmod 755 "$work"; chown postgres: "$work"
as_pg() { runuser -u postgres -- "$@"; }
smtp_pid=
trap '[ -n "$smtp_pid" ] && kill "$smtp_pid" 2>/dev/null; as_pg "$bindir/pg_ctl" -D "$work/data" -m immediate stop >/dev/null 2>&1; rm -rf "$work"' EXIT
as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null || { echo "FAIL initdb"; echo "0 passed, 1 failed"; exit 1; }
# the README's getting started needs a mail sink and the settings it names
as_pg sh -c "umask 077; head -c 32 /dev/urandom | base64 > '$work/data/meisa_secret'"
/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:$smtp_port -c aiosmtpd.handlers.Debugging stdout >"$work/smtp.log" 2>&1 &
smtp_pid=$!
opts="-p $port -k $work -c listen_addresses=127.0.0.1 -c shared_preload_libraries=meisa -c meisa.database=postgres"
opts+=" -c meisa.smtp_url=smtp://127.0.0.1:$smtp_port -c meisa.secret_file=meisa_secret -c meisa.worker_naptime=1s"
opts+=" -c meisa.from_address=hello@acme.io -c meisa.unsubscribe_base_url=https://acme.io/unsubscribe/"
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/log" -w -o "$opts" start >/dev/null \
  || { cat "$work/log"; echo "FAIL the cluster starts"; echo "0 passed, 1 failed"; exit 1; }
q() { as_pg "$bindir/psql" -h 127.0.0.1 -p $port -X -q -At -v ON_ERROR_STOP=1 -d postgres "$@"; }
q -c "CREATE EXTENSION meisa" >/dev/null || { echo "FAIL CREATE EXTENSION"; echo "0 passed, 1 failed"; exit 1; }

docs=("$top"/docs/*.md)
passed=0; failed=0
# found WORD [FILE...]: WORD occurs in the docs (or in the given files), not as part of a longer name
found() {
  local word=$1; shift
  local files=("$@"); [ ${#files[@]} -gt 0 ] || files=("${docs[@]}")
  grep -qP "(?<![A-Za-z0-9_.])\Q$word\E(?![A-Za-z0-9_])" "${files[@]}"
}
check() {	# check KIND NAME WORD [FILE...]
  local kind=$1 name=$2 word=$3; shift 3
  if found "$word" "$@"; then passed=$((passed + 1));
  else failed=$((failed + 1)); echo "FAIL $kind $name is not documented in docs/ (looked for \"$word\")"; fi
}

# functions: schema meisa as meisa.<name>, the application API by its name
while IFS='|' read -r schema name; do
  if [ "$schema" = meisa ]; then check function "meisa.$name" "meisa.$name"; else check function "$name" "$name"; fi
done < <(q -c "SELECT DISTINCT n.nspname, p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                 JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
                 JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'meisa'
                WHERE p.prorettype <> 'trigger'::regtype ORDER BY 1, 2")
# settings
while read -r name; do check setting "$name" "$name"; done < <(q -c "SELECT name FROM pg_settings WHERE name LIKE 'meisa.%' ORDER BY 1")
nsettings=$(q -c "SELECT count(*) FROM pg_settings WHERE name LIKE 'meisa.%'")
if [ "$nsettings" -ge 10 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL only $nsettings meisa.* settings registered (preloaded?)"; fi
# tables and views
while read -r name; do check relation "meisa.$name" "meisa.$name"; done \
  < <(q -c "SELECT relname FROM pg_class WHERE relnamespace = 'meisa'::regnamespace AND relkind IN ('r', 'v', 'p', 'm') ORDER BY 1")
# columns of views, in the docs file(s) that document the view
while IFS='|' read -r view col; do
  files=()
  for f in "${docs[@]}"; do found "meisa.$view" "$f" && files+=("$f"); done
  if [ ${#files[@]} -eq 0 ]; then failed=$((failed + 1)); echo "FAIL column meisa.$view.$col: the view is not documented"; continue; fi
  check column "meisa.$view.$col" "$col" "${files[@]}"
done < <(q -c "SELECT c.relname, a.attname FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                WHERE c.relnamespace = 'meisa'::regnamespace AND c.relkind = 'v' ORDER BY 1, a.attnum")
# links: every relative link and #anchor of README.md and docs/*.md resolves,
# every file of the tree they name exists (test/docs/links.py, one check each)
links_out=$(python3 "$here/links.py" "$top"); links_rc=$?
printf '%s\n' "$links_out" | grep '^FAIL' || true
line=$(printf '%s\n' "$links_out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
if [ -n "$line" ]; then
  p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
  passed=$((passed + p)); failed=$((failed + f))
  [ $links_rc -ne 0 ] && [ "$f" -eq 0 ] && { failed=$((failed + 1)); echo "FAIL links.py exited $links_rc"; }
else
  failed=$((failed + 1)); echo "FAIL links.py: $links_out"
fi
# the README's "Getting started": its SQL blocks run as they are, the worker
# sends both messages, and both arrive at the sink
block() {	# block N: the Nth sql block of the section
  python3 - "$top/README.md" "$1" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
i = s.index('\n## Getting started'); j = s.index('\n## ', i + 1)
print(re.findall(r'```sql\n(.*?)```', s[i:j], re.S)[int(sys.argv[2])])
PY
}
gs_check() {	# gs_check NAME COMMAND...: one check
  if "${@:2}"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL README getting started: $1"; fi
}
gs_run() { block "$1" > "$work/gs$1.sql" && q -f "$work/gs$1.sql" > "$work/gs$1.out" 2>&1 || { cat "$work/gs$1.out"; false; }; }
gs_sent() {
  for _ in $(seq 1 60); do
    [ "$(q -c "SELECT count(*) FROM meisa.messages WHERE status = 'sent'")" = 2 ] && return 0; sleep 0.5
  done
  q -c "SELECT template_key, status, last_error FROM meisa.messages"; false
}
gs_arrived() { grep -q '^Subject: Reset your password' "$work/smtp.log" && grep -q '^Subject: Welcome, Ann!' "$work/smtp.log"; }
gs_check "the growth team's block runs" gs_run 0
gs_check "the application's block runs" gs_run 1
gs_check "the worker sends both messages" gs_sent
gs_check "the queries of the last block run" gs_run 2
gs_check "both messages arrive at the SMTP server" gs_arrived

# the check itself can fail: a name that is nowhere in the docs is reported
if found "meisa.no_such_object_$$"; then failed=$((failed + 1)); echo "FAIL the docs check found a name that is not there"; else passed=$((passed + 1)); fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
