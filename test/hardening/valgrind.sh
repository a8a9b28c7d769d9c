#!/usr/bin/env bash
# test/hardening/valgrind.sh [--bindir DIR] [--quick] [--tests "t1 t2 ..."]
#	The pg_regress suite against a PostgreSQL server running under valgrind
#	memcheck, with meisa preloaded (the delivery worker runs too).  Copies
#	the PostgreSQL 15 installation of --bindir into a private relocated
#	prefix (/tmp/meisa-valgrind/pg), builds and installs meisa there, renames
#	its postgres executable to postgres.real and puts a wrapper script in its
#	place that execs valgrind (suppressions: test/hardening/valgrind.supp,
#	one log per process).  initdb and the setup run with the real binary;
#	only the server runs under valgrind.  The suite runs in pg_regress's
#	installcheck mode (--use-existing, --host/--port) against database
#	contrib_regression, which is also meisa.database (the worker's).  After
#	the suite, the worker delivers a few messages to a local SMTP server
#	(libcurl, MIME, tokens under valgrind).  Then the server stops and the
#	logs are scanned.  Passes when: the server did not crash, and no valgrind
#	error record (invalid read/write, uninitialised value, invalid free,
#	overlapping copy, definitely lost block) has meisa.so in its stack.
#	Errors elsewhere are listed as a note.  pg_regress's result is reported
#	(timing can change outputs under valgrind) but is not the verdict.
#	Without --quick: every sql/*.sql test, then every isolation spec
#	(pg_isolation_regress --use-existing).  --quick: a subset of 9 tests
#	(00_install, which creates the roles the others grant to, 12_upsert
#	14_trigger 30_render 43_run_due 53_automation_actions 60_mime
#	90_segments 93_broadcasts), no specs.  --tests "..." runs the named tests only (no specs
#	unless ISOLATION="spec ..." is set).  Memcheck sees malloc-level errors
#	and uninitialised values only: the server is not built with USE_VALGRIND,
#	so palloc chunks inside a memory context are invisible to it.  Ports
#	26480 (server), 26481 (SMTP); work root /tmp/meisa-valgrind.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# own work root and lock: the ports differ from the other hardening scripts
export WORK_ROOT=${VALGRIND_ROOT:-/tmp/meisa-valgrind}
mkdir -p "$WORK_ROOT"
exec 8>"$WORK_ROOT.lock"
flock -n 8 || { echo "waiting for another valgrind run ($WORK_ROOT.lock)"; flock -w 7200 8 || exit 1; }
export MEISA_HARDENING_LOCKED=1
source "$HERE/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"
TESTS=; ISOLATION=${ISOLATION:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --tests) TESTS=$2; ISOLATION=${ISOLATION:-none}; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
if [ -z "$TESTS" ]; then
  if [ "$QUICK" = 1 ]; then
    TESTS="00_install 12_upsert 14_trigger 30_render 43_run_due 53_automation_actions 60_mime 90_segments 93_broadcasts"
  else
    TESTS=$(cd "$TOP/sql" && ls *.sql | sed 's/\.sql$//' | sort | tr '\n' ' ')
  fi
fi
PORT=26480; SMTP_PORT=26481
SUPP=$HERE/valgrind.supp
VALGRIND=${VALGRIND:-/usr/bin/valgrind}
base=$WORK_ROOT
pg=$base/pg
t0=$(date +%s)
if [ ! -x "$VALGRIND" ]; then
  # not a failure of meisa: the check cannot run on this machine
  echo "valgrind is not installed ($VALGRIND): skipped (apt-get install valgrind)"
  finish
fi

# ---- a private copy of PostgreSQL with meisa installed
srcbin=$(cd "$BINDIR" && pwd)
srclib=$(dirname "$srcbin")                      # .../lib/postgresql/15
srcshare=$("$srcbin/pg_config" --sharedir)        # .../share/postgresql/15
echo "== valgrind: copying PostgreSQL ($srclib, $srcshare) to $pg"
pg_stop_dir "$base/cluster"
rm -rf "$pg" "$base/src" "$base/cluster" "$base/logs" "$base/mail"
mkdir -p "$pg/usr/lib/postgresql" "$pg/usr/share/postgresql" "$base/src" "$base/logs"
cp -a "$srclib" "$pg/usr/lib/postgresql/15"
cp -a "$srcshare" "$pg/usr/share/postgresql/15"
rsync -a --exclude .git --exclude tmp_check --exclude tmp_check_iso --exclude results --exclude output_iso \
  "$TOP/" "$base/src/"
