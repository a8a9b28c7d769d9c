#!/usr/bin/python3
"""smtp_sink.py: a small SMTP server for meisa's delivery tests and benchmarks.

Stores every message it accepts as DIR/NNNNNN.eml (the bytes as received,
after SMTP dot-unstuffing) and appends "receipt_time message_id recipient"
to DIR/received.log.  It answers chosen codes when told so by a JSON control
file (re-read when it changes):

  {"rcpt":  [{"match": "nosuch@", "reply": "550 5.1.1 no such user", "times": -1}],
   "data":  [{"match": "later@",  "reply": "451 4.3.0 try again",   "times": 2}],
   "drop":  [{"match": "cut@", "times": 1}],
   "delay": 0.2, "rcpt_delay": 0.3}

"match" is a substring of the recipient, "times" how often the rule answers
(-1 = always), "delay" seconds to wait before answering 250 to a message it
has already stored (each such wait is announced in DIR/inflight.log),
"rcpt_delay" seconds to wait before answering 250 to RCPT TO.  A
"drop" rule closes the connection when the matching message has been read,
without storing or answering it.  Every EHLO/HELO (one per SMTP connection)
is counted in DIR/connections.log; DIR/sessions.log gets "time open N"
whenever a connection comes or goes (N = connections open now) and "time
busy N" when a message starts being stored or a RCPT TO starts its
rcpt_delay (N = such messages in progress now, on all connections).

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
        self.sessions = open(os.path.join(outdir, "sessions.log"), "a", buffering=1)
        self.open_now = 0
        self.busy = 0

    def session_event(self, what, delta):
        if what == "busy":
            self.busy += delta
            n = self.busy
        else:
            self.open_now += delta
            n = self.open_now
        if delta > 0 or what != "busy":
            self.sessions.write("%.6f %s %d\n" % (time.time(), what, n))

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

    def rule(self, stage, rcpt, reply_key="reply"):
        self.load()
        for i, r in enumerate(self.rules.get(stage, [])):
            if r["match"] in rcpt:
                times = r.get("times", -1)
                key = (stage, i)
                if times >= 0 and self.used.get(key, 0) >= times:
                    continue
                self.used[key] = self.used.get(key, 0) + 1
                return r[reply_key] if reply_key else True
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
        rcpt_delay = float(self.rules.get("rcpt_delay", 0) or 0)
        if rcpt_delay > 0:
            self.session_event("busy", 1)
            try:
                await asyncio.sleep(rcpt_delay)
            finally:
                self.session_event("busy", -1)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        rcpt = envelope.rcpt_tos[0] if envelope.rcpt_tos else "-"
        reply = self.rule("data", rcpt)
        if reply:
            return reply
        if self.rule("drop", rcpt, reply_key=None):
            # read to its end, then the connection is gone: not stored
            server.transport.abort()
            return "421 4.4.2 connection dropped"
        self.session_event("busy", 1)
        try:
            return await self.store(envelope, rcpt)
        finally:
            self.session_event("busy", -1)

    async def store(self, envelope, rcpt):
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
    class CountingSMTP(SMTP):
        """Reports connections opening and closing to the handler."""

        def connection_made(self, transport):
            handler.session_event("open", 1)
            super().connection_made(transport)

        def connection_lost(self, exc):
            handler.session_event("open", -1)
            super().connection_lost(exc)

    server = await loop.create_server(
        lambda: CountingSMTP(handler, decode_data=False, hostname="sink.test",
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
