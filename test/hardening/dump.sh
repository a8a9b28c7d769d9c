#!/usr/bin/env bash
# test/hardening/dump.sh [--bindir DIR] [--quick]
#	Dumps and upgrades.  A source cluster gets a database using meisa
#	(contacts, events, activity, automations and their runs, a sequence with
#	steps, templates, enrolments, messages, notifications), installed the
#	upgrade way (CREATE EXTENSION meisa VERSION '1.0' + ALTER EXTENSION
#	UPDATE) with data written before and after the update, rows in every
#	meisa table.  pg_dump -Fc of it is restored into a fresh cluster five
#	ways, each into its own database, each exiting 0 with no error: a plain
#	pg_restore, pg_restore -1 (one transaction: the way into the delivery
#	worker's database), pg_restore -j 4 (parallel: the tables' data load in
#	any order), psql reading a plain-text pg_dump, and pg_restore with
#	session_replication_role = replica.  Then: every meisa
#	table holds exactly the same rows (per-table row count and checksum),
#	the restore fired no automation and queued no mail, every identity
#	sequence continues after the restored ids (new rows in every table, no
#	duplicate key), and meisa keeps working: a restored enrolment resumes
#	with its next step, a new contact fires the automations.
source "$(dirname "$0")/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"
SRC=dump-src; DST=dump-dst
SRC_PORT=26473; DST_PORT=26474
secret_file "$WORK_ROOT/dump.key" dump-secret
CONF=("meisa.secret_file = '$WORK_ROOT/dump.key'" "meisa.unsubscribe_base_url = 'https://meisa.test/u/'")
echo "== dump and restore (bindir $BINDIR)"
pg_start $SRC $SRC_PORT "${CONF[@]}" || { verdict "source cluster starts" false; finish; }
pg_start $DST $DST_PORT "${CONF[@]}" || { verdict "target cluster starts" false; finish; }
as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$SRC" -p $SRC_PORT app
as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$DST" -p $DST_PORT app

# 1.0 first, some data, then the update, then the stress fixtures and load
out=$(q $SRC app 2>&1 <<'SQL'
CREATE EXTENSION meisa VERSION '1.0';
SELECT meisa_upsert('{"email": "old@example.com", "external_id": "old-1", "first_name": "Olde"}') IS NOT NULL;
ALTER EXTENSION meisa UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'meisa';
SQL
)
verdict "source: 1.0 installed, used, updated to 1.3" "$(echo "$out" | tail -1 | grep -qx 1.3 && echo true || echo false)" "$(echo "$out" | tail -2 | tr '\n' ' ')"
q $SRC app -f "$HARD_DIR/sql/stress_setup.sql" >/dev/null 2>&1 || { verdict "source: fixtures load" false; finish; }
out=$(q $SRC app 2>&1 <<'SQL'
-- segments: members, flips (the second round changes plans) and clock checks (vip tags)
INSERT INTO meisa.segments (name, conditions) VALUES
  ('dump_paying', '{"field": "custom_fields.plan", "in": ["standard", "pro"]}'),
  ('dump_recent_vip', '{"all": [{"has_tag": "vip"}, {"field": "created_at", "within_last": "30 days"}]}');
SELECT count(stress.upsert(g, 1 + g % 5, g % 10, g % 3 > 0)) FROM generate_series(1, 200) g;
SELECT count(stress.upsert(g, 3 + g % 2, g % 10, true)) FROM generate_series(1, 200) g;
SELECT count(stress.track(g, 50 + g, g)) FROM generate_series(1, 200) g;
SELECT count(stress.tag(g, 1, true)) FROM generate_series(1, 50) g;
SELECT count(stress.mail(g, 1)) FROM generate_series(1, 100) g;
SELECT count(stress.subscription(g, true)) FROM generate_series(1, 10) g;
-- topics, choices and a broadcast to a segment (queued by meisa_run_due)
INSERT INTO meisa.topics (name) VALUES ('dump-news');
INSERT INTO meisa.templates (key, kind, subject, text, topic) VALUES ('dump_news', 'marketing', 'News {{first_name}}', 'n', 'dump-news');
SELECT count(meisa_set_topic(email, 'dump-news', false)) FROM (SELECT email FROM meisa.contacts ORDER BY id LIMIT 20) c;
INSERT INTO meisa.broadcasts (name, template, segment) VALUES ('dump_b', 'dump_news', 'dump_paying');
SELECT meisa_schedule_broadcast('dump_b');
SELECT meisa_run_due() IS NOT NULL;
SELECT count(*) FROM stress.errors;
SQL
)
verdict "source: workload ran without errors" "$(echo "$out" | tail -1 | grep -qx 0 && echo true || echo false)" \
  "$(q $SRC app -c "SELECT op || ' ' || sqlstate || ' ' || message FROM stress.errors LIMIT 3" 2>&1 | tr '\n' ' ')"

