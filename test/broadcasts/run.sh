#!/usr/bin/env bash
# test/broadcasts/run.sh [--bindir DIR] [--quick]: live tests of broadcasts,
# run by scripts/test.sh after meisa is installed for the PostgreSQL in DIR
# (as root; PostgreSQL on 127.0.0.1:26492, SMTP on 26493, one after the
# other):
#   crash.sh  kill -9 of the postmaster (and of the backend) while one client
#             queues a broadcast batch by batch: every audience contact gets
#             exactly one message (--quick: 20,000 contacts, 1 crash; without
#             it: 200,000 contacts, 5 crashes)
#   live.py   broadcasts delivered by the worker to the SMTP sink
#             (test/delivery/smtp_sink.py): List-Unsubscribe tokens of the
#             received mail leave one topic (60 characters) or all marketing
#             mail (44), a left topic's next broadcast is suppressed
# Prints "N passed, M failed" last; exits non-zero on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bindir=/usr/lib/postgresql/15/bin
quick=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --bindir=*) bindir=${1#*=}; shift ;;
    --quick) quick=(--quick); shift ;;
    *) bindir=$1; shift ;;
  esac
done
passed=0; failed=0; failing=()
for part in crash live; do
  log=/tmp/meisa-broadcasts-$part.log
  start=$(date +%s)
  if [ $part = crash ]; then
    bash "$here/crash.sh" --bindir "$bindir" "${quick[@]}" 2>&1 | tee "$log"
  else
    /usr/bin/python3 "$here/live.py" "$bindir" 2>&1 | tee "$log"
  fi
  rc=${PIPESTATUS[0]}
  line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
  else
    p=0; f=1
  fi
  [ $rc -ne 0 ] && [ "$f" -eq 0 ] && f=1
  passed=$((passed + p)); failed=$((failed + f))
  [ "$f" -gt 0 ] && failing+=("$part")
  echo "-- $part: $p passed, $f failed in $(( $(date +%s) - start )) s"
done
[ ${#failing[@]} -gt 0 ] && echo "failing parts: ${failing[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
