#!/usr/bin/env bash
# test/delivery/run.sh [--bindir BINDIR | BINDIR] [--quick] [--only NAMES]: live delivery
# tests of meisa against a real SMTP server (aiosmtpd) and a private cluster
# with meisa preloaded (PostgreSQL on 127.0.0.1:26450, SMTP on 26455).  Run as
# root, after meisa is built and installed for the PostgreSQL in BINDIR
# (default $PGBIN, else /usr/lib/postgresql/15/bin; for scripts/devcheck.sh's
# private prefix pass /tmp/meisa-dev/<checkout>/pg/usr/lib/postgresql/15/bin).
# --quick is accepted for scripts/test.sh; the suite takes about two minutes.
# --only NAMES (comma-separated) runs the tests whose names start with
# test_NAME, e.g. --only stall (SMTP on 26458 is the hostile peer).
# Prints "N passed, M failed" last; exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bindir=${PGBIN:-/usr/lib/postgresql/15/bin}
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --bindir=*) bindir=${1#*=}; shift ;;
    --quick) shift ;;
    --only) export MEISA_DELIVERY_ONLY=$2; shift 2 ;;
    --only=*) export MEISA_DELIVERY_ONLY=${1#*=}; shift ;;
    *) bindir=$1; shift ;;
  esac
done
exec /usr/bin/python3 "$here/run.py" "$bindir"
