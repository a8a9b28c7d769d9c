#!/usr/bin/env bash
# test/hardening/asan.sh [--bindir DIR] [--quick] [--count N]
#	meisa under AddressSanitizer + UndefinedBehaviorSanitizer.  Copies
#	PostgreSQL 15 (from --bindir's installation) into a private relocated
#	prefix, builds meisa there with -fsanitize=address,undefined, then runs
#	with libasan preloaded into postgres (PostgreSQL itself is not
#	instrumented; meisa's own stack, global and malloc'ed memory and every
#	undefined behaviour in meisa's code are): the whole pg_regress suite and
#	the isolation specs, then the fuzz harness (3,000 inputs with --quick,
#	20,000 by default).  Passes when no sanitizer report names meisa code.
#	Not part of run.sh's default set (the build takes a minute); run it
#	directly, or run.sh --only asan.
source "$(dirname "$0")/lib.sh" "$@"
set -- "${EXTRA_ARGS[@]}"
if [ "$QUICK" = 1 ]; then COUNT=3000; else COUNT=20000; fi
while [ $# -gt 0 ]; do
  case "$1" in
    --count) COUNT=$2; shift 2 ;;
    *) echo "unknown option $1"; exit 2 ;;
  esac
done
base=$WORK_ROOT/asan-build
pg=$base/pg
libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
[ -f "$libasan" ] || { verdict "libasan available" false "$libasan"; finish; }
pgroot=/usr/lib/postgresql; share=/usr/share/postgresql; PGC=$pgroot/15/bin/pg_config
echo "== asan: building meisa with -fsanitize=address,undefined (PostgreSQL copied from $pgroot/15)"
rm -rf "$base"; mkdir -p "$pg/usr/lib/postgresql" "$pg/usr/share/postgresql" "$base/src" "$base/logs"
cp -a "$pgroot/15" "$pg/usr/lib/postgresql/"
cp -a "$share/15" "$pg/usr/share/postgresql/"
rsync -a --exclude .git --exclude tmp_check --exclude tmp_check_iso --exclude results --exclude output_iso \
  "$TOP/" "$base/src/"
chown -R postgres: "$base"; chmod 755 "$base"
ABIN=$pg/usr/lib/postgresql/15/bin
# AddressSanitizer needs its runtime preloaded into the (uninstrumented)
# postgres executable.  On Debian 12 the preloaded runtime deadlocks in
# glibc's bindtextdomain() lock before main() gets anywhere (postgres -V
# hangs), so when that probe fails the build is UBSan only (libubsan loads as
# an ordinary dependency of meisa.so and needs no preload).
if timeout 10 env LD_PRELOAD="$libasan" ASAN_OPTIONS=detect_leaks=0 "$ABIN/postgres" -V >/dev/null 2>&1; then
  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -fno-sanitize=alignment"
  export PG_LD_PRELOAD="$libasan"
  echo "   AddressSanitizer + UndefinedBehaviorSanitizer (libasan preloaded into postgres)"
else
  SAN="-fsanitize=undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -fno-sanitize=alignment"
  export PG_LD_PRELOAD=
  echo "   postgres hangs with libasan preloaded (glibc bindtextdomain lock): UndefinedBehaviorSanitizer only"
fi
(cd "$base/src" && as_pg make -s -j2 PG_CONFIG="$PGC" COPT="$SAN" >"$base/build.log" 2>&1 \
  && as_pg make -s install PG_CONFIG="$PGC" COPT="$SAN" DESTDIR="$pg" >>"$base/build.log" 2>&1)
rc=$?
verdict "asan: meisa builds with ${SAN%% *}" "$([ $rc = 0 ] && echo true || echo false)" "$(tail -3 "$base/build.log")"
[ $rc = 0 ] || finish
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=0:log_path=$base/logs/asan:detect_stack_use_after_return=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=0:log_path=$base/logs/ubsan"

echo "== asan: pg_regress suite and isolation specs under the sanitizers"
(cd "$base/src" && as_pg env LD_PRELOAD="$PG_LD_PRELOAD" ASAN_OPTIONS="$ASAN_OPTIONS" UBSAN_OPTIONS="$UBSAN_OPTIONS" \
  timeout 900 make -s check-temp TAP_TESTS= PG_CONFIG="$PGC" bindir="$ABIN" >"$base/installcheck.log" 2>&1)
rc=$?
ok=$(grep -cE '\.\.\. +ok| ok +[0-9]+ ms' "$base/installcheck.log")
bad=$(grep -cE 'FAILED|failed \(' "$base/installcheck.log")
echo "   pg_regress/isolation under the sanitizers: $ok ok, $bad failed (log $base/installcheck.log)"
verdict "asan: regression suite passes under the sanitizers" "$([ $rc = 0 ] && echo true || echo false)" "$bad failed"

echo "== asan: fuzz ($COUNT inputs) under the sanitizers"
BINDIR=$ABIN WORK_ROOT=$base/fuzz bash "$HARD_DIR/fuzz.sh" --bindir "$ABIN" --count "$COUNT" --seed 7 >"$base/fuzz.log" 2>&1
rc=$?
tail -12 "$base/fuzz.log" | sed 's/^/   /'
verdict "asan: fuzz harness passes under the sanitizers" "$([ $rc = 0 ] && echo true || echo false)"

reports=$(cat "$base"/logs/* 2>/dev/null | grep -cE "ERROR: AddressSanitizer|runtime error:")
meisa_reports=$(cat "$base"/logs/* 2>/dev/null | grep -E "ERROR: AddressSanitizer|runtime error:|meisa" | grep -cE "src/|meisa.so")
echo "   sanitizer reports: $reports (naming meisa code: $meisa_reports); logs in $base/logs"
cat "$base"/logs/* 2>/dev/null | grep -E -A12 "ERROR: AddressSanitizer|runtime error:" | head -40
verdict "asan: no AddressSanitizer/UBSan report in meisa code" "$([ "$meisa_reports" = 0 ] && echo true || echo false)" "$meisa_reports"
finish
