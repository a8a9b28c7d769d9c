#!/usr/bin/env bash
# test/hardening/fuzz.sh [--bindir DIR] [--quick] [--count N] [--seed S]
#	Hostile input: starts a private cluster with meisa preloaded (the
#	worker sends the fuzzed messages to a local SMTP server, so MIME and
#	SMTP see them too), a UTF8 database "fuzz" and a SQL_ASCII database
#	"fuzz_ascii" (where invalid UTF-8 reaches meisa), and runs fuzz.py:
#	100,000 inputs in the long version, 3,000 with --quick.  Afterwards
#	checks that no delivered mail carries an injected header.
source "$(dirname "$0")/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"
if [ "$QUICK" = 1 ]; then COUNT=3000; else COUNT=100000; fi
SEED=${SEED:-$(date +%s)}
while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
NAME=fuzz
PORT=26471
SMTP_PORT=26476
DIR=$WORK_ROOT/$NAME
MAILDIR=$WORK_ROOT/fuzz-mail
rm -rf "$MAILDIR" "$MAILDIR.log"
echo "== fuzz: $COUNT inputs, seed $SEED (bindir $BINDIR)"
smtp_start $SMTP_PORT "$MAILDIR" || { verdict "smtp server starts" false; finish; }
secret_file "$WORK_ROOT/$NAME.key" fuzz-secret
pg_start $NAME $PORT \
  "shared_preload_libraries = 'meisa'" \
  "meisa.database = 'fuzz'" \
  "meisa.smtp_url = 'smtp://127.0.0.1:$SMTP_PORT'" \
  "meisa.from_address = 'Fuzz <fuzz@meisa.test>'" \
  "meisa.unsubscribe_base_url = 'https://fuzz.test/u/'" \
  "meisa.secret_file = '$WORK_ROOT/$NAME.key'" \
  "meisa.worker_naptime = 1" \
  "max_stack_depth = '2MB'" \
  || { verdict "cluster starts" false; finish; }
as_pg "$BINDIR/createdb" -h "$DIR" -p $PORT fuzz
as_pg "$BINDIR/createdb" -h "$DIR" -p $PORT -E SQL_ASCII -T template0 --locale=C fuzz_ascii
for db in fuzz fuzz_ascii; do
  q $NAME $db -c "SET client_min_messages = warning; CREATE EXTENSION meisa" \
    || { verdict "CREATE EXTENSION meisa in $db" false; finish; }
done
chmod 755 "$DIR"
out=$WORK_ROOT/fuzz-out
rm -rf "$out"; mkdir -p "$out"
/usr/bin/python3 "$HARD_DIR/fuzz.py" --host "$DIR" --port $PORT --db fuzz --ascii-db fuzz_ascii \
  --count "$COUNT" --seed "$SEED" --log "$DIR/server.log" --out "$out" >"$out/fuzz.txt" 2>&1
grep -avE '^(ok     |FAILED |[0-9]+ passed)' "$out/fuzz.txt"   # the verdicts are re-counted below
while read -r line; do
  case "$line" in
    "ok     "*) verdict "${line#ok     }" true ;;
    "FAILED "*) verdict "${line#FAILED }" false ;;
  esac
done < <(grep -aE '^(ok     |FAILED )' "$out/fuzz.txt")
grep -aqE '^[0-9]+ passed' "$out/fuzz.txt" || verdict "fuzz.py completes" false
[ -s "$out/findings.jsonl" ] && cp "$out/findings.jsonl" "$WORK_ROOT/fuzz-findings-$SEED.jsonl" \
  && echo "   findings kept in $WORK_ROOT/fuzz-findings-$SEED.jsonl"

# let the worker send what it can, then look at what arrived
sleep 3
inj=$(/usr/bin/python3 - "$MAILDIR" <<'PY'
import mailbox, sys
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
n = bad = 0
for m in box:
    n += 1
    if m.get_all("Bcc") or m.get_all("X-Injected") or "injected@evil.test" in (m.get("To", "") + m.get("Cc", "")) \
       or m.get_all("Subject") and len(m.get_all("Subject")) > 1:
        bad += 1
print(n, bad)
PY
)
read -r nmail nbad <<<"$inj"
echo "   mails delivered during the fuzz run: $nmail"
verdict "fuzz: no header injection in delivered mail" "$([ "${nbad:-1}" = 0 ] && echo true || echo false)" "$nbad injected"
c=$(crash_lines "$DIR/server.log" | wc -l)
verdict "fuzz: no crash in the server log (backends and worker)" "$([ "$c" = 0 ] && echo true || echo false)" "$c"
finish