# Per-table row counts and checksums of every meisa table (ordered by primary key).
SNAP_SQL=$(cat <<'SQL'
DO $$
DECLARE t regclass; n bigint; h text; maxid text;
BEGIN
  CREATE TEMP TABLE snap (tab text, n bigint, h text, maxid text);
  FOR t IN SELECT c.oid FROM pg_class c WHERE c.relnamespace = 'meisa'::regnamespace AND c.relkind = 'r' ORDER BY c.relname LOOP
    EXECUTE format('SELECT count(*), md5(coalesce(string_agg(x::text, E''\n'' ORDER BY x::text), '''')) FROM %s x', t) INTO n, h;
    maxid := NULL;
    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = t AND attname = 'id' AND NOT attisdropped) THEN
      EXECUTE format('SELECT max(id)::text FROM %s', t) INTO maxid;
    END IF;
    INSERT INTO snap VALUES (t::text, n, h, maxid);
  END LOOP;
END $$;
SELECT tab || '|' || n || '|' || h || '|' || coalesce(maxid, '') FROM snap ORDER BY tab;
SQL
)
q $SRC app -c "$SNAP_SQL" >"$WORK_ROOT/dump-src.snap" 2>&1
echo "   source tables (table|rows|checksum|max id):"; sed 's/^/     /' "$WORK_ROOT/dump-src.snap"
# every meisa table holds rows: a table the workload leaves empty proves nothing
empty=$(awk -F'|' '$2 == 0 { print $1 }' "$WORK_ROOT/dump-src.snap" | tr '\n' ' ')
n=$(grep -c '^meisa\.' "$WORK_ROOT/dump-src.snap")
verdict "source: every meisa table holds rows" "$([ -z "$empty" ] && [ "$n" -ge 11 ] && echo true || echo false)" "$n tables${empty:+, empty: $empty}"

# dump and restore
as_pg "$BINDIR/pg_dump" -h "$WORK_ROOT/$SRC" -p $SRC_PORT -Fc -f "$WORK_ROOT/$SRC/app.dump" app
verdict "pg_dump -Fc of the source database" "$([ -s "$WORK_ROOT/$SRC/app.dump" ] && echo true || echo false)"
n=$(as_pg "$BINDIR/pg_restore" -l "$WORK_ROOT/$SRC/app.dump" | grep -c "SEQUENCE SET meisa ")
verdict "the dump carries every meisa identity sequence position (1.1 and later register them)" "$([ "$n" -ge 10 ] && echo true || echo false)" "$n SEQUENCE SET entries"
# control: a 1.0 installation does not register them
as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$SRC" -p $SRC_PORT v10
q $SRC v10 -c "CREATE EXTENSION meisa VERSION '1.0'" -c "SELECT meisa_upsert('{\"email\": \"a@b.co\"}')" >/dev/null 2>&1
as_pg "$BINDIR/pg_dump" -h "$WORK_ROOT/$SRC" -p $SRC_PORT -Fc -f "$WORK_ROOT/$SRC/v10.dump" v10
echo "   control: a meisa 1.0 dump has $(as_pg "$BINDIR/pg_restore" -l "$WORK_ROOT/$SRC/v10.dump" | grep -c "SEQUENCE SET meisa ") SEQUENCE SET entries for meisa"
# Checks a restored database: verify_restore DB LABEL
verify_restore() {
  local db=$1 label=$2 out before
  q $DST "$db" -c "$SNAP_SQL" >"$WORK_ROOT/dump-dst-$db.snap" 2>&1
  if diff "$WORK_ROOT/dump-src.snap" "$WORK_ROOT/dump-dst-$db.snap" >"$WORK_ROOT/dump-$db.diff"; then
    verdict "$label: restore gives back every row of every meisa table (no more, no less)" true "$(wc -l <"$WORK_ROOT/dump-src.snap") tables"
  else
    verdict "$label: restore gives back every row of every meisa table (no more, no less)" false
    sed 's/^/     /' "$WORK_ROOT/dump-$db.diff"
  fi
  out=$(q $DST "$db" -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'" 2>&1)
  verdict "$label: restored extension version is 1.3" "$([ "$out" = 1.3 ] && echo true || echo false)" "$out"

  # identity sequences continue after the restored ids
  out=$(q $DST "$db" 2>&1 <<'SQL'
  SELECT string_agg(s.seq::text || ' last_value=' || coalesce(s.last, 0) || ' max(id)=' || s.maxid, ', ')
    FROM (SELECT c.oid::regclass AS seq,
                 (SELECT last_value FROM pg_sequences ps WHERE ps.schemaname = 'meisa' AND ps.sequencename = c.relname) AS last,
                 (xpath('/row/m/text()', query_to_xml(format('SELECT coalesce(max(id), 0) AS m FROM %s', t.oid::regclass), false, true, '')))[1]::text::bigint AS maxid
            FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')
            JOIN pg_class t ON t.oid = d.refobjid
           WHERE c.relkind = 'S' AND c.relnamespace = 'meisa'::regnamespace) s
   WHERE coalesce(s.last, 0) < s.maxid;
SQL
  )
  verdict "$label: every identity sequence is at or beyond its table's max(id)" "$([ -z "$out" ] && echo true || echo false)" "$out"

  # meisa keeps working: new rows in every table, sequences resume, automations fire
  out=$(q $DST "$db" 2>&1 <<'SQL'
  SELECT (meisa_upsert('{"email": "after-restore@example.com", "external_id": "ar-1", "custom_fields": {"plan": "free"}}') ->> 'created');
  SELECT (meisa_upsert('{"email": "after-restore@example.com", "custom_fields": {"plan": "pro"}}') -> 'changed') IS NOT NULL;
  SELECT meisa_track('purchase', '{"email": "after-restore@example.com", "properties": {"amount": 500}, "event_id": "ar-ev"}') > 0;
  SELECT meisa_trigger_email('receipt', '{"email": "after-restore@example.com", "data_variables": {"order": 1}}') > 0;
  INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('after_restore', 'marketing', 'x', 'y');
  INSERT INTO meisa.sequences (name) VALUES ('after_restore_seq');
  INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'after_restore' FROM meisa.sequences WHERE name = 'after_restore_seq';
  INSERT INTO meisa.automations (name, trigger, actions) VALUES ('after_restore_rule', 'tag_added', '[{"add_tag": "z"}]');
  SELECT meisa_run_due(now() + interval '1 day') >= 0;
  SELECT 'new contact: ' || (SELECT string_agg(a.name, ',' ORDER BY a.name) FROM meisa.automation_runs r
           JOIN meisa.automations a ON a.id = r.automation_id JOIN meisa.contacts c ON c.id = r.contact_id
          WHERE c.email = 'after-restore@example.com' AND r.status = 'done');
  SELECT 'enrolled: ' || count(*) FROM meisa.enrollments e JOIN meisa.contacts c ON c.id = e.contact_id
   WHERE c.email = 'after-restore@example.com';
SQL
  )
  echo "$out" | sed 's/^/     /'
  verdict "$label: after restore: API calls and inserts into every configured table succeed" \
    "$(echo "$out" | grep -qiE "error|duplicate" && echo false || echo true)" "$(echo "$out" | grep -iE "error" | head -2)"
  verdict "$label: after restore: a new contact fires welcome, upgrade and big_spender" \
    "$(echo "$out" | grep -q "new contact: big_spender,upgrade,welcome" && echo true || echo false)"
  # restored enrolments resume: every contact enrolled before the dump got step 2 now
  out=$(q $DST "$db" -c "SELECT count(*) FROM meisa.enrollments e WHERE e.created_at < (SELECT min(created_at) FROM meisa.contacts WHERE email = 'after-restore@example.com') AND e.status = 'active' AND e.current_step < 2 AND e.sequence_id = (SELECT id FROM meisa.sequences WHERE name = 'onboarding')" 2>&1)
  before=$(q $DST "$db" -c "SELECT count(*) FROM meisa.messages WHERE step_position = 2" 2>&1)
  verdict "$label: after restore: restored enrolments resume (none left behind at step < 2; $before step-2 messages)" \
    "$([ "$out" = 0 ] && [ "${before:-0}" -gt 0 ] 2>/dev/null && echo true || echo false)" "$out left"
  out=$(q $DST "$db" -c "SELECT invariant || ': ' || violations FROM meisa.check_invariants()" 2>&1)
  verdict "$label: after restore: meisa.check_invariants() clean" "$([ -z "$out" ] && echo true || echo false)" "$out"
}

# The target cluster gets the source's roles first, as any restore into a
# new cluster does (roles are cluster-wide; the dump grants to meisa_app,
# meisa_admin and meisa_reader, kept from 1.0 by the update to 1.3).
as_pg "$BINDIR/pg_dumpall" -h "$WORK_ROOT/$SRC" -p $SRC_PORT --roles-only 2>/dev/null \
  | as_pg "$BINDIR/psql" -h "$WORK_ROOT/$DST" -p $DST_PORT -X -q -d postgres >/dev/null 2>&1
verdict "target: the source's roles restored (pg_dumpall --roles-only)" \
  "$([ "$(q $DST postgres -c "SELECT count(*) FROM pg_roles WHERE rolname IN ('meisa_app', 'meisa_admin', 'meisa_reader')" 2>&1)" = 3 ] && echo true || echo false)"

# 1. A plain pg_restore.  meisa's contacts triggers see pg_restore's
#    check_function_bodies = off and load the dumped rows as they are (no
#    second "created" change set, no automation, no mail).
as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$DST" -p $DST_PORT plain
as_pg "$BINDIR/pg_restore" -h "$WORK_ROOT/$DST" -p $DST_PORT -d plain --exit-on-error "$WORK_ROOT/$SRC/app.dump" \
  >"$WORK_ROOT/dump-restore-plain.log" 2>&1
rc=$?
verdict "plain pg_restore into a fresh cluster without errors" "$([ $rc = 0 ] && echo true || echo false)" "$(grep -m1 ERROR "$WORK_ROOT/dump-restore-plain.log")"
verify_restore plain "plain restore"

# 1b. pg_restore --single-transaction (the way into the worker's database).
as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$DST" -p $DST_PORT single
as_pg "$BINDIR/pg_restore" -h "$WORK_ROOT/$DST" -p $DST_PORT -d single -1 "$WORK_ROOT/$SRC/app.dump" \
  >"$WORK_ROOT/dump-restore-single.log" 2>&1
rc=$?
verdict "pg_restore -1 into a fresh database: exit 0, no error" \
  "$([ $rc = 0 ] && ! grep -qiE 'error' "$WORK_ROOT/dump-restore-single.log" && echo true || echo false)" \
  "exit $rc$(grep -m1 -iE 'error' "$WORK_ROOT/dump-restore-single.log" | sed 's/^/; /')"
verify_restore single "single-transaction restore"

# 2. pg_restore -j 4, the way a DBA restores a large dump, without
#    --exit-on-error: pg_restore then only warns about a failed COPY ("errors
#    ignored on restore") and exits 1, so exit status 0 and no "error:" line
#    are the checks.  pg_dump records no dependency between the data of an
#    extension's tables, so the workers load meisa's tables in any order
#    (events before contacts, automation_runs before automations).
as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$DST" -p $DST_PORT parallel
as_pg "$BINDIR/pg_restore" -h "$WORK_ROOT/$DST" -p $DST_PORT -d parallel -j 4 "$WORK_ROOT/$SRC/app.dump" \
  >"$WORK_ROOT/dump-restore-parallel.log" 2>&1
rc=$?
verdict "pg_restore -j 4 into a fresh database: exit 0, no error" \
  "$([ $rc = 0 ] && ! grep -qiE 'error' "$WORK_ROOT/dump-restore-parallel.log" && echo true || echo false)" \
  "exit $rc$(grep -m3 -iE 'error' "$WORK_ROOT/dump-restore-parallel.log" | sed 's/^/; /' | tr -d '\n')"
verify_restore parallel "parallel restore"

# 3. A plain-text dump read by psql (psql -f, psql < dump.sql).
as_pg "$BINDIR/pg_dump" -h "$WORK_ROOT/$SRC" -p $SRC_PORT -Fp -f "$WORK_ROOT/$SRC/app.sql" app
as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$DST" -p $DST_PORT plainsql
as_pg "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$WORK_ROOT/$DST" -p $DST_PORT -d plainsql \
  <"$WORK_ROOT/$SRC/app.sql" >"$WORK_ROOT/dump-restore-psql.log" 2>&1
rc=$?
verdict "psql < plain-text dump into a fresh database: exit 0, no error" \
  "$([ $rc = 0 ] && ! grep -qE 'ERROR' "$WORK_ROOT/dump-restore-psql.log" && echo true || echo false)" \
  "exit $rc$(grep -m1 ERROR "$WORK_ROOT/dump-restore-psql.log" | sed 's/^/; /')"
verify_restore plainsql "psql restore"

# 4. A restore with session_replication_role = replica (no trigger fires at all).
as_pg env PGOPTIONS="-c session_replication_role=replica" "$BINDIR/pg_restore" -h "$WORK_ROOT/$DST" -p $DST_PORT \
  -d app --exit-on-error "$WORK_ROOT/$SRC/app.dump" >"$WORK_ROOT/dump-restore.log" 2>&1
rc=$?
verdict "pg_restore with session_replication_role=replica without errors" "$([ $rc = 0 ] && echo true || echo false)" "$(grep -m1 ERROR "$WORK_ROOT/dump-restore.log")"
verify_restore app "replica restore"
finish
