#!/usr/bin/env bash
# scripts/setup.sh: installs what meisa needs on Debian 12 (build tools,
# PostgreSQL 15 server + headers + contrib, libcurl, aiosmtpd, IPC::Run for
# the TAP tests' PostgreSQL::Test::Utils), then builds
# meisa and installs it into the system's PostgreSQL 15.  Safe to run twice.
# Run as root (or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (sudo bash $0)" >&2; exit 1; }

pkgs=(make gcc rsync procps postgresql-15 postgresql-client-15 postgresql-server-dev-15
      libcurl4-openssl-dev python3 python3-aiosmtpd python3-psycopg2 openssl ca-certificates valgrind bc
      libipc-run-perl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== building meisa"
make -s -j2 PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
echo "== meisa installed into $(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)"
