#!/usr/bin/env bash
# test/hardening/secrets.sh [--bindir DIR] [--quick]
#	The two secrets (the key of unsubscribe tokens, the SMTP password) stay
#	unreadable by non-superusers in both documented setups: meisa in
#	shared_preload_libraries (cluster secrets-pre, port 26486, the worker
#	delivers) and not preloaded (secrets-np, port 26487, meisa_deliver()
#	called from SQL as pg_cron would).  Both read the secrets from files
#	(meisa.secret_file relative to the data directory, meisa.smtp_password_file
#	absolute) and also carry the former inline settings meisa.secret and
#	meisa.smtp_password in postgresql.conf, which must be refused.  As a
#	plain login role and as a role holding the app privilege set, before and after meisa is
#	loaded in the session: SHOW, current_setting(), pg_settings, SHOW ALL,
#	pg_file_settings, pg_read_file and pg_db_role_setting never show a
#	secret.  Tokens are signed with the file's key (checked with HMAC-SHA256
#	here), never with the inline value; the SMTP sink (port 26488) accepts
#	AUTH only with the file's password; a changed file is read again after a
#	reload; an inline value is refused with its log line (postgresql.conf,
#	ALTER SYSTEM, ALTER DATABASE/ROLE SET, SET); unusable files (group or
#	world access, empty, missing) are refused with their errors.
source "$(dirname "$0")/lib.sh" "$@"
PRE=secrets-pre; NP=secrets-np
PRE_PORT=26486; NP_PORT=26487; SMTP_PORT=26488
KEY=file-key-3f9a1c77e2b04d
KEY2=rotated-key-5d8e13a0f6
PASS=file-pass-8b2d54e1
INLINE_KEY=inline-key-c41e09d7
INLINE_PASS=inline-pass-6a7f30b2
MAIL=$WORK_ROOT/secrets-mail
echo "== secrets from files, preloaded and not (bindir $BINDIR)"

rm -rf "$MAIL"; mkdir -p "$MAIL"
SINK_AUTH="meisa:$PASS" /usr/bin/python3 "$TOP/test/delivery/smtp_sink.py" $SMTP_PORT "$MAIL" \
  >"$MAIL.log" 2>&1 9>&- &
STARTED_PIDS+=($!)

# True when the token (base64url, 44 characters) is signed with key: signed_with TOKEN KEY
signed_with() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import base64, hashlib, hmac, sys
tok, key = sys.argv[1], sys.argv[2].encode()
raw = base64.urlsafe_b64decode(tok + "=" * (-len(tok) % 4))
ok = len(raw) == 33 and hmac.compare_digest(
    hmac.new(key, b"meisa-unsubscribe" + raw[:17], hashlib.sha256).digest()[:16], raw[17:])
sys.exit(0 if ok else 1)
PY
}

# The secrets that must never reach a non-superuser: leaks TEXT [also...]
leaks() {
  local text=$1 s; shift
  for s in "$KEY" "$KEY2" "$PASS" "$@"; do
    case "$text" in *"$s"*) echo "$s"; return 0 ;; esac
  done
  return 1
}

common_conf() {
  local name=$1
  echo "meisa.database = 'app'"
  echo "meisa.smtp_url = 'smtp://127.0.0.1:$SMTP_PORT'"
  echo "meisa.smtp_user = 'meisa'"
  echo "meisa.from_address = 'Secrets <secrets@meisa.test>'"
  echo "meisa.unsubscribe_base_url = 'https://meisa.test/u/'"
  echo "meisa.secret_file = 'meisa_secret'"
  echo "meisa.smtp_password_file = '$WORK_ROOT/$name/smtp_password'"
  echo "meisa.secret = '$INLINE_KEY'"
  echo "meisa.smtp_password = '$INLINE_PASS'"
}
mapfile -t PRE_CONF < <(echo "shared_preload_libraries = 'meisa'"; echo "meisa.worker_naptime = 200"; common_conf $PRE)
mapfile -t NP_CONF < <(common_conf $NP)
pg_start $PRE $PRE_PORT "${PRE_CONF[@]}" || { verdict "preloaded cluster starts" false; finish; }
pg_start $NP $NP_PORT "${NP_CONF[@]}" || { verdict "not preloaded cluster starts" false; finish; }
for c in $PRE $NP; do
  secret_file "$WORK_ROOT/$c/data/meisa_secret" "$KEY"
  secret_file "$WORK_ROOT/$c/smtp_password" "$PASS"
  as_pg "$BINDIR/createdb" -h "$WORK_ROOT/$c" -p "$(sed -n 's/^port = //p' "$WORK_ROOT/$c/data/postgresql.conf" | tail -1)" app
  q $c app >/dev/null 2>&1 <<'SQL'
