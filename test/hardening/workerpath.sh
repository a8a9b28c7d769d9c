#!/usr/bin/env bash
# test/hardening/workerpath.sh [--bindir DIR] [--quick]
#	search_path attack on the background worker.  The worker runs as a
#	superuser with the database's default search_path ("$user", public),
#	outside the pinned search_path of the SQL API.  An unprivileged role with
#	CREATE on schema public plants an operator ||(text, integer) — a better
#	match than pg_catalog's ||(text, anynonarray) for 'literal' || int — that
#	tries to make its author superuser.  A message then meets SMTP 451
#	answers until it is given up (meisa.retry_give_up_after = 1 s), which
#	runs the worker's settle query that builds "gave up after N attempts".
#	Asserts: the message ends 'failed', the planted operator never ran, its
#	author is not superuser.
source "$(dirname "$0")/lib.sh" "$@"
NAME=workerpath
PORT=26477
SMTP_PORT=26478
DIR=$WORK_ROOT/$NAME
MAIL=$WORK_ROOT/workerpath-mail
rm -rf "$MAIL"; mkdir -p "$MAIL"; chown postgres: "$MAIL"
echo '{"data": [{"match": "later@", "reply": "451 4.3.0 try again", "times": -1}]}' >"$MAIL/control.json"
echo "== worker search_path attack (bindir $BINDIR)"
/usr/bin/python3 "$TOP/test/delivery/smtp_sink.py" $SMTP_PORT "$MAIL" "$MAIL/control.json" >"$MAIL.log" 2>&1 9>&- &
STARTED_PIDS+=($!)
secret_file "$WORK_ROOT/$NAME.key" probe-secret
pg_start $NAME $PORT \
  "shared_preload_libraries = 'meisa'" \
  "meisa.database = 'probe'" \
  "meisa.smtp_url = 'smtp://127.0.0.1:$SMTP_PORT'" \
  "meisa.from_address = 'Probe <probe@meisa.test>'" \
  "meisa.unsubscribe_base_url = 'https://meisa.test/u/'" \
  "meisa.secret_file = '$WORK_ROOT/$NAME.key'" \
  "meisa.worker_naptime = 1" \
  "meisa.retry_backoff_base = 1" \
  "meisa.retry_give_up_after = 1" \
  || { verdict "cluster starts" false; finish; }
as_pg "$BINDIR/createdb" -h "$DIR" -p $PORT probe
out=$(q $NAME probe 2>&1 <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION meisa;
DROP ROLE IF EXISTS meisa_probe_evil;
DROP ROLE IF EXISTS meisa_probe_plain;
CREATE ROLE meisa_probe_evil;
GRANT CREATE ON SCHEMA public TO meisa_probe_evil;
CREATE TABLE public.evil_log (at timestamptz DEFAULT now(), who text, what text);
GRANT INSERT ON public.evil_log TO PUBLIC;
SET ROLE meisa_probe_evil;
CREATE FUNCTION public.evil_cat(text, integer) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.evil_log (who, what) VALUES (current_user, 'text || integer');
  BEGIN
    EXECUTE 'ALTER ROLE meisa_probe_evil SUPERUSER';
  EXCEPTION WHEN OTHERS THEN NULL;
  END;
  RETURN pg_catalog.textcat($1, $2::text);
END $$;
CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = integer, FUNCTION = public.evil_cat);
RESET ROLE;
-- the planted operator does win in an ordinary session (shown as a role
-- without privileges, so that its ALTER ROLE fails here):
CREATE ROLE meisa_probe_plain;
SET ROLE meisa_probe_plain;
SELECT 'x' || 1;
RESET ROLE;
SELECT count(*) FROM public.evil_log;
DELETE FROM public.evil_log;
DROP ROLE meisa_probe_plain;
INSERT INTO meisa.templates (key, kind, subject, text) VALUES ('probe', 'transactional', 'Probe', 'probe');
SELECT meisa_trigger_email('probe', '{"email": "later@example.com"}') > 0;
SQL
)
echo "$out" | sed 's/^/   /'
verdict "probe: the planted operator wins in an ordinary session (the attack is real)" \
  "$(echo "$out" | sed -n 2p | grep -qx 1 && echo true || echo false)"
status=
for i in $(seq 1 40); do
  status=$(q $NAME probe -c "SELECT format('%s after %s attempts: %s', status, attempts, last_error) FROM meisa.messages" 2>&1)
  case "$status" in failed*) break ;; esac
  sleep 1
done
echo "   message: $status"
verdict "worker: the message met 451 until it was given up" "$(case "$status" in failed*) echo true ;; *) echo false ;; esac)"
ran=$(q $NAME probe -c "SELECT format('%s (%s)', count(*), string_agg(DISTINCT who, ',')) FROM public.evil_log" 2>&1)
super=$(q $NAME probe -c "SELECT rolsuper FROM pg_roles WHERE rolname = 'meisa_probe_evil'" 2>&1)
verdict "worker: the planted operator never ran inside the worker" "$(case "$ran" in "0 "*) echo true ;; *) echo false ;; esac)" "runs: $ran"
verdict "worker: its author did not become superuser" "$([ "$super" = f ] && echo true || echo false)" "rolsuper=$super"
q $NAME probe -c "DROP OWNED BY meisa_probe_evil CASCADE" -c "DROP ROLE meisa_probe_evil" >/dev/null 2>&1
finish
