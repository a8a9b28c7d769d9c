#!/usr/bin/env bash
# test/broadcasts/crash.sh [--bindir DIR] [--quick] [--contacts N] [--crashes K] [--batch B]
#	kill -9 while a broadcast is being queued.  A throwaway cluster on
#	127.0.0.1:26492 (meisa not preloaded: no worker, the one client below
#	is the only runner).  N contacts (--quick 20,000, else 200,000), nine
#	in ten in segment 'pro', some of them unsubscribed or out of the topic
#	before the start; a broadcast to the segment queued by one client
#	calling meisa_run_due() in a loop, one transaction per call
#	(meisa.broadcast_batch_size B: 1,000 with --quick, else 5,000).  K times
#	(--quick 1, else 5) once the loop has queued a share of the audience:
#	kill -9 the postmaster and then its children (every second crash of
#	the long run: kill -9 the backend running meisa_run_due, and the
#	postmaster restarts by itself), restart, and check that what survived
#	is exactly the batches that committed: every audience contact up to the
#	broadcast's cursor has its message, none past it.  Then the loop runs
#	to the end: every audience contact has exactly one message of the
#	broadcast, nobody else has one, status 'sent', meisa.check_invariants()
#	empty, the btree indexes of schema meisa pass amcheck.
#	Prints "N passed, M failed" last.
set -uo pipefail
BC_DIR=$(cd "$(dirname "$0")" && pwd)
CONTACTS=""; CRASHES=""; BATCH=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --contacts) CONTACTS=$2; shift 2 ;;
    --crashes) CRASHES=$2; shift 2 ;;
    --batch) BATCH=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
# the helpers of the hardening scripts, with a work root and a lock of
# our own (our ports are not theirs)
exec 8>/tmp/meisa-broadcasts.lock
flock -w 3600 8 || { echo "lock /tmp/meisa-broadcasts.lock not obtained"; echo "0 passed, 1 failed"; exit 1; }
export MEISA_HARDENING_LOCKED=1 WORK_ROOT=/tmp/meisa-broadcasts
set -- "${args[@]}"
source "$BC_DIR/../hardening/lib.sh"
if [ "$QUICK" = 1 ]; then
  CONTACTS=${CONTACTS:-20000}; CRASHES=${CRASHES:-1}; BATCH=${BATCH:-1000}
else
  CONTACTS=${CONTACTS:-200000}; CRASHES=${CRASHES:-5}; BATCH=${BATCH:-5000}
fi
NAME=bcrash
PORT=26492
DIR=$WORK_ROOT/$NAME
DB=bc
t0=$(date +%s)
echo "broadcast crash test: $CONTACTS contacts, batches of $BATCH, $CRASHES crash(es), port $PORT"

pg_start $NAME $PORT "max_wal_size = '1GB'" || { verdict "server starts" false; finish; }
q $NAME postgres -c "CREATE DATABASE $DB" && q $NAME $DB -c "CREATE EXTENSION meisa; CREATE EXTENSION amcheck" \
  || { verdict "extension installs" false; finish; }

# the contacts: nine in ten on plan 'pro' (the segment), one in 37 of those
# unsubscribed and one in 41 out of the topic before the broadcast starts
q $NAME $DB >/dev/null <<SQL || { verdict "contacts created" false; finish; }
INSERT INTO meisa.topics (name) VALUES ('news');
INSERT INTO meisa.templates (key, kind, subject, text, html, topic)
VALUES ('crash', 'marketing', 'Hello {{first_name}}', 'Hi {{first_name}}, news.', '<p>Hi {{first_name}}</p>', 'news');
INSERT INTO meisa.segments (name, conditions)
VALUES ('pro', jsonb_build_object('field', 'custom_fields.plan', 'eq', 'pro'));
$(for ((k = 0; k * 20000 < CONTACTS; k++)); do
  echo "INSERT INTO meisa.contacts (email, first_name, custom_fields)
        SELECT 'u' || i || '@example.com', 'U' || i,
               jsonb_build_object('plan', CASE WHEN i % 10 = 0 THEN 'free' ELSE 'pro' END)
          FROM generate_series($((k * 20000 + 1)), $(( (k + 1) * 20000 < CONTACTS ? (k + 1) * 20000 : CONTACTS ))) i;"
done)
SELECT count(meisa_unsubscribe(email)) FROM meisa.contacts WHERE id % 37 = 0;
SELECT count(meisa_set_topic(email, 'news', false)) FROM meisa.contacts WHERE id % 41 = 0;
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('crash', 'crash', 'pro');
SELECT meisa_schedule_broadcast('crash', now());
SQL
members=$(q $NAME $DB -c "SELECT count(*) FROM meisa.segment_members")
verdict "setup: $CONTACTS contacts, $members in the segment ($(( $(date +%s) - t0 )) s)" \
  "$([ "$members" -gt 0 ] && [ "$members" -lt "$CONTACTS" ] && echo true || echo false)"

