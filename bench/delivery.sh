#!/usr/bin/env bash
# bench/delivery.sh [--bindir BINDIR | BINDIR]: delivery benchmark of meisa
# (see bench/delivery_bench.py): messages/s into a local SMTP sink with
# connection reuse, and end-to-end latency from a committing
# meisa_trigger_email to receipt (median and p99 over 1,000 messages).
# Run as root after meisa is installed for BINDIR (default $PGBIN, else
# /usr/lib/postgresql/15/bin).  Uses 127.0.0.1:26450 (PostgreSQL) and 26455
# (SMTP).  BENCH_MESSAGES / BENCH_LATENCY_MESSAGES change the counts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bindir=${PGBIN:-/usr/lib/postgresql/15/bin}
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --bindir=*) bindir=${1#*=}; shift ;;
    *) bindir=$1; shift ;;
  esac
done
exec /usr/bin/python3 "$here/delivery_bench.py" "$bindir"
