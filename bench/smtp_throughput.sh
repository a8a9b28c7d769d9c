#!/usr/bin/env bash
# bench/smtp_throughput.sh [--bindir BINDIR | BINDIR]: meisa's delivery
# worker against Postfix's smtp-source into the same Postfix smtp-sink (see
# bench/smtp_throughput.py): smtp-source -d -s C -m N -l SIZE (messages/s),
# then the worker delivering N pre-queued messages of the same size with
# meisa.smtp_connections = C, the ratio, for C = 4 and 1; then the
# commit-to-receipt latency (median, p99) into the aiosmtpd sink.  Run as
# root (inside a test box: it uses 127.0.0.1:26470-26472) after meisa is
# installed for BINDIR (default $PGBIN, else /usr/lib/postgresql/15/bin).
# Installs postfix (for smtp-sink/smtp-source) and python3-aiosmtpd when
# missing.  BENCH_MESSAGES, BENCH_SIZE, BENCH_CONNECTIONS ("4 1"),
# BENCH_BATCH, BENCH_LATENCY_MESSAGES change the run.  Safe to run twice.
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
need=()
[ -x /usr/sbin/smtp-sink ] && [ -x /usr/sbin/smtp-source ] || need+=(postfix)
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || need+=(python3-aiosmtpd)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null \
    || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y "${need[@]}" >/dev/null; }
fi
exec /usr/bin/python3 "$here/smtp_throughput.py" "$bindir"
