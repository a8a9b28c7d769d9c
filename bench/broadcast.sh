#!/usr/bin/env bash
# bench/broadcast.sh: queueing a broadcast at scale, against plain
# PostgreSQL measured in the same run, and its crash and concurrency rules.
#   1. A broadcast to a segment of CONTACTS contacts (default 1,000,000):
#      the meisa_run_due calls (each in its own transaction, one batch of
#      meisa.broadcast_batch_size per call) until it is 'sent', against a
#      plain INSERT ... SELECT of the same rows, rendered beforehand, into
#      meisa.messages itself (same indexes, triggers and foreign key).
#      Targets: < 60 s, <= 2x the INSERT ... SELECT.
#   2. kill -9 of the postmaster while a broadcast to the same segment is
#      being queued, a restart, the rest queued: every member has exactly
#      one message of it (counted), none twice, none missing.
#   3. Two concurrent callers of meisa_run_due queue a third broadcast to
#      the segment: again exactly one message per member.
# Starts a private cluster on 127.0.0.1:26465 (data under /tmp,
# synchronous_commit off) with the binaries in $BINDIR, else those of
# scripts/devcheck.sh's prefix; stops it at the end.  Run as root.
# PARTS=1 runs part 1 only (default 123).
set -euo pipefail
contacts=${CONTACTS:-1000000}
parts=${PARTS:-123}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
bench_cluster 26465 broadcast

now_ms() { date +%s%3N; }
# queue_loop NAME: meisa_run_due in a transaction per call until broadcast NAME is sent
queue_loop() {
  psql -d bench -v name="$1" <<'SQL'
SELECT set_config('bench.name', :'name', false);
DO $$
BEGIN
  LOOP
    PERFORM meisa_run_due();
    COMMIT;
    EXIT WHEN (SELECT status FROM meisa.broadcasts WHERE name = current_setting('bench.name')) = 'sent';
  END LOOP;
END
$$;
SQL
}
# check_one NAME: prints members, messages, distinct contacts, members without one
check_one() {
  psql -d bench -At -F ' ' -v name="$1" <<'SQL'
SELECT (SELECT count(*) FROM meisa.segment_members m JOIN meisa.segments s ON s.id = m.segment_id WHERE s.name = 'everyone'),
       count(*), count(DISTINCT x.contact_id),
       (SELECT count(*) FROM meisa.segment_members m JOIN meisa.segments s ON s.id = m.segment_id
         WHERE s.name = 'everyone'
           AND NOT EXISTS (SELECT 1 FROM meisa.messages y WHERE y.broadcast_id = b.id AND y.contact_id = m.contact_id))
  FROM meisa.broadcasts b LEFT JOIN meisa.messages x ON x.broadcast_id = b.id
 WHERE b.name = :'name' GROUP BY b.id;
SQL
}
verdict() {  # verdict WHAT MEMBERS MESSAGES DISTINCT MISSING
  if [ "$2" = "$3" ] && [ "$3" = "$4" ] && [ "$5" = 0 ]; then
    echo "  $1: $2 members, $3 messages, $4 contacts, $5 missing: exactly one each (ok)"
  else
    echo "  $1: $2 members, $3 messages, $4 contacts, $5 missing: NOT one each (FAILED)"; failed=1
  fi
}
failed=0

echo "== setup: $contacts contacts in segment 'everyone', a marketing template with a topic"
psql -d bench -c "CREATE EXTENSION meisa"
psql -d bench -v n="$contacts" <<'SQL'
INSERT INTO meisa.contacts (email, external_id, first_name, custom_fields)
  SELECT 'c' || i || '@example.com', 'u' || i, 'Ann', '{"plan": "pro"}' FROM generate_series(1, :n) i;
INSERT INTO meisa.topics (name) VALUES ('product-updates');
INSERT INTO meisa.templates (key, kind, subject, text, html, topic) VALUES
  ('launch', 'marketing', 'Big news, {{first_name}}',
   'Hello {{first_name}}, version 2 is out. Leave these mails: {{unsubscribe_url}}',
   '<p>Hello {{first_name}}, version 2 is out.</p><p><a href="{{unsubscribe_url}}">Leave these mails</a></p>',
   'product-updates');
