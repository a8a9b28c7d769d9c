#!/usr/bin/env bash
# test/hardening/stress.sh [--bindir DIR] [--quick] [--duration S] [--crashes N] [--users N]
#	Concurrency under load and crash safety.  Starts a private cluster with
#	meisa preloaded (the worker sends to a local SMTP server that stores
#	mail in a Maildir), loads test/hardening/sql/stress_setup.sql, then runs
#	pgbench with 8 clients mixing meisa_upsert (overlapping emails, plan
#	changes that fire automations), meisa_track (repeating event ids), tag
#	changes, meisa_trigger_email (repeating idempotency keys),
#	unsubscribe/resubscribe and the SQL entry points meisa_run_due /
#	meisa_deliver beside the worker.  Afterwards the invariants of
#	sql/stress_check.sql must hold, the server log must show no crash,
#	deadlock or serialization failure, and every message marked sent must
#	have reached the SMTP server.
#	Crash part: N times, kill -9 the postmaster during the same load,
#	restart, check the invariants and amcheck (bt_index_check with
#	heapallindexed on every meisa index, verify_heapam on every meisa table).
#	Long version: 60 s load and 5 crashes; --quick: 10 s and 1 crash.
source "$(dirname "$0")/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"

if [ "$QUICK" = 1 ]; then DURATION=10; CRASHES=1; USERS=300; else DURATION=60; CRASHES=5; USERS=2000; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    --crashes) CRASHES=$2; shift 2 ;;
    --users) USERS=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done

NAME=stress
PORT=26470
SMTP_PORT=26475
DIR=$WORK_ROOT/$NAME
MAILDIR=$WORK_ROOT/stress-mail
rm -rf "$MAILDIR" "$MAILDIR.log"

echo "== stress: $DURATION s of load, $CRASHES crash(es), $USERS users (bindir $BINDIR)"
smtp_start $SMTP_PORT "$MAILDIR" || { verdict "smtp server starts" false; finish; }
secret_file "$WORK_ROOT/$NAME.key" stress-secret
pg_start $NAME $PORT \
  "shared_preload_libraries = 'meisa'" \
  "meisa.database = 'stress'" \
  "meisa.smtp_url = 'smtp://127.0.0.1:$SMTP_PORT'" \
  "meisa.from_address = 'Stress <stress@meisa.test>'" \
  "meisa.unsubscribe_base_url = 'https://meisa.test/u/'" \
  "meisa.secret_file = '$WORK_ROOT/$NAME.key'" \
  "meisa.worker_naptime = 1" \
  "deadlock_timeout = '200ms'" \
  "log_lock_waits = on" \
  || { verdict "cluster starts" false; finish; }
as_pg "$BINDIR/createdb" -h "$DIR" -p $PORT stress
q $NAME stress -f "$HARD_DIR/sql/stress_setup.sql" >/dev/null \
  || { verdict "stress schema loads" false; finish; }

# Runs the mixed workload for $1 seconds (pgbench output into $2).
run_load() {
  local secs=$1 out=$2 p=$HARD_DIR/pgbench
  as_pg "$BINDIR/pgbench" -n -h "$DIR" -p $PORT -c 8 -j 2 -T "$secs" -D users="$USERS" \
    -f "$p/upsert.sql@40" -f "$p/track.sql@20" -f "$p/tag.sql@15" -f "$p/mail.sql@10" \
    -f "$p/subscription.sql@3" -f "$p/due.sql@4" -f "$p/deliver.sql@4" stress >"$out" 2>&1
}

# Lets the worker (then the SQL entry points) finish due work; prints what it did.
drain() {
  local i left
  for i in $(seq 1 30); do
    q $NAME stress -c "SELECT meisa_run_due()" >/dev/null 2>&1
    left=$(q $NAME stress -c "SELECT count(*) FROM meisa.messages WHERE status = 'sending' OR (status = 'queued' AND next_attempt_at <= now())" 2>/dev/null)
    [ "$left" = 0 ] && { echo "   worker drained the outbox after ${i}s"; return 0; }
    sleep 1
  done
  echo "   worker left $left messages due after 30 s; calling meisa_deliver"
  for i in $(seq 1 30); do
    q $NAME stress -c "SELECT meisa_deliver(1000)" >/dev/null 2>&1
    left=$(q $NAME stress -c "SELECT count(*) FROM meisa.messages WHERE status = 'sending' OR (status = 'queued' AND next_attempt_at <= now())" 2>/dev/null)
    [ "$left" = 0 ] && return 0
    sleep 1
  done
  echo "   $left messages still due"
}

# Checks the invariants; $1 = label, $2 = 1 after a crash.
check_invariants() {
  local label=$1 crashed=$2 out line name n ex bad=0
  out=$(q $NAME stress -v crashed="$crashed" -f "$HARD_DIR/sql/stress_check.sql" 2>&1) \
    || { verdict "$label: invariant queries run" false "$(echo "$out" | head -3)"; return; }
  while IFS='|' read -r name n ex; do
    [ -z "$name" ] && continue
    if [ "$n" != 0 ]; then bad=1; echo "   violated: $name: $n (e.g. $ex)"; fi
  done <<<"$out"
  verdict "$label: invariants ($(echo "$out" | grep -c .) checks)" "$([ $bad = 0 ] && echo true || echo false)"
}

