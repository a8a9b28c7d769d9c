#!/usr/bin/env bash
# test/grants/run.sh [--bindir DIR] [--quick]: privilege sets across
# databases and dumps, on two throwaway clusters (127.0.0.1:26483 and
# :26484, data under /tmp).  CREATE EXTENSION creates no role; a set given
# with meisa.grant holds in that database only; pg_dump + pg_restore into a
# fresh cluster carry the grants (fresh 1.3 installs, and 1.2 installs
# updated to 1.3 with their meisa_app / meisa_reader roles).
# Prints "N passed, M failed"; exits non-zero on failure.  Run as root.
set -uo pipefail
bindir=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --quick) shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/meisa-test-grants.XXXXXX)
chmod 755 "$work"; chown postgres: "$work"
as_pg() { runuser -u postgres -- "$@"; }
stop_all() {
  for c in src dst; do as_pg "$bindir/pg_ctl" -D "$work/$c" -m immediate stop >/dev/null 2>&1; done
  rm -rf "$work"
}
trap stop_all EXIT

passed=0; failed=0
check() {	# check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1";
  else failed=$((failed + 1)); echo "FAIL $1: expected [$2], got [$3]"; fi
}
start() {	# start NAME PORT
  as_pg "$bindir/initdb" -D "$work/$1" -A trust -U postgres >/dev/null || return 1
  as_pg "$bindir/pg_ctl" -D "$work/$1" -l "$work/$1.log" -w \
    -o "-p $2 -k $work -c listen_addresses=127.0.0.1" start >/dev/null
}
q() {	# q PORT DB [ROLE] SQL...: first column(s), errors as "ERROR: ..."
  local port=$1 db=$2; shift 2
  as_pg "$bindir/psql" -h 127.0.0.1 -p "$port" -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@" 2>&1 | sed 's/^psql:[^ ]* //'
}
S=26483; D=26484
start src $S || { echo "FAIL source cluster starts"; echo "0 passed, 1 failed"; exit 1; }
start dst $D || { echo "FAIL target cluster starts"; echo "0 passed, 1 failed"; exit 1; }

# 1. a fresh 1.3 install creates no role
q $S postgres -c "CREATE DATABASE shop" -c "CREATE DATABASE other" >/dev/null
before=$(q $S postgres -c "SELECT count(*) FROM pg_roles")
q $S shop -c "CREATE EXTENSION meisa" >/dev/null
q $S other -c "CREATE EXTENSION meisa" >/dev/null
check "CREATE EXTENSION meisa creates no role" "$before" "$(q $S postgres -c "SELECT count(*) FROM pg_roles")"
check "no meisa_* role exists after CREATE EXTENSION" 0 "$(q $S postgres -c "SELECT count(*) FROM pg_roles WHERE rolname LIKE 'meisa%'")"

# 2. the DBA's own roles get the sets in one database
q $S shop -c "CREATE ROLE shop_app LOGIN; CREATE ROLE shop_reader LOGIN; CREATE ROLE shop_admin LOGIN" \
  -c "SELECT meisa.grant('shop_app', 'app'), meisa.grant('shop_reader', 'reader'), meisa.grant('shop_admin', 'admin')" >/dev/null
check "app: meisa_upsert works in the granted database" true \
  "$(q $S shop -U shop_app -c "SELECT meisa_upsert('{\"email\": \"jane@example.com\", \"external_id\": \"u1\"}')->>'created'")"
check "app: cannot read meisa.contacts" "ERROR:  permission denied for table contacts" \
  "$(q $S shop -U shop_app -c "SELECT count(*) FROM meisa.contacts")"
check "app: has nothing in another database of the cluster" "ERROR:  permission denied for function meisa_upsert" \
  "$(q $S other -U shop_app -c "SELECT meisa_upsert('{\"email\": \"jane@example.com\"}')")"
