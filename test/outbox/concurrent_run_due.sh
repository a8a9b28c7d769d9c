#!/usr/bin/env bash
# test/outbox/concurrent_run_due.sh [N] [SESSIONS]: live check that concurrent
# meisa_run_due callers never process one enrolment twice.  On a private
# cluster (127.0.0.1:26430, data under /tmp; binaries from $BINDIR, else
# scripts/devcheck.sh's prefix, else /usr/lib/postgresql/15/bin)
# it enrols N (default 20000) contacts in a three-step sequence whose steps
# all have a zero delay, starts SESSIONS (default 4) sessions calling
# meisa_run_due at the same moment with small batches, and checks that every
# (enrolment, step) got exactly one message and the advances add up.
# Exit status 0 when everything holds.
set -euo pipefail
N=${1:-20000}
S=${2:-4}
PORT=26430
src=$(cd "$(dirname "$0")/../.." && pwd)
bindir=${BINDIR:-/tmp/meisa-dev/$(echo "$src" | tr '/' '_')/pg/usr/lib/postgresql/15/bin}
[ -x "$bindir/postgres" ] || bindir=/usr/lib/postgresql/15/bin
[ -x "$bindir/postgres" ] || { echo "no PostgreSQL binaries in $bindir"; exit 1; }
data=$(mktemp -d /tmp/meisa-outbox-conc.XXXXXX)
chown postgres: "$data"
pg() { runuser -u postgres -- "$@"; }
cleanup() { pg "$bindir/pg_ctl" -D "$data/db" -m fast stop >/dev/null 2>&1 || true; rm -rf "$data"; }
trap cleanup EXIT
pg "$bindir/initdb" -D "$data/db" -A trust -U postgres >/dev/null
pg "$bindir/pg_ctl" -D "$data/db" -l "$data/log" -w -o "-p $PORT -k $data -c listen_addresses=127.0.0.1" start >/dev/null
psql() { pg "$bindir/psql" -h "$data" -p $PORT -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE conc"
psql -d conc <<SQL
SET client_min_messages = warning;
CREATE EXTENSION meisa;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('t', 'marketing', 'Hi {{first_name}}', 'step for {{email}}');
INSERT INTO meisa.sequences (name) VALUES ('conc');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, p, interval '0', 't' FROM meisa.sequences, generate_series(1, 3) p;
INSERT INTO meisa.contacts (email, first_name) SELECT 'c' || i || '@example.com', 'C' || i FROM generate_series(1, $N) i;
INSERT INTO meisa.enrollments (contact_id, sequence_id, next_run_at)
SELECT c.id, s.id, '2030-01-07 10:00+00' FROM meisa.contacts c, meisa.sequences s;
SQL
for i in $(seq 1 "$S"); do
  psql -d conc -At -c "SET meisa.run_due_batch_size = $((50 + i * 17))" \
       -c "SELECT meisa_run_due('2030-01-07 10:00+00')" > "$data/r$i" &
done
wait
total=$(cat "$data"/r* | awk '{s += $1} END {print s}')
echo "advances per session: $(cat "$data"/r* | tr '\n' ' ')(sum $total, expected $((N * 3)))"
res=$(psql -d conc -At -F ' ' -c "
SELECT count(*), count(DISTINCT (enrollment_id, step_position)),
       (SELECT count(*) FROM meisa.enrollments WHERE status = 'completed' AND current_step = 3),
       (SELECT count(*) FROM meisa.enrollments WHERE last_error IS NOT NULL)
  FROM meisa.messages")
read -r msgs distinct completed errors <<<"$res"
echo "messages $msgs, distinct (enrolment, step) $distinct, completed enrolments $completed, errors $errors"
if [ "$msgs" -eq $((N * 3)) ] && [ "$distinct" -eq "$msgs" ] && [ "$completed" -eq "$N" ] \
   && [ "$errors" -eq 0 ] && [ "$total" -eq $((N * 3)) ]; then
  echo "OK: every step queued exactly once"
else
  echo "FAILED"; exit 1
fi
