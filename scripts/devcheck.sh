#!/usr/bin/env bash
# scripts/devcheck.sh [test ...]: developer check of the working tree without
# touching the system's PostgreSQL: copies PostgreSQL 15 into a private,
# relocated prefix, builds and installs meisa there (as the postgres user) and
# runs pg_regress/pg_isolation_regress against it.  With test names, only
# those pg_regress tests run (and no isolation tests unless ISOLATION=... is set).
# TAP=1 runs the TAP tests t/*.pl too (make installcheck's last part), on
# nodes of the private prefix's PostgreSQL.
# Several checkouts can use it at once: each gets its own prefix under /tmp.
# MEISA_ASSERT=1 builds with -DUSE_ASSERT_CHECKING (Assert() live, freed
# memory clobbered) in a prefix of its own, so both builds can coexist.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
name=$(echo "$src" | tr '/' '_')
copt=()
if [ "${MEISA_ASSERT:-0}" = 1 ]; then
  name=${name}_assert
  copt=("COPT=-DUSE_ASSERT_CHECKING")
fi
base=/tmp/meisa-dev/$name
pg=$base/pg
bindir=$pg/usr/lib/postgresql/15/bin
if [ ! -x "$bindir/postgres" ]; then
  mkdir -p "$pg/usr/lib/postgresql" "$pg/usr/share/postgresql"
  cp -a /usr/lib/postgresql/15 "$pg/usr/lib/postgresql/"
  cp -a /usr/share/postgresql/15 "$pg/usr/share/postgresql/"
fi
mkdir -p "$base/build"
rsync -a --delete --exclude .git --exclude tmp_check --exclude tmp_check_iso \
  --exclude results --exclude output_iso "$src/" "$base/build/"
chown -R postgres: "$base"
chmod 755 /tmp/meisa-dev "$base"
args=()
if [ $# -gt 0 ]; then args+=("REGRESS=$*"); [ -n "${ISOLATION:-}" ] || args+=("ISOLATION="); fi
[ -n "${ISOLATION:-}" ] && args+=("ISOLATION=$ISOLATION")
[ "${TAP:-0}" = 1 ] || args+=("TAP_TESTS=")
cd "$base/build"
runuser -u postgres -- make -s -j2 install DESTDIR="$pg" "${copt[@]}" >/dev/null
set +e
runuser -u postgres -- make -s check-temp bindir="$bindir" "${args[@]}"
rc=$?
set -e
rm -rf "$src/results" "$src/output_iso"
[ -d results ] && cp -r results "$src/results"
[ -d output_iso ] && cp -r output_iso "$src/output_iso"
for f in regression.diffs output_iso/regression.diffs; do
  [ -s "$f" ] && { echo "---- $f (copied to $src)"; head -c 20000 "$f"; }
done
exit $rc
