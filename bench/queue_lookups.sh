#!/usr/bin/env bash
# bench/queue_lookups.sh [seconds] [N]: three lookups whose cost must not grow
# with the tables (default N = 100,000), each run with pgbench (one client,
# prepared statements, so the plans are the kept generic/custom ones):
#  idem   meisa_trigger_email with a new idempotency_key when N messages
#         already carry one (its lookup of (trigger_key, idempotency_key),
#         index messages_idempotency_idx; with "IS NOT DISTINCT FROM" it read
#         the whole index);
#  claim  the delivery worker's claim of a batch of 100 due messages (the
#         statement of src/delivery/delivery.c, rolled back) with a backlog of N queued
#         messages queued at one time (index messages_due_idx (next_attempt_at,
#         id); with (next_attempt_at) alone it read and sorted all N);
#  poll   the application's poll SELECT ... FROM meisa.unsubscribed_emails
#         WHERE changed_at > now() - 1 hour among N contacts, 2% of them
#         unsubscribed (index contacts_unsubscribed_idx; without it, every
#         contact is read).
# Private cluster on 127.0.0.1:${PORT:-26461} with the binaries of
# scripts/devcheck.sh's prefix (run devcheck once first).  Run as root.
set -euo pipefail
secs=${1:-10}
n=${2:-100000}
. "$(dirname "$0")/lib.sh"
port=${PORT:-26461}
bench_cluster "$port" lookups
psql -d bench <<SQL
SET client_min_messages = warning;
CREATE EXTENSION meisa;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES
  ('reset', 'transactional', 'Reset', 'Code {{data.code}}'), ('news', 'marketing', 'News', 'News');
INSERT INTO meisa.contacts (email, subscribed, unsubscribe_reason, unsubscribed_at)
  SELECT 'c' || i || '@example.com', i % 50 <> 0, CASE WHEN i % 50 = 0 THEN 'unsubscribed' END,
         CASE WHEN i % 50 = 0 THEN now() - i * interval '1 minute' END
    FROM generate_series(1, $n) i;
-- N sent transactional messages with an idempotency key, N queued marketing
-- messages (one run of meisa_run_due: the same next_attempt_at)
INSERT INTO meisa.messages (contact_id, to_email, kind, template_key, subject, text, status,
                            message_id, trigger_key, idempotency_key, sent_at, attempts)
  SELECT i, 'c' || i || '@example.com', 'transactional', 'reset', 'Reset', 'x', 'sent',
         '<t' || i || '@x>', 'reset', 'order-' || i, now(), 1
    FROM generate_series(1, $n) i;
INSERT INTO meisa.messages (contact_id, to_email, kind, template_key, subject, text, status,
                            message_id, next_attempt_at)
  SELECT i, 'c' || i || '@example.com', 'marketing', 'news', 'News', 'x', 'queued',
         '<q' || i || '@x>', now() - interval '1 minute'
    FROM generate_series(1, $n) i;
SELECT setval('meisa.messages_id_seq', (SELECT max(id) FROM meisa.messages));
CREATE SEQUENCE bench_key;
VACUUM ANALYZE;
SQL
cat > "$work/idem.sql" <<'SQL'
SELECT meisa_trigger_email('reset', jsonb_build_object('email', 'c' || (1 + nextval('bench_key') % 1000) || '@example.com', 'idempotency_key', 'new-' || currval('bench_key'), 'data_variables', jsonb_build_object('code', 1)));
SQL
cat > "$work/claim.sql" <<'SQL'
BEGIN;
WITH c AS (SELECT x.id FROM meisa.messages x WHERE x.status = 'queued' AND x.next_attempt_at <= pg_catalog.now() AND (x.from_address IS NOT NULL OR true) AND (x.kind <> 'marketing' OR true) ORDER BY x.next_attempt_at, x.id LIMIT 100 FOR UPDATE SKIP LOCKED) UPDATE meisa.messages m SET status = 'sending', attempts = m.attempts + 1, lease_until = pg_catalog.now() + 60 * interval '1 second', updated_at = pg_catalog.now() FROM c WHERE m.id = c.id RETURNING m.id;
ROLLBACK;
SQL
cat > "$work/poll.sql" <<'SQL'
SELECT email, reason, changed_at FROM meisa.unsubscribed_emails WHERE changed_at > now() - interval '1 hour';
SQL
chmod 644 "$work"/*.sql
tps() {
  as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$port" -n -M prepared -T "$secs" -c 1 -j 1 -f "$1" bench 2>&1 |
    sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
printf 'N = %s\n%-8s %12s\n' "$n" case tps
for c in idem claim poll; do
  psql -d bench -c "CHECKPOINT"
  printf '%-8s %12.0f\n' "$c" "$(tps "$work/$c.sql")"
done
