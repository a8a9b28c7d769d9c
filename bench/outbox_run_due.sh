#!/usr/bin/env bash
# bench/outbox_run_due.sh [N]: meisa_run_due over N (default 100000) due
# enrolments on a private cluster (127.0.0.1:26430, data under /tmp), with
# the binaries in $BINDIR, else those of scripts/devcheck.sh's prefix (run it
# once first), else /usr/lib/postgresql/15/bin (meisa installed there).
# Each enrolment renders a ~2 KB HTML + text marketing template with the
# contact's data, queues the message and schedules the next step.  Prints
# messages queued per second, total seconds, and the ratio to a plain-SQL
# baseline (one INSERT ... SELECT of pre-rendered rows + one UPDATE) run on
# the same data.  Target: 100,000 enrolments in under 20 s.
set -euo pipefail
N=${1:-100000}
PORT=26430
src=$(cd "$(dirname "$0")/.." && pwd)
bindir=${BINDIR:-/tmp/meisa-dev/$(echo "$src" | tr '/' '_')/pg/usr/lib/postgresql/15/bin}
[ -x "$bindir/postgres" ] || bindir=/usr/lib/postgresql/15/bin
[ -x "$bindir/postgres" ] || { echo "no PostgreSQL binaries in $bindir"; exit 1; }
data=$(mktemp -d /tmp/meisa-outbox-bench.XXXXXX)
chown postgres: "$data"
pg() { runuser -u postgres -- "$@"; }
cleanup() { pg "$bindir/pg_ctl" -D "$data/db" -m fast stop >/dev/null 2>&1 || true; rm -rf "$data"; }
trap cleanup EXIT
pg "$bindir/initdb" -D "$data/db" -A trust -U postgres >/dev/null
pg "$bindir/pg_ctl" -D "$data/db" -l "$data/log" -w \
  -o "-p $PORT -k $data -c listen_addresses=127.0.0.1 -c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min" start >/dev/null
psql() { pg "$bindir/psql" -h "$data" -p $PORT -U postgres -X -q -v ON_ERROR_STOP=1 "$@"; }
psql -d postgres -c "CREATE DATABASE bench"
psql -d bench <<SQL
SET client_min_messages = warning;
CREATE EXTENSION meisa;
INSERT INTO meisa.templates (key, kind, subject, html, text, "from") VALUES
 ('b1', 'marketing', 'Welcome to Acme, {{first_name}}!',
  '<!doctype html><html><head><meta charset="utf-8"><title>Welcome</title></head><body style="font-family:sans-serif">'
  || '<table width="100%"><tr><td><h1>Hi {{first_name}} {{last_name}},</h1>'
  || '<p>Thanks for joining Acme on the <b>{{custom_fields.plan}}</b> plan.</p>'
  || repeat('<p>Acme helps teams ship faster: plan, track and review work in one place. Start with a project, invite your team and connect your repository.</p>', 10)
  || '{{#tags}}<span class="tag">{{.}}</span>{{/tags}}'
  || '<p><a href="https://acme.example/start?u={{id}}">Get started</a></p>'
  || '<p style="font-size:small"><a href="{{unsubscribe_url}}">Unsubscribe</a></p></td></tr></table></body></html>',
  'Hi {{first_name}}, thanks for joining Acme ({{custom_fields.plan}}). Start: https://acme.example/start?u={{id}}  Unsubscribe: {{unsubscribe_url}}',
  'Acme <hello@acme.example>'),
 ('b2', 'marketing', 'Tips', NULL, 'tips', NULL);
INSERT INTO meisa.sequences (name, exit_conditions) VALUES ('bench', '{"has_tag": "activated"}');
INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
SELECT id, 1, interval '0', 'b1' FROM meisa.sequences UNION ALL SELECT id, 2, interval '1 day', 'b2' FROM meisa.sequences;
INSERT INTO meisa.contacts (email, first_name, last_name, custom_fields, tags)
SELECT 'user' || i || '@example.com', 'First' || i, 'Last' || i,
       jsonb_build_object('plan', CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END, 'logins', i % 17),
       ARRAY['beta', 'cohort' || (i % 12)]
  FROM generate_series(1, $N) i;
INSERT INTO meisa.enrollments (contact_id, sequence_id, next_run_at)
SELECT c.id, s.id, '2030-01-07 10:00+00' FROM meisa.contacts c, meisa.sequences s;
SQL
psql -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"

# plain PostgreSQL baseline: the same rows written without meisa's logic
base=$(psql -d bench -At <<'SQL'
BEGIN;
SELECT extract(epoch FROM clock_timestamp()) \gset t0_
INSERT INTO meisa.messages (contact_id, to_email, kind, template_key, subject, html, text, message_id, enrollment_id, sequence_id, step_position)
SELECT e.contact_id, c.email, 'marketing', 'b1', 'Welcome to Acme, ' || c.first_name || '!', t.html, t.text,
       '<' || md5(e.id::text) || '.' || e.id || '@acme.example>', e.id, e.sequence_id, 1
  FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id, meisa.templates t WHERE t.key = 'b1';
UPDATE meisa.enrollments SET current_step = 1, next_run_at = next_run_at + interval '1 day', updated_at = now();
SELECT extract(epoch FROM clock_timestamp()) - :t0_extract;
ROLLBACK;
SQL
)
psql -d bench -c "VACUUM ANALYZE" -c "CHECKPOINT"

out=$(psql -d bench -At <<'SQL'
SELECT extract(epoch FROM clock_timestamp()) \gset t0_
SELECT meisa_run_due('2030-01-07 10:00+00') \gset r_
SELECT extract(epoch FROM clock_timestamp()) - :t0_extract AS secs, :r_meisa_run_due AS advanced,
       (SELECT count(*) FROM meisa.messages WHERE status = 'queued') AS queued,
       (SELECT count(*) FROM meisa.enrollments WHERE current_step = 1 AND last_error IS NULL) AS at_step_1;
SQL
)
IFS='|' read -r secs advanced queued at1 <<<"$out"
awk -v n="$N" -v s="$secs" -v a="$advanced" -v q="$queued" -v b="$base" -v c="$at1" 'BEGIN {
  printf "meisa_run_due over %d due enrolments: %d advanced, %d messages queued, %d enrolments at step 1\n", n, a, q, c;
  printf "total: %.2f s, %.0f messages queued per second (target: 100000 in < 20 s)\n", s, q / s;
  printf "plain SQL baseline (INSERT ... SELECT + UPDATE, no rendering/rules): %.2f s; ratio meisa/plain = %.1fx\n", b, s / b;
}'