# the queueing loop: one client, one transaction per meisa_run_due call,
# until the broadcast is sent or the server goes away (exit status 1)
loop() {
  local status
  while :; do
    status=$(PGOPTIONS="-c meisa.broadcast_batch_size=$BATCH" q $NAME $DB \
      -c "SELECT meisa_run_due()" -c "SELECT status FROM meisa.broadcasts WHERE name = 'crash'" 2>/dev/null | tail -1) \
      || return 1
    [ "$status" = sent ] && return 0
  done
}

# what a crash must leave: the messages of exactly the audience contacts up
# to the cursor (a batch and its cursor commit together), no duplicate
consistent_sql="
SELECT (SELECT count(*) FROM meisa.messages m WHERE m.broadcast_id = b.id AND m.contact_id > b.queue_cursor)
     + (SELECT count(*) FROM meisa.segment_members sm
         WHERE sm.segment_id = s.id AND sm.entered_at <= b.started_at AND sm.contact_id <= b.queue_cursor
           AND NOT EXISTS (SELECT 1 FROM meisa.messages m WHERE m.broadcast_id = b.id AND m.contact_id = sm.contact_id))
     + (SELECT count(*) - count(DISTINCT contact_id) FROM meisa.messages m WHERE m.broadcast_id = b.id)
     || ' ' || b.queue_cursor || ' ' || (SELECT count(*) FROM meisa.messages m WHERE m.broadcast_id = b.id)
  FROM meisa.broadcasts b JOIN meisa.segments s ON s.name = b.segment WHERE b.name = 'crash'"

