#!/usr/bin/env bash
# test/hardening/memory.sh [--bindir DIR] [--quick] [--calls N]
#	Memory: a private cluster with meisa preloaded, the automations of the
#	stress database, then memory.py: 1,000,000 meisa_upsert calls in one
#	backend (--quick: 20,000) while pg_backend_memory_contexts is sampled;
#	the total must not grow after the warm-up.
source "$(dirname "$0")/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"
if [ "$QUICK" = 1 ]; then CALLS=20000; else CALLS=1000000; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --calls) CALLS=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
NAME=memory
PORT=26472
DIR=$WORK_ROOT/$NAME
echo "== memory: $CALLS meisa_upsert calls in one backend (bindir $BINDIR)"
secret_file "$WORK_ROOT/$NAME.key" memory-secret
pg_start $NAME $PORT "shared_preload_libraries = 'meisa'" "meisa.secret_file = '$WORK_ROOT/$NAME.key'" \
  "meisa.unsubscribe_base_url = 'https://meisa.test/u/'" "synchronous_commit = off" \
  || { verdict "cluster starts" false; finish; }
as_pg "$BINDIR/createdb" -h "$DIR" -p $PORT memory
q $NAME memory -f "$HARD_DIR/sql/stress_setup.sql" >/dev/null || { verdict "schema loads" false; finish; }
out=$WORK_ROOT/memory.txt
/usr/bin/python3 "$HARD_DIR/memory.py" --host "$DIR" --port $PORT --db memory --calls "$CALLS" >"$out" 2>&1
grep -avE '^(ok     |FAILED |[0-9]+ passed)' "$out"   # the verdicts are re-counted below
while read -r line; do
  case "$line" in
    "ok     "*) verdict "${line#ok     }" true ;;
    "FAILED "*) verdict "${line#FAILED }" false ;;
  esac
done < <(grep -aE '^(ok     |FAILED )' "$out")
grep -aqE '^[0-9]+ passed' "$out" || verdict "memory.py completes" false
c=$(crash_lines "$DIR/server.log" | wc -l)
verdict "memory: no crash in the server log" "$([ "$c" = 0 ] && echo true || echo false)"
finish
