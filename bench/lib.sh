# bench/lib.sh: shared start-up and helpers of the benchmark scripts (sourced).
# bench_tps FILE [pgbench options]: tps of pgbench running FILE for $secs s
# with $clients clients (exits on failure); bench_max A B: the larger;
# bench_payload KEY CUSTOM_FIELDS: the upsert payload expression of contact
# KEY (c<KEY>@example.com, u<KEY>, first name Ann) shared by every side.
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

bench_tps() {
  local f=$1 out t
  shift
  out=$(as_pg "$bindir/pgbench" -h 127.0.0.1 -p "$bench_port" -n "$@" -T "$secs" -c "$clients" -j "$clients" \
        -f "$f" bench 2>&1) || true
  t=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
  [ -n "$t" ] || { echo "pgbench $f failed:" >&2; echo "$out" | tail -5 >&2; exit 1; }
  echo "$t"
}
bench_max() { echo "if ($1 > $2) $1 else $2" | bc -l; }
bench_payload() {
  echo "jsonb_build_object('email', 'c' || $1 || '@example.com', 'external_id', 'u' || $1, 'first_name', 'Ann', 'custom_fields', $2)"
}