SET client_min_messages = error;
CREATE EXTENSION meisa;
CREATE ROLE plain LOGIN;
CREATE ROLE app_user LOGIN;
SELECT meisa.grant('app_user', 'app');
SELECT meisa_upsert('{"email": "secrets-contact@example.com"}');
SQL
done

# 1. what a plain role and a meisa_app member can read, in a fresh session
PROBE=$(cat <<SQL
\\set VERBOSITY verbose
SHOW meisa.secret;
SHOW meisa.smtp_password;
SELECT 'cs', current_setting('meisa.secret', true), current_setting('meisa.smtp_password', true);
SELECT 'ps', name, setting FROM pg_settings WHERE name LIKE 'meisa.%' ORDER BY name;
SHOW ALL;
SELECT 'fs', name, setting FROM pg_file_settings WHERE name LIKE 'meisa.%';
SELECT pg_read_file('meisa_secret');
SELECT pg_read_file('$WORK_ROOT/$PRE/smtp_password');
SELECT pg_read_file('$WORK_ROOT/$NP/smtp_password');
SELECT 'db', setconfig FROM pg_db_role_setting;
SHOW meisa.secret_file;
SQL
)
for c in $PRE $NP; do
  # the leak as it was: where meisa is not preloaded, a plain role reads
  # meisa.secret (a placeholder); that value must not be the signing key
  ctok=$(q $c app -c "SELECT meisa.unsubscribe_url(1)" 2>/dev/null | sed 's|.*/u/||')
  for role in plain app_user; do
    shown=$(q $c app -U $role -v ON_ERROR_STOP=0 -c "SELECT current_setting('meisa.secret', true)" 2>/dev/null)
    verdict "$c $role: the value current_setting('meisa.secret', true) shows does not sign tokens" \
      "$([ -n "$ctok" ] && { [ -z "$shown" ] || ! signed_with "$ctok" "$shown"; } && echo true || echo false)" "shown '$shown'"
    if [ $role = app_user ]; then
      # meisa loaded in the session first (a token), then everything again
      out=$(q $c app -U $role -v ON_ERROR_STOP=0 2>&1 <<SQL
\\set VERBOSITY verbose
SELECT 'url', meisa.unsubscribe_url(1);
$PROBE
SQL
)
    else
      out=$(q $c app -U $role -v ON_ERROR_STOP=0 2>&1 <<<"$PROBE")
    fi
    if [ $c = $PRE ]; then leaked=$(leaks "$out" "$INLINE_KEY" "$INLINE_PASS"); else leaked=$(leaks "$out"); fi
    verdict "$c $role: SHOW, current_setting, pg_settings, SHOW ALL, pg_file_settings, pg_read_file, pg_db_role_setting reveal no secret" \
      "$([ -z "$leaked" ] && echo true || echo false)" "${leaked:+shown: $leaked}"
    verdict "$c $role: pg_file_settings and pg_read_file are refused" \
      "$([ "$(grep -c 'permission denied for view pg_file_settings\|permission denied for function pg_read_file' <<<"$out")" -eq 4 ] && echo true || echo false)"
    verdict "$c $role: the file settings are paths anyone may read" \
      "$(grep -qx 'meisa_secret' <<<"$out" && echo true || echo false)"
    if [ $role = app_user ]; then
      verdict "$c $role: after meisa is loaded, SHOW and current_setting() of meisa.secret and meisa.smtp_password are refused" \
        "$([ "$(grep -c '42501: must be superuser or have privileges of pg_read_all_settings to examine "meisa.s' <<<"$out")" -eq 3 ] && echo true || echo false)"
      tok=$(sed -n 's|^url|https://meisa.test/u/|p' <<<"$out" | sed 's|.*/u/||')
      ok=false; signed_with "$tok" "$KEY" && ! signed_with "$tok" "$INLINE_KEY" && ok=true
      verdict "$c $role: meisa.unsubscribe_url signs with the file's key, not the inline meisa.secret" $ok "token '$tok'"
    fi
  done