# Waits until the server accepts connections again (after a backend crash
# the postmaster reinitializes by itself): up to 120 s.
wait_ready() {
  local i
  for i in $(seq 1 240); do
    "$BINDIR/pg_isready" -q -h "$DIR" -p $PORT && q $NAME $DB -c "SELECT 1" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

# Kills: crash I KIND (postmaster | backend) once the loop has queued the
# I-th share of the audience, at a random moment inside or between batches.
crash() {
  local i=$1 kind=$2 target pm kids victim queued before loglines
  target=$(( members * i / (CRASHES + 1) ))
  loop >/dev/null 2>&1 &
  local lp=$!
  for _ in $(seq 1 1200); do
    queued=$(q $NAME $DB -c "SELECT count(*) FROM meisa.messages WHERE broadcast_id IS NOT NULL" 2>/dev/null || echo 0)
    [ "${queued:-0}" -ge "$target" ] && break
    kill -0 $lp 2>/dev/null || break
    sleep 0.1
  done
  # the kill lands inside a meisa_run_due call (its backend active), at a
  # random moment of it: while the batch is read, rendered or inserted
  victim=""
  for _ in $(seq 1 500); do
    victim=$(q $NAME $DB -c "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT meisa_run_due()%' AND state = 'active' LIMIT 1" 2>/dev/null)
    [ -n "$victim" ] && break
  done
  before=$(q $NAME $DB -c "SELECT status FROM meisa.broadcasts WHERE name = 'crash'" 2>/dev/null)
  local delay=$(( RANDOM % 10 ))
  sleep "0.0$delay"
  pm=$(head -1 "$DIR/data/postmaster.pid")
  loglines=$(wc -l <"$DIR/server.log")
  if [ -z "$victim" ]; then
    verdict "crash $i ($kind): a backend running meisa_run_due found" false
    kill "$lp" 2>/dev/null
    wait $lp 2>/dev/null
    return 1
  fi
  if [ "$kind" = postmaster ]; then
    kids=$(pgrep -P "$pm" | tr '\n' ' ')
    kill -9 "$pm"
    for k in $kids; do kill -9 "$k" 2>/dev/null; done
    for _ in $(seq 1 100); do kill -0 "$pm" 2>/dev/null || break; sleep 0.1; done
    wait $lp 2>/dev/null
    pg_ctl_start "$DIR" || { verdict "crash $i ($kind): server restarts" false; return 1; }
  else
    kill -9 "$victim" || { verdict "crash $i ($kind): backend $victim still there to kill" false; wait $lp; return 1; }
    wait $lp 2>/dev/null
    wait_ready || { verdict "crash $i ($kind): server recovers" false; return 1; }
  fi
  echo "   crash $i: kill -9 of the $kind $((delay * 10)) ms after backend $victim was seen running meisa_run_due, $queued messages queued, status $before"
  verdict "crash $i ($kind): the server recovered (log: redo)" \
    "$(tail -n +$((loglines + 1)) "$DIR/server.log" | grep -qE "database system was (not properly shut down|interrupted)|redo (starts|done)" && echo true || echo false)"
  local out
  out=$(q $NAME $DB -c "$consistent_sql" 2>&1)
  verdict "crash $i ($kind): the messages are exactly the audience up to the cursor (bad rows, cursor, messages: $out)" \
    "$([ "${out%% *}" = 0 ] && echo true || echo false)"
  verdict "crash $i ($kind): the loop was cut before the end (status $before)" \
    "$([ "$before" = sending ] && echo true || echo false)"
}

for i in $(seq 1 "$CRASHES"); do
  kind=postmaster
  [ $((i % 2)) = 0 ] && kind=backend
  crash "$i" $kind || finish
done

# the rest of the broadcast
t1=$(date +%s)
loop
rc=$?
verdict "the loop queues the rest of the broadcast ($(( $(date +%s) - t1 )) s)" "$([ $rc = 0 ] && echo true || echo false)"
out=$(q $NAME $DB <<'SQL'
SELECT b.status, b.finished_at IS NOT NULL, b.audience,
       (SELECT count(*) FROM meisa.segment_members sm JOIN meisa.segments s ON s.id = sm.segment_id
         WHERE s.name = b.segment AND sm.entered_at <= b.started_at),
       (SELECT count(*) FROM meisa.messages m WHERE m.broadcast_id = b.id),
       (SELECT count(DISTINCT m.contact_id) FROM meisa.messages m WHERE m.broadcast_id = b.id),
       (SELECT count(*) FROM (SELECT m.contact_id FROM meisa.messages m WHERE m.broadcast_id = b.id
                               GROUP BY 1 HAVING count(*) > 1) d),
       (SELECT count(*) FROM meisa.segment_members sm JOIN meisa.segments s ON s.id = sm.segment_id
         WHERE s.name = b.segment AND NOT EXISTS (SELECT 1 FROM meisa.messages m
                                                   WHERE m.broadcast_id = b.id AND m.contact_id = sm.contact_id)),
       (SELECT count(*) FROM meisa.messages m WHERE m.broadcast_id = b.id
           AND NOT EXISTS (SELECT 1 FROM meisa.segment_members sm JOIN meisa.segments s ON s.id = sm.segment_id
                            WHERE s.name = b.segment AND sm.contact_id = m.contact_id)),
       (SELECT count(*) FROM meisa.messages m WHERE m.broadcast_id = b.id AND m.status = 'queued'),
       (SELECT count(*) FROM meisa.messages m WHERE m.broadcast_id = b.id AND m.status = 'suppressed'
           AND m.last_error = 'unsubscribed'),
       (SELECT count(*) FROM meisa.messages m WHERE m.broadcast_id = b.id AND m.status = 'suppressed'
           AND m.last_error = 'topic_unsubscribed'),
       (SELECT count(*) FROM meisa.contacts c JOIN meisa.segment_members sm ON sm.contact_id = c.id
         WHERE NOT c.subscribed),
       (SELECT count(*) FROM meisa.contacts c JOIN meisa.segment_members sm ON sm.contact_id = c.id
         WHERE c.subscribed AND c.id % 41 = 0)
  FROM meisa.broadcasts b WHERE b.name = 'crash'
SQL
)
IFS='|' read -r status finished audience members_at_start messages distinct dups missed strangers queued unsub topic want_unsub want_topic <<<"$out"
echo "   status $status, audience $audience, messages $messages ($queued queued, $unsub unsubscribed, $topic topic_unsubscribed)"
verdict "the broadcast is 'sent' with finished_at" "$([ "$status" = sent ] && [ "$finished" = t ] && echo true || echo false)"
verdict "audience counted at the start = the segment's members ($audience = $members_at_start = $members)" \
  "$([ "$audience" = "$members_at_start" ] && [ "$audience" = "$members" ] && echo true || echo false)"
verdict "one message per audience contact: $messages messages, $distinct contacts, $dups twice, $missed missed" \
  "$([ "$messages" = "$members" ] && [ "$distinct" = "$members" ] && [ "$dups" = 0 ] && [ "$missed" = 0 ] && echo true || echo false)"
verdict "no message for a contact outside the segment ($strangers)" "$([ "$strangers" = 0 ] && echo true || echo false)"
verdict "suppressed: $unsub unsubscribed (want $want_unsub), $topic out of the topic (want $want_topic); the rest queued" \
  "$([ "$unsub" = "$want_unsub" ] && [ "$topic" = "$want_topic" ] && [ $((queued + unsub + topic)) = "$messages" ] && echo true || echo false)"
inv=$(q $NAME $DB -c "SELECT count(*) FROM meisa.check_invariants()" 2>&1)
verdict "meisa.check_invariants() is empty ($inv)" "$([ "$inv" = 0 ] && echo true || echo false)"
am=$(q $NAME $DB 2>&1 <<'SQL'
SELECT count(*) FROM (
  SELECT bt_index_check(i.indexrelid, true)
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam
   WHERE c.relnamespace = 'meisa'::regnamespace AND a.amname = 'btree') x;
SQL
)
verdict "amcheck: the btree indexes of schema meisa ($am)" "$([[ "$am" =~ ^[0-9]+$ ]] && [ "$am" -gt 0 ] && echo true || echo false)"
crashlines=$(crash_lines "$DIR/server.log" | grep -v "terminated by signal 9" | head -3)
verdict "no crash in the log but the kills" "$([ -z "$crashlines" ] && echo true || echo false)" "$crashlines"
echo "time $(( $(date +%s) - t0 )) s"
finish