chown -R postgres: "$base"; chmod 755 "$base"
VBIN=$pg/usr/lib/postgresql/15/bin
# build with the system's pg_config (its paths are the ones DESTDIR prefixes)
PGC=/usr/lib/postgresql/15/bin/pg_config
(cd "$base/src" && as_pg make -s -j2 PG_CONFIG="$PGC" >"$base/build.log" 2>&1 \
  && as_pg make -s install PG_CONFIG="$PGC" DESTDIR="$pg" >>"$base/build.log" 2>&1)
rc=$?
verdict "valgrind: meisa builds and installs into the copy" "$([ $rc = 0 ] && echo true || echo false)" "$(tail -2 "$base/build.log")"
[ $rc = 0 ] || finish
MEISA_SO=$pg/usr/lib/postgresql/15/lib/meisa.so

# ---- the cluster, prepared with the real binary
dir=$base/cluster
mkdir -p "$dir"; chown postgres: "$dir"
as_pg "$VBIN/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
  || { verdict "valgrind: initdb" false "$(tail -3 "$dir/initdb.log")"; finish; }
# the regression database exists before the server (and the worker) start;
# the settings are the ones pg_regress gives a database it creates
echo "CREATE DATABASE contrib_regression TEMPLATE template0" \
  | as_pg "$VBIN/postgres" --single -D "$dir/data" postgres >"$dir/single.log" 2>&1
for s in "lc_messages TO 'C'" "lc_monetary TO 'C'" "lc_numeric TO 'C'" "lc_time TO 'C'" \
         "bytea_output TO 'hex'" "timezone_abbreviations TO 'Default'"; do
  echo "ALTER DATABASE contrib_regression SET $s"
done | as_pg "$VBIN/postgres" --single -D "$dir/data" postgres >>"$dir/single.log" 2>&1
{
  echo "listen_addresses = '127.0.0.1'"
  echo "port = $PORT"
  echo "unix_socket_directories = '$dir'"
  echo "log_line_prefix = '%m [%p] %e %a '"
  echo "max_connections = 10"
  echo "max_prepared_transactions = 2"
  echo "shared_preload_libraries = 'meisa'"
  echo "meisa.database = 'contrib_regression'"
  echo "shared_buffers = 16MB"
  echo "autovacuum = off"            # fewer processes under valgrind
  echo "fsync = off"
  echo "huge_pages = off"
  echo "statement_timeout = 0"
  echo "authentication_timeout = 600s"
  echo "deadlock_timeout = 5s"
} >>"$dir/data/postgresql.conf"

# ---- the wrapper: postgres -> valgrind postgres.real
mv "$VBIN/postgres" "$VBIN/postgres.real"
cat >"$VBIN/postgres" <<EOF
#!/bin/sh
# postgres under valgrind memcheck (test/hardening/valgrind.sh); the real binary is postgres.real
exec $VALGRIND --tool=memcheck --trace-children=yes --track-origins=no --read-var-info=no \\
  --error-exitcode=0 --num-callers=30 --fullpath-after= --leak-check=full --show-leak-kinds=definite \\
  --errors-for-leak-kinds=definite --suppressions=$SUPP \\
  --log-file=$base/logs/%p.log "$VBIN/postgres.real" "\$@"
