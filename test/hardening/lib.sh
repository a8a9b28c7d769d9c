# test/hardening/lib.sh
#	Shared helpers of the hardening scripts (sourced, not run): option
#	parsing (--bindir, --quick), throwaway PostgreSQL clusters on loopback
#	run as the postgres user, a local SMTP server that stores mail in a
#	Maildir, psql wrappers, pass/fail accounting and cleanup of everything
#	a script started.  Ports of the hardening scripts: 26470-26479, 26482.

set -uo pipefail

HARD_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HARD_DIR/../.." && pwd)
BINDIR=${BINDIR:-/usr/lib/postgresql/15/bin}
QUICK=0
EXTRA_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --bindir) BINDIR=$2; shift 2 ;;
    --bindir=*) BINDIR=${1#--bindir=}; shift ;;
    --quick) QUICK=1; shift ;;
    *) EXTRA_ARGS+=("$1"); shift ;;
  esac
done
export BINDIR QUICK
# The scripts share fixed ports (26470-26479, 26482) and /tmp/meisa-hardening: a
# second invocation (another checkout, a CI run) waits for the first one.
if [ -z "${MEISA_HARDENING_LOCKED:-}" ]; then
  exec 9>/tmp/meisa-hardening.lock
  if ! flock -n 9; then
    echo "waiting for another hardening run to finish (/tmp/meisa-hardening.lock)"
    flock -w 3600 9 || { echo "lock not obtained"; exit 1; }
  fi
  export MEISA_HARDENING_LOCKED=1
fi
WORK_ROOT=${WORK_ROOT:-/tmp/meisa-hardening}
mkdir -p "$WORK_ROOT"; chown postgres: "$WORK_ROOT"; chmod 755 "$WORK_ROOT"

PASSED=0
FAILED=0
FAILURES=()
STARTED_CLUSTERS=()
STARTED_PIDS=()

# Records one check: ok NAME (exit status of the last command decides).
check() {
  local name=$1; shift
  if "$@"; then
    PASSED=$((PASSED + 1)); echo "ok     $name"
  else
    FAILED=$((FAILED + 1)); FAILURES+=("$name"); echo "FAILED $name"
  fi
}

# Records a check from a boolean word: pass NAME true|false [detail].
verdict() {
  local name=$1 ok=$2 detail=${3:-}
  if [ "$ok" = true ] || [ "$ok" = t ]; then
    PASSED=$((PASSED + 1)); echo "ok     $name${detail:+  ($detail)}"
  else
    FAILED=$((FAILED + 1)); FAILURES+=("$name"); echo "FAILED $name${detail:+  ($detail)}"
  fi
}

# Prints the summary line and exits with the right status.
finish() {
  cleanup_all
  [ ${#FAILURES[@]} -gt 0 ] && echo "failing checks: ${FAILURES[*]}"
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
  exit $?
}

# Runs a command as the postgres user.
as_pg() { runuser -u postgres -- "$@"; }

# Writes a secret file (meisa.secret_file, meisa.smtp_password_file) as the
# postgres user, replacing it at once: secret_file PATH CONTENT [MODE, 600]
secret_file() {
  as_pg sh -c 'umask 077; printf "%s\n" "$2" >"$1.tmp" && chmod "$3" "$1.tmp" && mv "$1.tmp" "$1"' \
    secret_file "$1" "$2" "${3:-600}"
}

# Creates and starts a cluster: pg_start NAME PORT [extra postgresql.conf lines...]
# Sets PGDIR_<NAME>; the socket directory is the cluster directory.
pg_start() {
  local name=$1 port=$2; shift 2
  local dir=$WORK_ROOT/$name
  pg_stop_dir "$dir"
  rm -rf "$dir"; mkdir -p "$dir"; chown postgres: "$dir"
  as_pg "$BINDIR/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { echo "initdb failed:"; cat "$dir/initdb.log"; return 1; }
  {
    echo "listen_addresses = '127.0.0.1'"
    echo "port = $port"
    echo "unix_socket_directories = '$dir'"
    echo "log_line_prefix = '%m [%p] %e %a '"
    echo "fsync = on"
    echo "max_connections = 40"
    for l in "$@"; do echo "$l"; done
  } >>"$dir/data/postgresql.conf"
  pg_ctl_start "$dir" || return 1
  STARTED_CLUSTERS+=("$dir")
}

# Starts an existing cluster directory.  The test ports (264xx) sit below
# Linux's default ephemeral range (32768-60999), so an outgoing connection
# cannot hold them; on a machine whose ip_local_port_range includes them, a
# client socket in TIME_WAIT can still block bind(): retry for up to 75 s.
pg_ctl_start() {
  local dir=$1 try
  for try in $(seq 1 25); do
    # PG_LD_PRELOAD (asan.sh): a sanitizer runtime preloaded into the server only
    as_pg env LD_PRELOAD="${PG_LD_PRELOAD:-}" ASAN_OPTIONS="${ASAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}" \
      "$BINDIR/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 120 start >/dev/null 2>&1 9>&- && return 0
    tail -5 "$dir/server.log" | grep -q "Address already in use" || break
    sleep 3
  done
  echo "pg_ctl start failed:"; tail -20 "$dir/server.log"; return 1
}

# Stops a cluster directory if it runs.
pg_stop_dir() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_pg "$BINDIR/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null 2>&1 \
    || as_pg "$BINDIR/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
}

# psql against a cluster: q NAME DB SQL... (tuples only, unaligned, stops on error)
q() {
  local name=$1 db=$2; shift 2
  local dir=$WORK_ROOT/$name port
  port=$(sed -n 's/^port = //p' "$dir/data/postgresql.conf" | tail -1)
  as_pg "$BINDIR/psql" -X -q -At -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d "$db" "$@"
}

# psql running a file: qf NAME DB FILE
qf() {
  local name=$1 db=$2 file=$3
  q "$name" "$db" -f "$file"
}

# Starts the SMTP sink that stores mail in a Maildir: smtp_start PORT MAILDIR
smtp_start() {
  local port=$1 maildir=$2
  mkdir -p "$(dirname "$maildir")"
  /usr/bin/python3 -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox "$maildir" \
    >"$maildir.log" 2>&1 9>&- &
  STARTED_PIDS+=($!)
  local i
  for i in $(seq 1 50); do
    /usr/bin/python3 - "$port" <<'PY' 2>/dev/null && return 0
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1).close()
PY
    sleep 0.1
  done
  echo "SMTP server did not start"; return 1
}

# Stops every cluster and process this script started.
cleanup_all() {
  local d p
  for d in "${STARTED_CLUSTERS[@]}"; do pg_stop_dir "$d"; done
  for p in "${STARTED_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  STARTED_CLUSTERS=(); STARTED_PIDS=()
}
trap cleanup_all EXIT

# The server log lines that prove a backend crash.
crash_lines() {
  grep -E "terminated by signal|was terminated by exception|PANIC" "$1" 2>/dev/null || true
}
