#!/usr/bin/env bash
# scripts/demo.sh: meisa's main job on an embedded default.  Installs what is
# needed (scripts/setup.sh), starts a throwaway PostgreSQL 15 cluster on
# 127.0.0.1:26400 with meisa preloaded (the delivery worker on database
# "demo") and a local SMTP server (aiosmtpd) on 127.0.0.1:2525 that captures
# mail, runs the scripted onboarding story of demo/story.sql, prints the
# contact, its activity and the emails that arrived, then stops everything.
# Safe to run twice.  Run as root (or through sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
bash scripts/setup.sh

bindir=/usr/lib/postgresql/15/bin
dir=/tmp/meisa-demo
port=26400
smtp_port=2525

stop_all() {
  [ -f "$dir/data/postmaster.pid" ] && runuser -u postgres -- "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  [ -f "$dir/smtp.pid" ] && kill "$(cat "$dir/smtp.pid")" 2>/dev/null || true
  rm -f "$dir/smtp.pid"
}
[ -d "$dir" ] && stop_all
rm -rf "$dir"; mkdir -p "$dir/mail/cur" "$dir/mail/new" "$dir/mail/tmp"; chown -R postgres: "$dir"
trap stop_all EXIT

echo "== starting a local SMTP server on 127.0.0.1:$smtp_port (mail goes to $dir/mail)"
/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:$smtp_port -c aiosmtpd.handlers.Mailbox "$dir/mail" \
  >"$dir/smtp.log" 2>&1 &
echo $! > "$dir/smtp.pid"

echo "== starting a throwaway PostgreSQL 15 cluster on 127.0.0.1:$port"
runuser -u postgres -- "$bindir/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
shared_preload_libraries = 'meisa'
meisa.database = 'demo'
meisa.smtp_url = 'smtp://127.0.0.1:$smtp_port'
meisa.from_address = 'Acme <hello@acme.test>'
meisa.unsubscribe_base_url = 'https://acme.test/unsubscribe/'
meisa.secret_file = 'meisa_secret'
meisa.worker_naptime = '1s'
CONF
# the key of unsubscribe tokens: a file in the data directory only postgres reads
runuser -u postgres -- sh -c "umask 077; head -c 32 /dev/urandom | base64 > '$dir/data/meisa_secret'"
runuser -u postgres -- "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null
runuser -u postgres -- "$bindir/createdb" -h "$dir" -p $port demo

echo "== the onboarding story (demo/story.sql)"
runuser -u postgres -- "$bindir/psql" -X -q -h "$dir" -p $port -d demo -v ON_ERROR_STOP=1 \
  -f "$top/demo/story.sql"

echo
echo "== emails that arrived at the SMTP server"
/usr/bin/python3 - "$dir/mail" <<'PY'
import mailbox, sys, email.header
box = mailbox.Maildir(sys.argv[1], factory=None, create=False)
msgs = [box[k] for k in sorted(box.keys())]  # delivery order
def dec(v):
    return str(email.header.make_header(email.header.decode_header(v or "")))
for i, m in enumerate(msgs, 1):
    print(f"--- {i}. To: {dec(m['To'])}\n    Subject: {dec(m['Subject'])}")
    if m.get("List-Unsubscribe"):
        print(f"    List-Unsubscribe: {m['List-Unsubscribe']}")
    for part in m.walk():
        if part.get_content_type() == "text/plain":
            body = part.get_payload(decode=True).decode("utf-8", "replace")
            for line in [l for l in body.splitlines() if l.strip()][:3]:
                print("    | " + line)
            break
print(f"{len(msgs)} emails received")
PY