# amcheck on every meisa index and table.
check_amcheck() {
  local label=$1 out
  out=$(q $NAME stress 2>&1 <<'SQL'
SELECT count(*) FROM (
  SELECT bt_index_check(i.indexrelid, true)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
   WHERE c.relnamespace = 'meisa'::regnamespace AND a.amname = 'btree') x;
SELECT count(*) FROM pg_class c, verify_heapam(c.oid, check_toast => true) v
 WHERE c.relnamespace = 'meisa'::regnamespace AND c.relkind = 'r';
SELECT count(*) FROM pg_class c WHERE c.relnamespace = 'meisa'::regnamespace AND c.relkind = 'r';
SQL
)
  local lines; lines=($out)
  if [ ${#lines[@]} -eq 3 ] && [ "${lines[1]}" = 0 ]; then
    verdict "$label: amcheck (${lines[0]} btree indexes with heapallindexed, ${lines[2]} tables verify_heapam)" true
  else
    verdict "$label: amcheck" false "$(echo "$out" | head -5)"
  fi
}

# Every message marked sent reached the SMTP server (by Message-ID).
check_mail() {
  local label=$1 out
  q $NAME stress -c "SELECT message_id FROM meisa.messages WHERE status = 'sent'" >"$WORK_ROOT/stress-sent.txt" 2>&1
  out=$(/usr/bin/python3 - "$MAILDIR" "$WORK_ROOT/stress-sent.txt" <<'PY'
import mailbox, sys, collections
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
got = collections.Counter(m.get("Message-ID", "").strip().strip("<>") for m in box)
sent = [l.strip().strip("<>") for l in open(sys.argv[2]) if l.strip()]
missing = [s for s in sent if got[s] == 0]
dups = sum(c - 1 for c in got.values() if c > 1)
print(len(sent), sum(got.values()), len(missing), dups, (missing or [""])[0])
PY
)
  read -r nsent nmail nmissing ndup ex <<<"$out"
  echo "   messages sent: $nsent, received by SMTP: $nmail, duplicates (at-least-once resends): $ndup"
  verdict "$label: every sent message reached the SMTP server" "$([ "${nmissing:-1}" = 0 ] && echo true || echo false)" "missing $nmissing ${ex:-}"
}

# The server log: no crash, no deadlock, no serialization failure.
check_log() {
  local label=$1 log=$DIR/server.log c d e
  c=$(crash_lines "$log" | grep -v "terminated by signal 9" | wc -l)
  # "detected deadlock" (log_lock_waits) also counts a deadlock whose error a
  # subtransaction caught, e.g. an automation run recorded as failed
  d=$(grep -cE "deadlock detected|detected deadlock|could not serialize" "$log")
  e=$(grep -E " ERROR: " "$log" | grep -vE "terminating connection|canceling statement" | wc -l)
  verdict "$label: no backend crash in the server log" "$([ "$c" = 0 ] && echo true || echo false)" "$c"
  verdict "$label: no deadlock or serialization failure in the server log" "$([ "$d" = 0 ] && echo true || echo false)" "$d"
  [ "$e" != 0 ] && { echo "   server log errors ($e), first ones:"; grep -E " ERROR: " "$log" | sort -k5 | uniq -c -f4 | head -5; }
  true
}

# Workload figures of a pgbench run.
report_load() {
  local out=$1 tx aborted
  tx=$(grep -E "number of transactions actually processed" "$out" | sed 's/.*: //')
  aborted=$(grep -cE "aborted|error" "$out")
  echo "   pgbench: ${tx:-?} transactions, $(grep -E '^tps' "$out" | head -1)"
  echo "   calls: $(q $NAME stress -c "SELECT 'contacts=' || (SELECT count(*) FROM meisa.contacts) || ' events=' || (SELECT count(*) FROM meisa.events) || ' runs=' || (SELECT count(*) FROM meisa.automation_runs) || ' enrolments=' || (SELECT count(*) FROM meisa.enrollments) || ' messages=' || (SELECT count(*) FROM meisa.messages) || ' caught_errors=' || (SELECT count(*) FROM stress.errors)")"
}

# ---- 1. concurrency under load
run_load "$DURATION" "$WORK_ROOT/stress-pgbench.txt"
rc=$?
report_load "$WORK_ROOT/stress-pgbench.txt"
verdict "stress: pgbench ran $DURATION s with 8 clients without client errors" \
  "$([ $rc = 0 ] && ! grep -qE "aborted|ERROR" "$WORK_ROOT/stress-pgbench.txt" && echo true || echo false)" \
  "$(grep -E "aborted|ERROR" "$WORK_ROOT/stress-pgbench.txt" | head -2)"
drain
check_invariants "stress" 0
check_mail "stress"
check_log "stress"
check_amcheck "stress"

# ---- 2. crash safety
for i in $(seq 1 "$CRASHES"); do
  load=$((DURATION / 2 > 8 ? DURATION / 2 : 8))
  wait_s=$((3 + RANDOM % (load - 4)))
  run_load "$load" "$WORK_ROOT/crash-$i-pgbench.txt" &
  bench=$!
  sleep "$wait_s"
  pm=$(head -1 "$DIR/data/postmaster.pid")
  kids=$(pgrep -P "$pm" | tr '\n' ' ')
  kill -9 "$pm"
  echo "== crash $i: kill -9 postmaster $pm after $wait_s s of load"
  for t in $(seq 1 50); do
    alive=0; for k in $kids; do kill -0 "$k" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break; sleep 0.2
  done
  for k in $kids; do kill -9 "$k" 2>/dev/null; done   # children of our postmaster still running
  wait "$bench" 2>/dev/null
  pg_ctl_start "$DIR" || { verdict "crash $i: server restarts" false; break; }
  verdict "crash $i: server restarts and recovers" \
    "$(grep -q "database system is ready to accept connections" <(tail -20 "$DIR/server.log") && echo true || echo false)"
  check_invariants "crash $i" 1
  check_amcheck "crash $i"
done
if [ "$CRASHES" -gt 0 ]; then
  drain
  check_invariants "after $CRASHES crash(es), drained" 1
  check_mail "after crashes"
  check_log "after crashes"
fi
finish