done

# 2. the inline settings are refused, with the documented log line
verdict "$PRE: server start logs that meisa.secret and meisa.smtp_password are refused" \
  "$(grep -q 'WARNING:  meisa.secret is refused: meisa reads the key of unsubscribe tokens from the file named by meisa.secret_file' "$WORK_ROOT/$PRE/server.log" &&
     grep -q 'WARNING:  meisa.smtp_password is refused: meisa reads the SMTP password from the file named by meisa.smtp_password_file' "$WORK_ROOT/$PRE/server.log" && echo true || echo false)"
out=$(q $NP app -U app_user -c "SELECT meisa.unsubscribe_url(1) IS NOT NULL" 2>&1)
verdict "$NP: loading meisa in a session warns that meisa.secret and meisa.smtp_password are refused" \
  "$(grep -q '^WARNING:  meisa.secret is refused' <<<"$out" && grep -q '^WARNING:  meisa.smtp_password is refused' <<<"$out" &&
     grep -q 'set meisa.secret_file to its path' <<<"$out" && echo true || echo false)"
for c in $PRE $NP; do
  out=$(q $c app -v ON_ERROR_STOP=0 2>&1 <<'SQL'
\set VERBOSITY verbose
LOAD 'meisa';
SET meisa.secret = 'set-inline-value';
SET meisa.smtp_password = 'set-inline-value';
ALTER SYSTEM SET meisa.secret = 'altsys-inline-value';
ALTER SYSTEM SET meisa.smtp_password = 'altsys-inline-value';
ALTER DATABASE app SET meisa.secret = 'db-inline-value';
ALTER ROLE app_user SET meisa.smtp_password = 'role-inline-value';
SQL
)
  verdict "$c: SET, ALTER SYSTEM, ALTER DATABASE/ROLE SET of meisa.secret/meisa.smtp_password fail with 22023" \
    "$([ "$(grep -c '^ERROR:  22023: meisa.s[a-z_]* is refused' <<<"$out")" -eq 6 ] && echo true || echo false)"
  verdict "$c: nothing of them was stored" \
    "$(! grep -q inline-value "$WORK_ROOT/$c/data/postgresql.auto.conf" &&
       [ "$(q $c app -c "SELECT count(*) FROM pg_db_role_setting" 2>&1)" = 0 ] && echo true || echo false)"
done
# where meisa is not loaded, PostgreSQL takes ALTER SYSTEM for a placeholder
# without asking meisa: the value must still never be used
q $NP app -c "ALTER SYSTEM SET meisa.secret = '$INLINE_KEY-2'" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
sleep 0.5
out=$(q $NP app -U app_user -c "SELECT meisa.unsubscribe_url(1)" 2>&1)
tok=$(tail -1 <<<"$out" | sed 's|.*/u/||')
ok=false; signed_with "$tok" "$KEY" && grep -q 'meisa.secret is refused' <<<"$out" && ok=true
verdict "$NP: a meisa.secret stored by ALTER SYSTEM where meisa was not loaded is refused, the file's key signs" $ok
q $NP app -c "ALTER SYSTEM RESET meisa.secret" -c "SELECT pg_reload_conf()" >/dev/null 2>&1