INSERT INTO meisa.segments (name, conditions) VALUES ('everyone', '{"field": "custom_fields.plan", "eq": "pro"}');
-- the same rows, rendered beforehand, for the plain INSERT ... SELECT
CREATE TABLE prerendered AS
  SELECT c.id AS contact_id, c.email AS to_email, 'Big news, ' || c.first_name AS subject,
         'Hello ' || c.first_name || ', version 2 is out. Leave these mails: ' AS text,
         '<p>Hello ' || c.first_name || ', version 2 is out.</p><p><a href="">Leave these mails</a></p>' AS html,
         '<' || md5(c.id::text) || '.' || c.id || '@meisa.local>' AS message_id
    FROM meisa.contacts c;
VACUUM ANALYZE;
SQL

if [[ $parts == *1* ]]; then
  echo "== 1. queueing a broadcast to $contacts contacts"
  t0=$(now_ms)
  psql -d bench -c "INSERT INTO meisa.messages (contact_id, to_email, kind, template_key, subject, text, html, message_id, topic, broadcast_id)
    SELECT contact_id, to_email, 'marketing', 'launch', subject, text, html, message_id, 'product-updates', 0 FROM prerendered"
  t1=$(now_ms)
  plain=$(( t1 - t0 ))
  psql -d bench -c "TRUNCATE meisa.messages" -c "VACUUM ANALYZE meisa.messages"
  psql -d bench -c "INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('b1', 'launch', 'everyone')" \
    -c "SELECT meisa_schedule_broadcast('b1')"
  t0=$(now_ms)
  queue_loop b1
  t1=$(now_ms)
  ours=$(( t1 - t0 ))
  read -r m n d miss < <(check_one b1)
  verdict "b1" "$m" "$n" "$d" "$miss"
  ratio=$(echo "scale=2; $ours / $plain" | bc -l)
  echo "  plain INSERT ... SELECT of $contacts rendered rows: $(echo "scale=1; $plain / 1000" | bc -l) s"
  echo "  meisa broadcast, $contacts messages queued:        $(echo "scale=1; $ours / 1000" | bc -l) s  ($(( contacts * 1000 / ours )) messages/s)"
  echo "  ratio meisa / plain: ${ratio}x  (targets: < 60 s, <= 2x)"
  [ "$ours" -lt 60000 ] || { echo "  over 60 s (FAILED)"; failed=1; }
  (( $(echo "$ratio <= 2" | bc -l) )) || { echo "  over 2x (FAILED)"; failed=1; }
fi

if [[ $parts == *2* ]]; then
  echo "== 2. kill -9 of the postmaster while a broadcast to $contacts contacts is queued"
  psql -d bench -c "INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('b2', 'launch', 'everyone')" \
    -c "SELECT meisa_schedule_broadcast('b2')"
  ( queue_loop b2 >/dev/null 2>&1 || true ) &
  loop=$!
  # wait for a third of it, then kill
  while :; do
    q=$(psql -d bench -At -c "SELECT queue_cursor FROM meisa.broadcasts WHERE name = 'b2'" 2>/dev/null || echo 0)
    [ "${q:-0}" -ge $(( contacts / 3 )) ] && break
    sleep 0.2
  done
  pid=$(head -1 "$data/postmaster.pid")
  kill -9 "$pid"
  wait "$loop" || true
  pkill -9 -f "postgres: .*bench" 2>/dev/null || true
  sleep 1
  echo "  killed at cursor $q; restarting"
  as_pg "$bindir/pg_ctl" -D "$data" -l "$data/log" -w start \
    -o "-p $bench_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp -c synchronous_commit=off -c shared_buffers=256MB" >/dev/null
  queue_loop b2
  read -r m n d miss < <(check_one b2)
  verdict "b2 after kill -9 and restart" "$m" "$n" "$d" "$miss"
  bad=$(psql -d bench -At -c "SELECT count(*) FROM meisa.check_invariants()")
  echo "  meisa.check_invariants(): $bad violations"
  [ "$bad" = 0 ] || failed=1
fi

if [[ $parts == *3* ]]; then
  echo "== 3. two concurrent meisa_run_due callers on one broadcast"
  psql -d bench -c "INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('b3', 'launch', 'everyone')" \
    -c "SELECT meisa_schedule_broadcast('b3')"
  queue_loop b3 >/dev/null & a=$!
  queue_loop b3 >/dev/null & b=$!
  wait "$a"; wait "$b"
  read -r m n d miss < <(check_one b3)
  verdict "b3 with two callers" "$m" "$n" "$d" "$miss"
fi
exit $failed
