#!/usr/bin/python3
"""smtp_sink.py: a small SMTP server for meisa's delivery tests and benchmarks.

Stores every message it accepts as DIR/NNNNNN.eml (the bytes as received,
after SMTP dot-unstuffing) and appends "receipt_time message_id recipient"
to DIR/received.log.  It answers chosen codes when told so by a JSON control
file (re-read when it changes):

  {"rcpt":  [{"match": "nosuch@", "reply": "550 5.1.1 no such user", "times": -1}],
   "data":  [{"match": "later@",  "reply": "451 4.3.0 try again",   "times": 2}],
   "delay": 0.2}

"match" is a substring of the recipient, "times" how often the rule answers
(-1 = always), "delay" seconds to wait before answering 250 to a message it
has already stored (each such wait is announced in DIR/inflight.log).  Every
EHLO/HELO (one per SMTP connection) is counted in DIR/connections.log.

Environment: SINK_TLS_CERT and SINK_TLS_KEY offer STARTTLS and require it
(with SINK_IMPLICIT_TLS=1: TLS from the first byte, as smtps:// expects);
SINK_AUTH=user:password requires SMTP AUTH (after STARTTLS when TLS is on).
Each connection line in connections.log says whether TLS and AUTH were used
at MAIL FROM time ("MAIL tls=1 auth=user").

Usage: smtp_sink.py PORT DIR [CONTROL_FILE]
"""
import asyncio
import json
import os
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult


class Handler:
    def __init__(self, outdir, control):
        self.outdir = outdir
        self.control = control
        self.mtime = None
        self.rules = {}
        self.used = {}
        self.count = 0
        self.log = open(os.path.join(outdir, "received.log"), "a", buffering=1)
        self.conns = open(os.path.join(outdir, "connections.log"), "a", buffering=1)
        self.inflight = open(os.path.join(outdir, "inflight.log"), "a", buffering=1)

    def load(self):
        if not self.control:
            return
        try:
            mtime = os.stat(self.control).st_mtime_ns
        except FileNotFoundError:
            self.rules, self.mtime = {}, None
            return
        if mtime != self.mtime:
            with open(self.control) as f:
                text = f.read()
            self.rules = json.loads(text) if text.strip() else {}
            self.used = {}
            self.mtime = mtime

    def rule(self, stage, rcpt):
        self.load()
        for i, r in enumerate(self.rules.get(stage, [])):
            if r["match"] in rcpt:
                times = r.get("times", -1)
                key = (stage, i)
                if times >= 0 and self.used.get(key, 0) >= times:
                    continue
                self.used[key] = self.used.get(key, 0) + 1
                return r["reply"]
        return None

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        self.conns.write("%.6f EHLO\n" % time.time())
        return responses

    async def handle_HELO(self, server, session, envelope, hostname):
        session.host_name = hostname
        self.conns.write("%.6f HELO\n" % time.time())
        return "250 %s" % server.hostname

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        self.conns.write("%.6f MAIL tls=%d auth=%s\n" % (
            time.time(), 1 if (session.ssl or server.transport.get_extra_info("ssl_object")) else 0,
            getattr(session, "auth_data", None)))
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rule("rcpt", address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else "-"
        reply = self.rule("data", rcpt)
        if reply:
            return reply
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        msgid = "-"
        for line in data.split(b"\r\n"):
            if line == b"":
                break
            if line.lower().startswith(b"message-id:"):
                msgid = line.split(b":", 1)[1].strip().decode("ascii", "replace")
        self.count += 1
        n = self.count
        name = os.path.join(self.outdir, "%06d-%d.eml" % (n, os.getpid()))
        with open(name + ".tmp", "wb") as f:
            f.write(data)
        os.rename(name + ".tmp", name)
        self.log.write("%.6f %s %s\n" % (time.time(), msgid, rcpt))
        delay = float(self.rules.get("delay", 0) or 0)
        if delay > 0:
            # stored, but the answer comes late: a client that dies now
            # cannot know the message was accepted
            self.inflight.write("%.6f %s\n" % (time.time(), msgid))
            await asyncio.sleep(delay)
        return "250 2.0.0 OK queued as %d" % n


async def main():
    port = int(sys.argv[1])
    outdir = sys.argv[2]
    control = sys.argv[3] if len(sys.argv) > 3 else None
    os.makedirs(outdir, exist_ok=True)
    handler = Handler(outdir, control)
    loop = asyncio.get_running_loop()
    opts = {}
    implicit = None
    if os.environ.get("SINK_TLS_CERT"):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.environ["SINK_TLS_CERT"], os.environ["SINK_TLS_KEY"])
        if os.environ.get("SINK_IMPLICIT_TLS"):
            implicit = ctx
        else:
            opts.update(tls_context=ctx, require_starttls=True)
    if os.environ.get("SINK_AUTH"):
        user, password = os.environ["SINK_AUTH"].split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (getattr(auth_data, "login", None) == user.encode()
                  and getattr(auth_data, "password", None) == password.encode())
            return AuthResult(success=ok, handled=False, auth_data=user if ok else None)
        opts.update(authenticator=authenticator, auth_required=True,
                    # with implicit TLS the whole session is encrypted already
                    auth_require_tls=bool(os.environ.get("SINK_TLS_CERT")) and implicit is None)
    server = await loop.create_server(
        lambda: SMTP(handler, decode_data=False, hostname="sink.test",
                     data_size_limit=10 * 1024 * 1024, enable_SMTPUTF8=False, **opts),
        host="127.0.0.1", port=port, reuse_address=True, ssl=implicit)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("smtp sink listening on 127.0.0.1:%d" % port, flush=True)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