# 3. delivery: the worker (preloaded) and meisa_deliver() (not preloaded)
# authenticate with the file's password; List-Unsubscribe carries a token
# signed with the file's key
queue() {  # queue CLUSTER EMAIL: a marketing message to a new contact; prints its id
  q "$1" app -c "WITH c AS (INSERT INTO meisa.contacts (email) VALUES ('$2') RETURNING id)
    INSERT INTO meisa.messages (contact_id, to_email, kind, subject, text, message_id)
    SELECT id, '$2', 'marketing', 'News', 'news', '$2-' || id || '@meisa.test' FROM c RETURNING id" 2>/dev/null | head -1
}
mail_token() {  # mail_token EMAIL: the List-Unsubscribe token of the last message to EMAIL
  /usr/bin/python3 - "$MAIL" "$1" <<'PY'
import email, glob, os, re, sys
last = None
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.eml"))):
    m = email.message_from_binary_file(open(f, "rb"))
    if m["To"] and sys.argv[2] in m["To"]:
        last = m
if last is not None:
    g = re.search(r"/u/([A-Za-z0-9_-]+)>", str(last["List-Unsubscribe"]))
    print(g.group(1) if g else "")
PY
}
wait_status() {  # wait_status CLUSTER ID STATUS
  local i s
  for i in $(seq 1 60); do
    s=$(q "$1" app -c "SELECT status FROM meisa.messages WHERE id = $2" 2>/dev/null)
    [ "$s" = "$3" ] && return 0
    sleep 0.25
  done
  return 1
}
id=$(queue $PRE pre1@example.com)
ok=false; wait_status $PRE "$id" sent && ok=true
verdict "$PRE: the worker delivered with AUTH (password from meisa.smtp_password_file)" \
  "$($ok && grep -q 'auth=meisa' "$MAIL/connections.log" && echo true || echo false)"
tok=$(mail_token pre1@example.com)
verdict "$PRE: the worker's List-Unsubscribe token is signed with the file's key" \
  "$(signed_with "$tok" "$KEY" && echo true || echo false)" "token '$tok'"
id=$(queue $NP np1@example.com)
n=$(q $NP app -c "SELECT meisa_deliver()" 2>/dev/null | tail -1)
verdict "$NP: meisa_deliver() in a fresh backend sent with AUTH" \
  "$([ "$n" = 1 ] && [ "$(grep -c 'auth=meisa' "$MAIL/connections.log")" -ge 2 ] && echo true || echo false)" "sent $n"
tok=$(mail_token np1@example.com)
verdict "$NP: its List-Unsubscribe token is signed with the file's key" \
  "$(signed_with "$tok" "$KEY" && echo true || echo false)" "token '$tok'"

# 4. a changed file is read again after a reload, not before (one backend)
out=$(q $NP app 2>&1 <<SQL
SELECT 'a', meisa.unsubscribe_url(1);
\\! sh -c 'umask 077; printf "%s\\n" "$KEY2" > "$WORK_ROOT/$NP/data/meisa_secret"'
SELECT 'b', meisa.unsubscribe_url(1);
SELECT pg_reload_conf();
SELECT pg_sleep(0.5);
SELECT 'c', meisa.unsubscribe_url(1);
SQL
)
ta=$(sed -n 's|^a.*/u/||p' <<<"$out"); tb=$(sed -n 's|^b.*/u/||p' <<<"$out"); tc=$(sed -n 's|^c.*/u/||p' <<<"$out")
verdict "$NP: one backend keeps the key until a reload, then reads the new file" \
  "$(signed_with "$ta" "$KEY" && signed_with "$tb" "$KEY" && signed_with "$tc" "$KEY2" && echo true || echo false)"
secret_file "$WORK_ROOT/$PRE/data/meisa_secret" "$KEY2"
q $PRE app -c "SELECT pg_reload_conf()" >/dev/null; sleep 0.5
id=$(queue $PRE pre2@example.com)
wait_status $PRE "$id" sent
tok=$(mail_token pre2@example.com)
verdict "$PRE: after a reload the worker signs with the new key" \
  "$(signed_with "$tok" "$KEY2" && echo true || echo false)" "token '$tok'"

