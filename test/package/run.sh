#!/usr/bin/env bash
# test/package/run.sh [--bindir DIR] [--quick]: the Debian package.  Builds
# postgresql-15-meisa from a clean copy of the tree with dpkg-buildpackage
# (debian/: pg_buildext, dh --with pgxs: an out-of-tree PGXS build whose own
# test step runs the pg_regress and isolation suites against a throwaway
# cluster), installs it with dpkg, and checks a fresh cluster
# (127.0.0.1:26485, data under /tmp) loads meisa from the package's files;
# then runs the autopkgtest scripts (debian/tests/installcheck: pg_regress and
# isolation; debian/tests/tap: the TAP tests t/*.pl) against the installed
# package.  Afterwards the package is removed and the tree's own
# build installed again (make install), as the other suites expect.
# Prints "N passed, M failed"; exits non-zero on failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
bindir=/usr/lib/postgresql/15/bin
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) bindir=$2; shift 2 ;;
    --quick) shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
port=26485
work=$(mktemp -d /tmp/meisa-test-package.XXXXXX)
data=$work/cluster/data
as_pg() { runuser -u postgres -- "$@"; }
restore_tree_install() {
  as_pg "$bindir/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
  if dpkg-query -W -f='${Status}' postgresql-15-meisa 2>/dev/null | grep -q "ok installed"; then
    dpkg -r postgresql-15-meisa >/dev/null 2>&1
  fi
  make -s -C "$top" install PG_CONFIG="$bindir/pg_config" >/dev/null
  rm -rf "$work"
}
trap restore_tree_install EXIT

passed=0; failed=0
check() {	# check NAME EXPECTED ACTUAL
  if [ "$2" = "$3" ]; then passed=$((passed + 1)); echo "ok   $1";
  else failed=$((failed + 1)); echo "FAIL $1: expected [$2], got [$3]"; fi
}
finish() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; exit $?; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; finish; }

# a clean copy: the files git tracks (and new ones it does not ignore)
mkdir -p "$work/pkg/meisa"
(cd "$top" && { git ls-files -co --exclude-standard 2>/dev/null || find . -path ./.git -prune -o -type f -print; } \
  | rsync -a --files-from=- . "$work/pkg/meisa/")
chmod 755 "$work"
(cd "$work/pkg/meisa" && dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1
rc=$?
check "dpkg-buildpackage exits 0" 0 "$rc"
[ $rc -eq 0 ] || { tail -60 "$work/build.log"; finish; }
check "the build's pg_regress suite passed" 1 "$(grep -c 'All [0-9]* tests passed' "$work/build.log" | awk '{print ($1>=1)}')"
check "the build's isolation suite ran" 1 "$(grep -c 'isolation install-check' "$work/build.log" | awk '{print ($1>=1)}')"
check "no test failed in the build" 0 "$(grep -cE 'tests? failed' "$work/build.log")"
deb=$(ls "$work"/pkg/postgresql-15-meisa_*_*.deb 2>/dev/null | head -1)
check "postgresql-15-meisa .deb built" 1 "$([ -n "$deb" ] && echo 1 || echo 0)"
[ -n "$deb" ] || fail "no .deb to install"
check "the package ships meisa.so, meisa.control and every SQL script" \
  "$(cd "$top" && ls meisa--*.sql | wc -l) 1 1" \
  "$(dpkg-deb -c "$deb" | grep -c 'extension/meisa--.*\.sql$') $(dpkg-deb -c "$deb" | grep -c '/lib/meisa\.so$') $(dpkg-deb -c "$deb" | grep -c 'extension/meisa\.control$')"

# install it over the tree's own build: dpkg now owns the files
rm -f "$($bindir/pg_config --pkglibdir)/meisa.so"
dpkg -i "$deb" >"$work/dpkg.log" 2>&1
check "dpkg -i installs the package" 0 "$?"
check "dpkg owns meisa.so" 1 "$(dpkg -S "$($bindir/pg_config --pkglibdir)/meisa.so" 2>/dev/null | grep -c postgresql-15-meisa)"

mkdir -p "$data"; chown -R postgres: "$work/cluster"
as_pg "$bindir/initdb" -D "$data" -A trust -U postgres >/dev/null || fail "initdb"
as_pg "$bindir/pg_ctl" -D "$data" -l "$work/cluster/log" -w \
  -o "-p $port -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null || { cat "$work/cluster/log"; fail "the cluster starts"; }
psql() { as_pg "$bindir/psql" -h 127.0.0.1 -p $port -X -q -At -d postgres "$@"; }
check "CREATE EXTENSION meisa from the package" "$(grep -oP "default_version = '\K[^']+" "$top/meisa.control")" \
  "$(psql -c 'CREATE EXTENSION meisa' -c "SELECT extversion FROM pg_extension WHERE extname = 'meisa'" 2>&1)"
check "an upsert works on the packaged build" '{"id": 1, "changed": ["email", "subscribed"], "created": true}' \
  "$(psql -c "SELECT meisa_upsert('{\"email\": \"pkg@example.com\"}')" 2>&1)"
as_pg "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1

# the autopkgtest scripts, as autopkgtest runs them: against the installed package
(cd "$work/pkg/meisa" && sh debian/tests/installcheck) >"$work/autopkgtest.log" 2>&1
rc=$?
check "debian/tests/installcheck passes against the installed package" 0 "$rc"
[ $rc -eq 0 ] || tail -40 "$work/autopkgtest.log"
(cd "$work/pkg/meisa" && sh debian/tests/tap) >"$work/autopkgtest-tap.log" 2>&1
rc=$?
check "debian/tests/tap passes against the installed package" 0 "$rc"
check "debian/tests/tap ran every TAP test, each ok" "$(cd "$top" && ls t/*.pl | wc -l)" \
  "$(grep -cE '^t/[^ ]+\.pl \.+ ok$' "$work/autopkgtest-tap.log")"
[ $rc -eq 0 ] || tail -40 "$work/autopkgtest-tap.log"
finish