q $S shop -U shop_admin -c "INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('welcome', 'marketing', 'Hi', 'Hello')" >/dev/null
check "admin: wrote a template" 1 "$(q $S shop -U shop_admin -c "SELECT count(*) FROM meisa.templates")"
check "reader: reads a view" 0 "$(q $S shop -U shop_reader -c "SELECT count(*) FROM meisa.unsubscribed_emails")"

# 3. a 1.2 install updated to 1.3 keeps its roles, and its grants dump too
q $S postgres -c "CREATE DATABASE legacy" >/dev/null
q $S legacy -c "CREATE EXTENSION meisa VERSION '1.2'" -c "CREATE ROLE legacy_app LOGIN IN ROLE meisa_app" >/dev/null
up=$(q $S legacy -c "ALTER EXTENSION meisa UPDATE" 2>&1)
check "1.2 -> 1.3 warns that no roles are created and names meisa.grant" 1 \
  "$(echo "$up" | grep -c "meisa 1.3 creates no roles")"
check "1.2 -> 1.3: a member of meisa_app still calls the API" true \
  "$(q $S legacy -U legacy_app -c "SELECT meisa_upsert('{\"email\": \"old@example.com\"}')->>'created'")"

# 4. dump both databases, restore into a fresh cluster
as_pg "$bindir/pg_dumpall" -h 127.0.0.1 -p $S --roles-only -f "$work/roles.sql"
for db in shop legacy; do
  as_pg "$bindir/pg_dump" -h 127.0.0.1 -p $S -Fc -f "$work/$db.dump" $db
  check "pg_dump $db" 0 $?
  check "the dump of $db carries grants to the privilege sets' roles" 1 \
    "$(as_pg "$bindir/pg_restore" -f - "$work/$db.dump" | grep -cE '^GRANT ALL ON FUNCTION public\.meisa_upsert\(payload jsonb\) TO (shop_app|meisa_app);')"
done
# (the roles file creates postgres too, which exists: not ON_ERROR_STOP)
as_pg "$bindir/psql" -h 127.0.0.1 -p $D -X -q -d postgres -f "$work/roles.sql" >/dev/null 2>&1
for db in shop legacy; do
  q $D postgres -c "CREATE DATABASE $db" >/dev/null
  as_pg "$bindir/pg_restore" -h 127.0.0.1 -p $D -d $db "$work/$db.dump" >"$work/restore-$db.log" 2>&1
  check "pg_restore $db into a fresh cluster exits 0" 0 $?
done
check "restored: app calls meisa_upsert" false \
  "$(q $D shop -U shop_app -c "SELECT meisa_upsert('{\"email\": \"jane@example.com\", \"external_id\": \"u1\"}')->>'created'")"
check "restored: app still cannot read meisa.contacts" "ERROR:  permission denied for table contacts" \
  "$(q $D shop -U shop_app -c "SELECT count(*) FROM meisa.contacts")"
check "restored: admin reads the template" welcome "$(q $D shop -U shop_admin -c "SELECT key FROM meisa.templates")"
check "restored: reader reads a view" 0 "$(q $D shop -U shop_reader -c "SELECT count(*) FROM meisa.unsubscribed_emails")"
check "restored: reader cannot call the API" "ERROR:  permission denied for function meisa_upsert" \
  "$(q $D shop -U shop_reader -c "SELECT meisa_upsert('{\"email\": \"x@example.com\"}')")"
check "restored 1.2 -> 1.3: a member of meisa_app calls the API" false \
  "$(q $D legacy -U legacy_app -c "SELECT meisa_upsert('{\"email\": \"old@example.com\"}')->>'created'")"
check "restored: ACLs of every meisa object equal the source's" \
  "$(q $S shop -c "SELECT md5(string_agg(relname || coalesce(relacl::text, ''), ',' ORDER BY relname)) FROM pg_class WHERE relnamespace = 'meisa'::regnamespace")" \
  "$(q $D shop -c "SELECT md5(string_agg(relname || coalesce(relacl::text, ''), ',' ORDER BY relname)) FROM pg_class WHERE relnamespace = 'meisa'::regnamespace")"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
