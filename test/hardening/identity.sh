#!/usr/bin/env bash
# test/hardening/identity.sh [--bindir DIR] [--quick] [--duration S]
#	Contact identity under concurrency: two pgbench clients on a private
#	cluster (test/hardening/sql/identity_setup.sql), each call wrapped so
#	that an error is recorded (idrace.errors) instead of aborting a client.
#	- self: contact self1 switches its email between sc-a and sc-b
#	  (meisa_upsert, and meisa_track naming it by both keys): no call fails.
#	- keys: users 1..3 with external_id rx<n> and emails r<n> / r<n>-alt,
#	  given with and without the external_id, and deleted now and then:
#	  no unique index error escapes, the only failures are the documented
#	  identity conflict (23505 "email ... belongs to another contact").
#	Each part runs S seconds (default 20; --quick: 5).
source "$(dirname "$0")/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"
if [ "$QUICK" = 1 ]; then DURATION=5; else DURATION=20; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
NAME=identity
PORT=26482
DIR=$WORK_ROOT/$NAME
echo "== identity: 2 clients, $DURATION s per part (bindir $BINDIR)"
pg_start $NAME $PORT "synchronous_commit = off" || { verdict "cluster starts" false; finish; }
as_pg "$BINDIR/createdb" -h "$DIR" -p $PORT identity
q $NAME identity -f "$HARD_DIR/sql/identity_setup.sql" >/dev/null || { verdict "schema loads" false; finish; }

# The documented identity conflict of the keys part: another contact has the email.
DOCUMENTED="(sqlstate = '23505' AND message ~ '^email \"r[0-9](-alt)?@race\\.test\" belongs to another contact\$')"

# Runs one part: run_part NAME; prints the calls and the errors by message.
run_part() {
  local part=$1 out=$WORK_ROOT/identity-$1.txt calls
  as_pg "$BINDIR/pgbench" -n -h "$DIR" -p $PORT -c 2 -j 2 -T "$DURATION" \
    -f "$HARD_DIR/pgbench/identity_$part.sql" identity >"$out" 2>&1
  verdict "identity $part: pgbench ran without client errors" \
    "$([ $? = 0 ] && ! grep -qE "aborted|ERROR" "$out" && echo true || echo false)" \
    "$(grep -E "aborted|ERROR" "$out" | head -2)"
  calls=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
  echo "   $part: ${calls:-?} calls, $(q $NAME identity -c "SELECT count(*) FROM idrace.errors WHERE part = '$part'") errors"
  # the documented conflict counted apart, then the first other failures
  q $NAME identity -c "SELECT '   ' || count(*) || ' x documented identity conflict (23505 email ... belongs to another contact)'
                         FROM idrace.errors WHERE part = '$part' AND $DOCUMENTED HAVING count(*) > 0"
  q $NAME identity -c "SELECT '   ' || count(*) || ' x ' || op || ' ' || sqlstate || ' ' || min(message) || ' / ' || coalesce(min(detail), '')
                         FROM idrace.errors WHERE part = '$part' AND NOT $DOCUMENTED
                        GROUP BY op, sqlstate, regexp_replace(message, '\"[^\"]*\"', '', 'g')
                        ORDER BY count(*) DESC LIMIT 6"
}

run_part self
n=$(q $NAME identity -c "SELECT count(*) FROM idrace.errors WHERE part = 'self'")
verdict "identity self: no call failed" "$([ "$n" = 0 ] && echo true || echo false)" "$n errors"
n=$(q $NAME identity -c "SELECT count(*) FROM meisa.contacts WHERE external_id = 'self1' AND email IN ('sc-a@race.test', 'sc-b@race.test')")
verdict "identity self: self1 is one contact with one of its two emails" "$([ "$n" = 1 ] && echo true || echo false)"

run_part keys
n=$(q $NAME identity -c "SELECT count(*) FROM idrace.errors WHERE part = 'keys' AND message LIKE 'duplicate key value%'")
verdict "identity keys: no unique index error escaped" "$([ "$n" = 0 ] && echo true || echo false)" "$n errors"
n=$(q $NAME identity -c "SELECT count(*) FROM idrace.errors WHERE part = 'keys' AND NOT $DOCUMENTED")
verdict "identity keys: every failure is the documented identity conflict" "$([ "$n" = 0 ] && echo true || echo false)" "$n others"

c=$(crash_lines "$DIR/server.log" | wc -l)
verdict "identity: no crash in the server log" "$([ "$c" = 0 ] && echo true || echo false)"
finish