EOF
chmod 755 "$VBIN/postgres"; chown postgres: "$VBIN/postgres"
as_pg "$VBIN/postgres" -V >/dev/null 2>&1
verdict "valgrind: wrapper answers postgres -V" "$([ $? = 0 ] && echo true || echo false)"
rm -f "$base"/logs/*.log

echo "== valgrind: starting the server under valgrind (port $PORT)"
start=$(date +%s)
as_pg "$VBIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 600 start >/dev/null 2>&1 9>&- 8>&-
rc=$?
STARTED_CLUSTERS+=("$dir")
verdict "valgrind: server starts under valgrind" "$([ $rc = 0 ] && echo true || echo false)" "$(( $(date +%s) - start )) s"
[ $rc = 0 ] || { tail -20 "$dir/server.log"; finish; }
pid=$(head -1 "$dir/data/postmaster.pid")
grep -q "valgrind\|memcheck" "/proc/$pid/cmdline" 2>/dev/null || [ -f "$base/logs/$pid.log" ]
verdict "valgrind: the postmaster runs under memcheck" "$([ $? = 0 ] && echo true || echo false)" "pid $pid"

# ---- the pg_regress suite in installcheck mode against that server
ntests=$(echo $TESTS | wc -w)
echo "== valgrind: pg_regress, $ntests tests (installcheck against 127.0.0.1:$PORT)"
REGRESS=$("$PGC" --pkglibdir)/pgxs/src/test/regress/pg_regress
start=$(date +%s)
(cd "$base/src" && as_pg env PGOPTIONS="-c statement_timeout=0 -c lock_timeout=0" \
  timeout 7200 "$REGRESS" --inputdir=./ --bindir="$VBIN" --host=127.0.0.1 --port=$PORT \
  --use-existing --dbname=contrib_regression $TESTS >"$base/regress.log" 2>&1 9>&- 8>&-)
rc=$?
secs=$(( $(date +%s) - start ))
ok=$(grep -cE '^(ok|test) .* ok|\.\.\. +ok' "$base/regress.log")
bad=$(grep -cE 'FAILED|failed \(' "$base/regress.log")
echo "   pg_regress: $ok ok, $bad failed, exit $rc, $secs s (log $base/regress.log, diffs $base/src/regression.diffs)"
grep -E 'FAILED|failed \(' "$base/regress.log" | sed 's/^/   /'
REGRESS_SUMMARY="$ok ok, $bad failed in $secs s"

# ---- the isolation specs (long version only), same server and database
if [ "$QUICK" = 0 ] && [ "$ISOLATION" != none ]; then
  [ -n "$ISOLATION" ] || ISOLATION=$(cd "$TOP/specs" && ls *.spec | sed 's/\.spec$//' | sort | tr '\n' ' ')
  echo "== valgrind: pg_isolation_regress, $(echo $ISOLATION | wc -w) specs"
  ISOREGRESS=$("$PGC" --pkglibdir)/pgxs/src/test/isolation/pg_isolation_regress
  # the specs' setup runs CREATE EXTENSION IF NOT EXISTS: start from none, not
  # from the last pg_regress test's data
  as_pg "$VBIN/psql" -X -q -h 127.0.0.1 -p $PORT -d contrib_regression \
    -c "SET client_min_messages = warning" -c "DROP EXTENSION IF EXISTS meisa CASCADE" 9>&- 8>&-
  start=$(date +%s)
  (cd "$base/src" && as_pg timeout 3600 "$ISOREGRESS" --inputdir=./ --outputdir=output_iso --bindir="$VBIN" \
    --host=127.0.0.1 --port=$PORT --use-existing --dbname=contrib_regression $ISOLATION >"$base/isolation.log" 2>&1 9>&- 8>&-)
  rc=$?
  secs=$(( $(date +%s) - start ))
  ok=$(grep -cE '\.\.\. +ok| ok +[0-9]+ ms' "$base/isolation.log")
  bad=$(grep -cE 'FAILED|failed \(' "$base/isolation.log")
  echo "   isolation: $ok ok, $bad failed, exit $rc, $secs s (log $base/isolation.log, diffs $base/src/output_iso/regression.diffs)"
  grep -E 'FAILED|failed \(' "$base/isolation.log" | sed 's/^/   /'
  REGRESS_SUMMARY="$REGRESS_SUMMARY; isolation $ok ok, $bad failed in $secs s"
fi

# ---- the worker delivers to a local SMTP server (libcurl, MIME under valgrind)
echo "== valgrind: the delivery worker sends 5 messages to a local SMTP server"
smtp_start $SMTP_PORT "$base/mail/Maildir" 9>&- 8>&-
secret_file "$base/valgrind.key" valgrind-secret
psqlv() { as_pg "$VBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p $PORT -d contrib_regression "$@"; }
psqlv <<SQL >/dev/null 9>&- 8>&-
SET client_min_messages = warning;
DROP EXTENSION IF EXISTS meisa CASCADE;
CREATE EXTENSION meisa;
ALTER SYSTEM SET meisa.smtp_url = 'smtp://127.0.0.1:$SMTP_PORT';
ALTER SYSTEM SET meisa.from_address = 'Valgrind <vg@meisa.test>';
ALTER SYSTEM SET meisa.secret_file = '$base/valgrind.key';
ALTER SYSTEM SET meisa.unsubscribe_base_url = 'https://meisa.test/u/';
ALTER SYSTEM SET meisa.worker_naptime = '1s';
SELECT pg_reload_conf();
SQL
sleep 5
psqlv <<'SQL' >/dev/null 9>&- 8>&-
INSERT INTO meisa.templates (key, kind, subject, html, text)
  VALUES ('vg', 'transactional', 'Hello {{first_name}} ü', '<p>Hi {{first_name}}, <a href="{{{unsubscribe_url}}}">unsubscribe</a></p>',
          'Hi {{first_name}} {{{unsubscribe_url}}}');
SELECT meisa_upsert(jsonb_build_object('email', 'vg' || i || '@example.com', 'first_name', 'Nämé ' || i)) FROM generate_series(1, 5) i;
SELECT meisa_trigger_email('vg', jsonb_build_object('email', 'vg' || i || '@example.com', 'data_variables', jsonb_build_object('n', i)))
  FROM generate_series(1, 5) i;
SQL
rc=$?
[ $rc = 0 ] || echo "   queueing the messages failed (psql exit $rc)"
sent=0
for i in $(seq 1 120); do
  sent=$(psqlv -c "SELECT count(*) FROM meisa.messages WHERE status = 'sent'" 9>&- 8>&- 2>/dev/null || echo 0)
  [ "$sent" = 5 ] && break
  [ "$rc" = 0 ] || break
  sleep 2
done
psqlv -c "SELECT status, count(*), max(last_error) FROM meisa.messages GROUP BY 1" 9>&- 8>&- | sed 's/^/   /'
verdict "valgrind: the worker sends 5 messages under valgrind" "$([ "$sent" = 5 ] && echo true || echo false)" "$sent sent"
psqlv <<'SQL' >/dev/null 9>&- 8>&-
ALTER SYSTEM RESET ALL;
SELECT pg_reload_conf();
SQL

# ---- stop, then read the logs
echo "== valgrind: stopping the server"
as_pg "$VBIN/pg_ctl" -D "$dir/data" -m fast -w -t 600 stop >/dev/null 2>&1 9>&- 8>&-
verdict "valgrind: server stops cleanly" "$([ $? = 0 ] && echo true || echo false)"
STARTED_CLUSTERS=()
crashes=$(crash_lines "$dir/server.log")
verdict "valgrind: no backend crash in the server log" "$([ -z "$crashes" ] && echo true || echo false)" "$(echo "$crashes" | head -3)"

echo "== valgrind: scanning $(ls "$base"/logs/*.log | wc -l) valgrind logs"
/usr/bin/python3 "$HERE/valgrind_scan.py" "$base/logs" "$base/src/" >"$base/scan.txt"
scan_rc=$?
cat "$base/scan.txt"
total=$(sed -n 's/^error records total: //p' "$base/scan.txt")
inmeisa=$(sed -n 's/^error records in meisa.so: //p' "$base/scan.txt")
verdict "valgrind: no valgrind error in meisa.so" "$([ "$scan_rc" = 0 ] && [ "${inmeisa:-x}" = 0 ] && echo true || echo false)" \
  "${inmeisa:-?} of ${total:-?} error records"
echo "   pg_regress under valgrind: $REGRESS_SUMMARY (not part of the verdict)"
echo "   total time $(( $(date +%s) - t0 )) s"
finish
