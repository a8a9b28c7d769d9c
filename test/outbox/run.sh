#!/usr/bin/env bash
# test/outbox/run.sh [--bindir DIR] [--quick]: live-server tests of the
# sequence runner, run by scripts/test.sh after meisa is installed for the
# PostgreSQL in DIR: concurrent_run_due.sh (several sessions calling
# meisa_run_due over the same enrolments at once; 5,000 enrolments with
# --quick, 20,000 otherwise).  Prints "N passed, M failed" last.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bindir=/usr/lib/postgresql/15/bin
n=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --quick) n=5000; shift ;;
    *) bindir=$1; shift ;;
  esac
done
passed=0; failed=0
if BINDIR=$bindir bash "$here/concurrent_run_due.sh" "$n" 4; then
  passed=$((passed + 1))
else
  failed=$((failed + 1))
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
