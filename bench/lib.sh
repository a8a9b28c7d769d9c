# bench/lib.sh: shared start-up of the benchmark scripts (sourced).
# bench_cluster PORT NAME: uses the binaries in $BINDIR when set (e.g.
# /usr/lib/postgresql/15/bin after `make install`), else those of
# scripts/devcheck.sh's prefix (run devcheck once first), starts a private cluster on 127.0.0.1:PORT with
# data in /tmp/meisa-bench-NAME, creates database "bench", defines as_pg and
# psql, and stops the cluster when the script exits.
bench_cluster() {
  local port=$1 name=$2
  src=$(cd "$(dirname "${BASH_SOURCE[1]}")/.." && pwd)
  bindir=${BINDIR:-/tmp/meisa-dev/$(echo "$src" | tr '/' '_')/pg/usr/lib/postgresql/15/bin}
  [ -x "$bindir/postgres" ] || { echo "no $bindir/postgres: run scripts/devcheck.sh first or set BINDIR" >&2; exit 1; }
  bench_port=$port
  data=/tmp/meisa-bench-$name
  work=$(mktemp -d "/tmp/meisa-bench-$name-scripts.XXXXXX")
  chmod 755 "$work"
  as_pg() { runuser -u postgres -- "$@"; }
  psql() { as_pg "$bindir/psql" -h 127.0.0.1 -p "$bench_port" -X -q -v ON_ERROR_STOP=1 "$@"; }
  bench_stop() { as_pg "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true; rm -rf "$work"; }
  trap bench_stop EXIT
  as_pg "$bindir/pg_ctl" -D "$data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$data"
  as_pg "$bindir/initdb" -D "$data" -A trust >/dev/null
  as_pg "$bindir/pg_ctl" -D "$data" -l "$data/log" -w start \
    -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=/tmp -c synchronous_commit=off -c shared_buffers=256MB" >/dev/null
  psql -d postgres -c "CREATE DATABASE bench"
}
