#!/usr/bin/env bash
# test/hardening/upgrade.sh [--bindir DIR] [--quick]
#	Install and update paths of meisa 1.3, on one throwaway cluster (port
#	26479, loopback), one database per variant:
#	1. Same catalog whatever the path: a fresh CREATE EXTENSION meisa
#	   (meisa--1.3.sql; then meisa.grant gives the three sets to the roles
#	   meisa_app, meisa_admin, meisa_reader that 1.2 created and its
#	   updates keep), CREATE ... VERSION '1.0' + UPDATE (the direct
#	   meisa--1.0--1.2.sql, then meisa--1.2--1.3.sql), VERSION '1.1' +
#	   UPDATE (meisa--1.1--1.2.sql + meisa--1.2--1.3.sql), VERSION '1.2' +
#	   UPDATE (meisa--1.2--1.3.sql) and VERSION '1.0' + UPDATE TO '1.1' +
#	   UPDATE TO '1.2' + UPDATE TO '1.3' (every script in turn) each get an
#	   ordered, OID-free description of everything meisa installed
#	   (sql/catalog_describe.sql: functions with identity arguments, result,
#	   SECURITY DEFINER, proconfig, ACLs, source checksum; relations,
#	   reloptions and ACLs; columns, types, defaults, identity, compression;
#	   constraints; indexes; triggers; view definitions line by line;
#	   sequences; pg_init_privs; extconfig/extcondition; dependencies; the
#	   meisa_* roles and their grants; comments).  The descriptions must be
#	   identical; a difference is printed with diff.
#	2. Install-time hardening: an unprivileged role with CREATE on the
#	   install schema plants an =(oid, regclass) operator, count(bigint),
#	   lag(integer, integer, integer), ->(jsonb, jsonb), btrim(text) and
#	   now() there, each recording a row (probe, phase, current_user) when
#	   run.  None may run during CREATE EXTENSION meisa (into public, and
#	   into a schema of its own: SCHEMA app), during ALTER EXTENSION meisa
#	   UPDATE from 1.0 (planted after 1.0 was installed, and before it) and
#	   from 1.2, nor when the views and check_invariants() are used
#	   afterwards.  Control:
#	   VERSION '1.0' + UPDATE TO '1.1' (the released, unqualified
#	   meisa--1.0--1.1.sql) does run the planted operator as the superuser,
#	   so the probes are real.
source "$(dirname "$0")/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"
C=upgrade; PORT=26479
echo "== install and update paths of 1.3 (bindir $BINDIR)"
pg_start $C $PORT || { verdict "cluster starts" false; finish; }
mk() { as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$C" -p $PORT "$1"; }

# ---------------------------------------------------------------- 1. catalogs
declare -A SETUP=(
  [fresh]="CREATE EXTENSION meisa; DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'meisa_app') THEN CREATE ROLE meisa_app NOLOGIN; CREATE ROLE meisa_admin NOLOGIN; CREATE ROLE meisa_reader NOLOGIN; END IF; END \$\$; SELECT meisa.grant('meisa_app', 'app'), meisa.grant('meisa_admin', 'admin'), meisa.grant('meisa_reader', 'reader');"
  [up10]="CREATE EXTENSION meisa VERSION '1.0'; ALTER EXTENSION meisa UPDATE;"
  [up11]="CREATE EXTENSION meisa VERSION '1.1'; ALTER EXTENSION meisa UPDATE;"
  [up12]="CREATE EXTENSION meisa VERSION '1.2'; ALTER EXTENSION meisa UPDATE;"
  [up10_11_12_13]="CREATE EXTENSION meisa VERSION '1.0'; ALTER EXTENSION meisa UPDATE TO '1.1'; ALTER EXTENSION meisa UPDATE TO '1.2'; ALTER EXTENSION meisa UPDATE TO '1.3';"
)
for v in fresh up10 up11 up12 up10_11_12_13; do
  mk "cat_$v"
  out=$(q $C "cat_$v" -c "${SETUP[$v]}" -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'" 2>&1 | tail -1)
  verdict "$v: ${SETUP[$v]} gives 1.3" "$([ "$out" = 1.3 ] && echo true || echo false)" "$out"
  q $C "cat_$v" -f "$HARD_DIR/sql/catalog_describe.sql" >"$WORK_ROOT/$C/catalog-$v.txt" 2>&1
done
verdict "fresh: catalog described" "$([ "$(wc -l <"$WORK_ROOT/$C/catalog-fresh.txt")" -gt 300 ] && ! grep -q ERROR "$WORK_ROOT/$C/catalog-fresh.txt" && echo true || echo false)" \
  "$(wc -l <"$WORK_ROOT/$C/catalog-fresh.txt") lines: $(cut -d'|' -f1 "$WORK_ROOT/$C/catalog-fresh.txt" | sort | uniq -c | awk '{printf "%s %s, ", $1, $2}')"
for v in up10 up11 up12 up10_11_12_13; do
  if ! grep -q ERROR "$WORK_ROOT/$C/catalog-$v.txt" && diff -u "$WORK_ROOT/$C/catalog-fresh.txt" "$WORK_ROOT/$C/catalog-$v.txt" >"$WORK_ROOT/$C/catalog-$v.diff"; then
    verdict "$v: catalog identical to a fresh 1.3 install" true
  else
    verdict "$v: catalog identical to a fresh 1.3 install" false "diff fresh $v:"
    head -60 "$WORK_ROOT/$C/catalog-$v.diff" | sed 's/^/     /'
  fi
done
out=$(grep -c '^column|meisa.automation_stats|011|last_run|timestamp with time zone' "$WORK_ROOT/$C/catalog-fresh.txt")
verdict "fresh: meisa.automation_stats ends with last_run timestamptz (column 11)" "$([ "$out" = 1 ] && echo true || echo false)"

# ----------------------------------------------------- 2. planted functions
q $C postgres -c "CREATE ROLE upg_evil NOLOGIN" >/dev/null 2>&1
# plant DB SCHEMA [noarrow]: the probes, created by upg_evil in SCHEMA
# (noarrow: without ->(jsonb, jsonb), which makes the released 1.0 script
# fail: its view meisa.contact_activity takes 'old' in d.value -> 'old' as
# jsonb then)
plant() {
  local db=$1 schema=$2 arrow=true want=8
  [ "${3:-}" = noarrow ] && { arrow=false; want=7; }
  q "$C" "$db" >/dev/null 2>&1 <<SQL
CREATE SCHEMA IF NOT EXISTS $schema;
GRANT CREATE, USAGE ON SCHEMA $schema TO upg_evil;
CREATE TABLE IF NOT EXISTS public.probe_hits (probe text, phase text, who text, super boolean);
GRANT INSERT ON public.probe_hits TO PUBLIC;
SET ROLE upg_evil;
CREATE FUNCTION $schema.probe_hit(text) RETURNS void LANGUAGE sql AS \$\$
  INSERT INTO public.probe_hits
  SELECT \$1, pg_catalog.current_setting('probe.phase', true), CURRENT_USER,
         (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER)
\$\$;
CREATE FUNCTION $schema.probe_eq(oid, regclass) RETURNS boolean LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM $schema.probe_hit('=(oid, regclass)');
  RETURN \$1 OPERATOR(pg_catalog.=) \$2::pg_catalog.oid;
END \$\$;
CREATE OPERATOR $schema.= (LEFTARG = oid, RIGHTARG = regclass, FUNCTION = $schema.probe_eq);
CREATE FUNCTION $schema.probe_count_sf(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM $schema.probe_hit('count(bigint)');
  RETURN \$1 OPERATOR(pg_catalog.+) 1;
END \$\$;
CREATE AGGREGATE $schema.count(bigint) (SFUNC = $schema.probe_count_sf, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION $schema.lag(integer, integer, integer) RETURNS integer LANGUAGE plpgsql WINDOW AS \$\$
BEGIN
  PERFORM $schema.probe_hit('lag(integer, integer, integer)');
  RETURN 0;
END \$\$;
CREATE FUNCTION $schema.probe_arrow(jsonb, jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM $schema.probe_hit('->(jsonb, jsonb)');
  RETURN NULL;
END \$\$;
DO \$\$ BEGIN IF $arrow THEN
  CREATE OPERATOR $schema.-> (LEFTARG = jsonb, RIGHTARG = jsonb, FUNCTION = $schema.probe_arrow);
ELSE
  DROP FUNCTION $schema.probe_arrow(jsonb, jsonb);
END IF; END \$\$;
CREATE FUNCTION $schema.btrim(text) RETURNS text LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM $schema.probe_hit('btrim(text)');
  RETURN pg_catalog.btrim(\$1);
END \$\$;
CREATE FUNCTION $schema.now() RETURNS timestamptz LANGUAGE plpgsql AS \$\$
BEGIN
  PERFORM $schema.probe_hit('now()');
  RETURN pg_catalog.now();
END \$\$;
RESET ROLE;
SQL
  local n
  n=$(q "$C" "$db" -c "SELECT count(*) FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace s ON s.oid OPERATOR(pg_catalog.=) p.pronamespace WHERE s.nspname OPERATOR(pg_catalog.=) '$schema' AND p.proowner OPERATOR(pg_catalog.=) 'upg_evil'::pg_catalog.regrole" 2>&1)
  [ "$n" = "$want" ] || { echo "   planting in $db.$schema failed ($n functions)"; return 1; }
}
# run DB PHASE SQL...: statements with probe.phase = PHASE
run() {
  local db=$1 phase=$2; shift 2
  q "$C" "$db" -c "SET probe.phase = '$phase'" "$@" 2>&1
}
# the update to 1.3's WARNING that it creates no roles (checked in sql/71_upgrade)
drop_role_warning() {
  grep -vE '^(WARNING:  meisa 1\.3 creates no roles|DETAIL:  Their grants are now ordinary grants|HINT:  Grant a privilege set to a role)'
}
# use DB PHASE: read every view, check the invariants, write through the API
use_views() {
  local db=$1 phase=$2
  run "$db" "$phase" -c "SET search_path = public, app" -c "
    INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('p_tpl', 'marketing', 'S {{first_name}}', 'T');
    INSERT INTO meisa.sequences (name) VALUES ('p_seq');
    INSERT INTO meisa.sequence_steps (sequence_id, position, template) SELECT id, 1, 'p_tpl' FROM meisa.sequences;
    INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template) SELECT id, 2, '1 day', 'p_tpl' FROM meisa.sequences;
    INSERT INTO meisa.automations (name, trigger, actions) VALUES ('p_rule', 'contact_created', '[{\"enroll\": \"p_seq\"}, {\"add_tag\": \"x\"}]');" \
    -c "SELECT meisa_upsert('{\"email\": \"probe@example.com\", \"first_name\": \"P\"}') IS NOT NULL" \
    -c "SELECT meisa_upsert('{\"email\": \"probe@example.com\", \"first_name\": \"Q\"}') IS NOT NULL" \
    -c "SELECT meisa_run_due() >= 0" \
    -c "SELECT count(*) FROM (SELECT * FROM meisa.automation_stats) x" \
    -c "SELECT count(*) FROM (SELECT * FROM meisa.sequence_funnel) x" \
    -c "SELECT count(*) FROM (SELECT * FROM meisa.contact_activity) x" \
    -c "SELECT count(*) FROM (SELECT * FROM meisa.message_stats) x" \
    -c "SELECT count(*) FROM (SELECT * FROM meisa.unsubscribed_emails) x" \
    -c "SELECT count(*) FROM meisa.check_invariants()" >/dev/null
}
# hits DB [PHASE-REGEX]: the probes that ran
hits() {
  q "$C" "$1" -c "SELECT coalesce(string_agg(DISTINCT probe || ' in ' || phase || ' as ' || who || CASE WHEN super THEN ' (superuser)' ELSE '' END, '; '), '') FROM public.probe_hits WHERE phase ~ '${2:-.}'" 2>&1
}

# a. fresh install into public with the probes planted before
mk p_fresh
plant p_fresh public || verdict "probes planted (p_fresh)" false
out=$(run p_fresh create-1.3 -c "CREATE EXTENSION meisa" -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'")
verdict "CREATE EXTENSION meisa with the probes planted in public" "$([ "$out" = 1.3 ] && echo true || echo false)" "$out"
use_views p_fresh use-1.3
out=$(hits p_fresh)
verdict "fresh 1.3 into public: no planted function or operator ran (install, views, API, invariants)" "$([ -z "$out" ] && echo true || echo false)" "$out"

# b. fresh install into a schema of its own (SCHEMA app, CREATE granted to upg_evil)
mk p_schema
plant p_schema app || verdict "probes planted (p_schema)" false
out=$(run p_schema create-1.3 -c "CREATE EXTENSION meisa SCHEMA app" -c "SELECT extnamespace::regnamespace::text || ' ' || extversion FROM pg_extension WHERE extname = 'meisa'")
verdict "CREATE EXTENSION meisa SCHEMA app with the probes planted in app" "$([ "$out" = "app 1.3" ] && echo true || echo false)" "$out"
n=$(q $C p_schema -c "SELECT count(*) FROM pg_proc WHERE pronamespace = 'app'::regnamespace AND proname LIKE 'meisa\_%'" 2>&1)
verdict "SCHEMA app: the 17 API functions are in app" "$([ "$n" = 17 ] && echo true || echo false)" "$n"
use_views p_schema use-1.3
out=$(hits p_schema)
verdict "fresh 1.3 into app: no planted function or operator ran" "$([ -z "$out" ] && echo true || echo false)" "$out"

# c. 1.0 installed, probes planted, ALTER EXTENSION meisa UPDATE (direct 1.0 -> 1.2, then 1.2 -> 1.3)
mk p_up10
q $C p_up10 -c "CREATE EXTENSION meisa VERSION '1.0'" >/dev/null 2>&1
plant p_up10 public || verdict "probes planted (p_up10)" false
out=$(run p_up10 update-1.0 -c "ALTER EXTENSION meisa UPDATE" -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'" | drop_role_warning)
verdict "1.0, probes planted, ALTER EXTENSION meisa UPDATE gives 1.3" "$([ "$out" = 1.3 ] && echo true || echo false)" "$out"
use_views p_up10 use-after-update
out=$(hits p_up10)
verdict "update 1.0 -> 1.3: no planted function or operator ran (update, views, API, invariants)" "$([ -z "$out" ] && echo true || echo false)" "$out"

# d. probes planted before CREATE EXTENSION meisa VERSION '1.0' (the released
#    1.0 script runs the operator and binds count(bigint) and lag(...) into
#    its views; shown, not judged), then UPDATE: from then on nothing
mk p_pre10
plant p_pre10 public noarrow || verdict "probes planted (p_pre10)" false
out=$(run p_pre10 create-1.0 -c "CREATE EXTENSION meisa VERSION '1.0'" -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'")
verdict "probes planted, CREATE EXTENSION meisa VERSION '1.0'" "$([ "$out" = 1.0 ] && echo true || echo false)" "$out"
echo "   (released 1.0 install script with the probes planted: $(hits p_pre10 create-1.0))"
out=$(run p_pre10 update-1.0 -c "ALTER EXTENSION meisa UPDATE" -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'" | drop_role_warning)
verdict "probes planted before 1.0, ALTER EXTENSION meisa UPDATE gives 1.3" "$([ "$out" = 1.3 ] && echo true || echo false)" "$out"
use_views p_pre10 use-after-update
out=$(hits p_pre10 '^(update|use)')
verdict "probes planted before 1.0: nothing ran during the update nor afterwards (views re-bound)" "$([ -z "$out" ] && echo true || echo false)" "$out"

# e. control: the released 1.0 -> 1.1 script does run the planted operator, as superuser
mk p_ctl
q $C p_ctl -c "CREATE EXTENSION meisa VERSION '1.0'" >/dev/null 2>&1
plant p_ctl public || verdict "probes planted (p_ctl)" false
run p_ctl update-1.0-1.1 -c "ALTER EXTENSION meisa UPDATE TO '1.1'" >/dev/null
out=$(hits p_ctl update-1.0-1.1)
verdict "control: UPDATE TO '1.1' (released meisa--1.0--1.1.sql) runs the planted =(oid, regclass) as superuser" \
  "$(echo "$out" | grep -q '=(oid, regclass) in update-1.0-1.1 as postgres (superuser)' && echo true || echo false)" "$out"
run p_ctl update-1.1-1.2 -c "ALTER EXTENSION meisa UPDATE TO '1.2'" >/dev/null
use_views p_ctl use-after-update
out=$(hits p_ctl '^(update-1.1-1.2|use)')
verdict "then UPDATE TO '1.2' (meisa--1.1--1.2.sql) and use: nothing ran" "$([ -z "$out" ] && echo true || echo false)" "$out"

# f. 1.2 installed, probes planted, ALTER EXTENSION meisa UPDATE (meisa--1.2--1.3.sql)
mk p_up12
q $C p_up12 -c "CREATE EXTENSION meisa VERSION '1.2'" >/dev/null 2>&1
plant p_up12 public || verdict "probes planted (p_up12)" false
out=$(run p_up12 update-1.2 -c "ALTER EXTENSION meisa UPDATE" -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'" | drop_role_warning)
verdict "1.2, probes planted, ALTER EXTENSION meisa UPDATE gives 1.3" "$([ "$out" = 1.3 ] && echo true || echo false)" "$out"
use_views p_up12 use-after-update
out=$(hits p_up12)
verdict "update 1.2 -> 1.3: no planted function or operator ran (update, views, API, invariants)" "$([ -z "$out" ] && echo true || echo false)" "$out"
finish
