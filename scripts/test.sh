#!/usr/bin/env bash
# scripts/test.sh: the full test run.  Installs dependencies and meisa
# (scripts/setup.sh), then runs, as the postgres user against throwaway
# servers on loopback: the pg_regress suite and the isolation specs
# (make check-temp: --temp-instance), the TAP tests t/*.pl (make
# prove-tap: PostgreSQL::Test::Cluster nodes; the delivery worker's restart
# and crash recovery), then every live-server test script (test/*/run.sh:
# SMTP delivery, crash, fuzz, dump/upgrade ...).
# Ends with one line "N passed, M failed"; exits non-zero on any failure.
# Safe to run twice.  Run as root (or through sudo).
set -uo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
bash scripts/setup.sh || exit 1

bindir=/usr/lib/postgresql/15/bin
work=/tmp/meisa-test
rm -rf "$work"; mkdir -p "$work"
rsync -a --exclude .git --exclude tmp_check --exclude tmp_check_iso --exclude results \
  --exclude output_iso "$top/" "$work/src/"
chown -R postgres: "$work"

passed=0; failed=0; failures=()

echo "== pg_regress and isolation tests"
out=$work/installcheck.log
(cd "$work/src" && runuser -u postgres -- make -s check-temp TAP_TESTS= PG_CONFIG=$bindir/pg_config) >"$out" 2>&1
rc=$?
grep -aE '^(ok|not ok|test| )|\.\.\. ' "$out" | grep -E '\.\.\. |^ok|^not ok' || true
ok=$(grep -acE '\.\.\. +ok' "$out")
bad=$(grep -acE '\.\.\. +FAILED|\.\.\. +failed' "$out")
if [ $rc -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; tail -30 "$out"; fi
passed=$((passed + ok)); failed=$((failed + bad))
for d in "$work/src/regression.diffs" "$work/src/output_iso/regression.diffs"; do
  if [ -s "$d" ]; then echo "---- $d"; head -c 30000 "$d"; failures+=("regress"); fi
done

# each assertion of the TAP tests counts, as each check of a run.sh does
echo "== TAP tests (t/*.pl)"
tap=$work/tap.log
(cd "$work/src" && runuser -u postgres -- make -s prove-tap PROVE_FLAGS=-v PG_CONFIG=$bindir/pg_config) >"$tap" 2>&1
rc=$?
grep -aE '^(not )?ok [0-9]+|^t/.*\.pl |^Result: ' "$tap" || true
ok=$(grep -acE '^ok [0-9]+' "$tap")
bad=$(grep -acE '^not ok [0-9]+' "$tap")
# a script that dies or bails out stops before its plan: count it once
if [ $rc -ne 0 ] && [ "$bad" -eq 0 ]; then bad=1; tail -30 "$tap"; fi
passed=$((passed + ok)); failed=$((failed + bad))
[ $rc -ne 0 ] && failures+=("tap")

for t in "$top"/test/*/run.sh; do
  [ -f "$t" ] || continue
  name=$(basename "$(dirname "$t")")
  echo "== $name ($t)"
  log=$work/$name.log
  bash "$t" --bindir "$bindir" --quick >"$log" 2>&1
  rc=$?
  cat "$log" | tail -40
  line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    passed=$((passed + p)); failed=$((failed + f))
    [ $rc -ne 0 ] && [ "$f" -eq 0 ] && failed=$((failed + 1))
  else
    if [ $rc -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
  fi
  [ $rc -ne 0 ] && failures+=("$name")
done

echo
# each suite's failing checks again, last: a suite log is shown by its tail
# only, and a failure early in a long suite (stress, the first part of
# hardening) would otherwise be cut from the end of the output
for name in "${failures[@]}"; do
  if [ "$name" = regress ]; then
    echo "---- failing pg_regress/isolation tests ($work/installcheck.log):"
    grep -aE '\.\.\. +(FAILED|failed)' "$work/installcheck.log" | head -40
    continue
  fi
  if [ "$name" = tap ]; then
    echo "---- failing TAP tests ($work/tap.log; each script's log: $work/src/tmp_check/log/):"
    grep -aE '^not ok|^# +Failed test|^Dubious|^Bail out|Parse errors' "$work/tap.log" | head -40
    continue
  fi
  echo "---- failing checks of $name ($work/$name.log):"
  grep -aE '^(FAILED|FAIL |not ok)|violated:|^failing (checks|parts):' "$work/$name.log" | head -40
done
[ ${#failures[@]} -gt 0 ] && echo "failing suites: ${failures[*]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
