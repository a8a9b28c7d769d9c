#!/usr/bin/env bash
# test/hardening/run.sh [--bindir DIR] [--quick] [--only stress,identity,fuzz,memory,dump,upgrade,workerpath,secrets,valgrind,asan]
#	The hardening checks of meisa, each on its own throwaway cluster (ports
#	26470-26479, 26482 and 26486-26489, loopback): stress.sh (8-client load +
#	kill -9 crash loop + amcheck), identity.sh (two clients racing on contact
#	identity), fuzz.sh (hostile input), memory.sh (backend memory over many
#	upserts), dump.sh (pg_dump/pg_restore and the 1.0 -> 1.3 upgrade),
#	upgrade.sh (same catalog for a fresh 1.3 and every update path; no
#	planted operator or function runs during install/update), workerpath.sh (search_path attack on the delivery worker),
#	secrets.sh (the token key and SMTP password read from files, never
#	readable by other roles, preloaded or not; inline values refused), valgrind.sh
#	(pg_regress suite against a server under valgrind memcheck; 8 tests with
#	--quick, under a minute; the whole suite + isolation specs without it;
#	skipped when valgrind is not installed).
#	--only asan adds the sanitizer build (asan.sh).  --quick: 10 s load, 1
#	crash, 2 x 5 s of identity races, 3,000 fuzz inputs, 20,000 upserts (about
#	2 minutes).  Without it: 60 s load, 5 crashes, 2 x 20 s of identity
#	races, 100,000 fuzz inputs,
#	1,000,000 upserts.  Ends with "N passed, M failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
args=(); only="stress identity fuzz memory dump upgrade workerpath secrets valgrind"
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) args+=("$1" "$2"); shift 2 ;;
    --quick) args+=("$1"); shift ;;
    --only) only=${2//,/ }; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
# one hardening run at a time (fixed ports, shared /tmp/meisa-hardening)
exec 9>/tmp/meisa-hardening.lock
if ! flock -n 9; then
  echo "waiting for another hardening run to finish (/tmp/meisa-hardening.lock)"
  flock -w 3600 9 || { echo "lock not obtained"; echo "0 passed, 1 failed"; exit 1; }
fi
export MEISA_HARDENING_LOCKED=1
passed=0; failed=0; failing=()
for part in $only; do
  log=/tmp/meisa-hardening-$part.log
  start=$(date +%s)
  bash "$here/$part.sh" "${args[@]}" 2>&1 | tee "$log"
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