# 5. unusable files are refused
secret_file "$WORK_ROOT/$NP/data/meisa_secret" "$KEY2" 644
out=$(q $NP app -U app_user -v ON_ERROR_STOP=0 -c '\set VERBOSITY verbose' -c "SELECT meisa.unsubscribe_url(1)" 2>&1)
verdict "$NP: a key file with group or world access is refused (F0000)" \
  "$(grep -q '^ERROR:  F0000: file "meisa_secret" named by meisa.secret_file has group or world access' <<<"$out" && echo true || echo false)"
id=$(queue $NP held@example.com)
out=$(q $NP app -c "SELECT meisa_deliver()" 2>&1)
st=$(q $NP app -c "SELECT status FROM meisa.messages WHERE id = $id" 2>&1)
verdict "$NP: meisa_deliver() holds marketing mail and warns when the key file is refused" \
  "$(grep -q '^WARNING:  file "meisa_secret" named by meisa.secret_file has group or world access' <<<"$out" && [ "$st" = queued ] && echo true || echo false)" "$st"
secret_file "$WORK_ROOT/$NP/data/meisa_secret" ""
out=$(q $NP app -v ON_ERROR_STOP=0 -c "SELECT meisa.unsubscribe_url(1)" 2>&1)
verdict "$NP: an empty key file is refused" "$(grep -q 'named by meisa.secret_file is empty' <<<"$out" && echo true || echo false)"
as_pg rm -f "$WORK_ROOT/$NP/data/meisa_secret"
out=$(q $NP app -v ON_ERROR_STOP=0 -c '\set VERBOSITY verbose' -c "SELECT meisa.unsubscribe_url(1)" 2>&1)
verdict "$NP: a missing key file is an error (58P01)" \
  "$(grep -q '^ERROR:  58P01: could not read file "meisa_secret" named by meisa.secret_file' <<<"$out" && echo true || echo false)"
out=$(q $NP app -v ON_ERROR_STOP=0 -c '\set VERBOSITY verbose' -c "SET meisa.secret_file = ''" -c "SELECT meisa.unsubscribe_url(1)" 2>&1)
verdict "$NP: without meisa.secret_file tokens fail with 55000 and a hint naming it" \
  "$(grep -q '^ERROR:  55000: meisa.secret_file is not set' <<<"$out" && grep -q '^HINT: .*set meisa.secret_file to its path' <<<"$out" && echo true || echo false)"
secret_file "$WORK_ROOT/$NP/data/meisa_secret" "$KEY"
secret_file "$WORK_ROOT/$NP/smtp_password" "$PASS" 640
out=$(q $NP app -c "SELECT meisa_deliver()" 2>&1)
verdict "$NP: a password file with group access stops delivery with a warning" \
  "$(grep -q "^WARNING:  file \"$WORK_ROOT/$NP/smtp_password\" named by meisa.smtp_password_file has group or world access" <<<"$out" &&
     [ "$(tail -1 <<<"$out")" = 0 ] && echo true || echo false)" "$(tail -1 <<<"$out")"
secret_file "$WORK_ROOT/$NP/smtp_password" "$PASS"
out=$(q $NP app -c "SELECT meisa_deliver()" 2>&1)
verdict "$NP: with the files right again the held message goes" "$([ "$(tail -1 <<<"$out")" = 1 ] && echo true || echo false)" "$(tail -1 <<<"$out")"

# 6. no secret in the server logs
for c in $PRE $NP; do
  if [ $c = $PRE ]; then leaked=$(leaks "$(cat "$WORK_ROOT/$c/server.log")" "$INLINE_KEY" "$INLINE_PASS")
  else leaked=$(leaks "$(cat "$WORK_ROOT/$c/server.log")"); fi
  verdict "$c: the server log holds no secret" "$([ -z "$leaked" ] && echo true || echo false)" "${leaked:+logged: $leaked}"
done
finish
