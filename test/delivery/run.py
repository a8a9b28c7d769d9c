#!/usr/bin/python3
"""run.py: live delivery tests of meisa against a real SMTP server.

Starts the SMTP sink (smtp_sink.py, on aiosmtpd) and a private cluster with
meisa preloaded, queues messages and checks what the SMTP server received,
then injects faults: the SMTP server down, 4xx then success, 5xx (failed and
bounced), a server that stops answering (hostile_peer.py: no greeting, no
answer after DATA, no answer to QUIT).  The worker's restart after SIGTERM
and kill -9 of the server during a batch are TAP tests (t/*.pl, make prove-tap).
Prints "N passed, M failed" last and exits non-zero on any failure.

Usage (as root): run.py [BINDIR]   (default $PGBIN or /usr/lib/postgresql/15/bin)
MEISA_DELIVERY_ONLY=stall,basic runs only the tests whose names start with
test_stall, test_basic (run.sh --only stall,basic).
"""
import os
import re
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import Cluster, Sink, wait_for, write_secret  # noqa: E402
from hostile_peer import HostilePeer  # noqa: E402

BINDIR = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin")
BASE = os.environ.get("MEISA_TEST_DIR", "/tmp/meisa-delivery-test")
PG_PORT = int(os.environ.get("MEISA_PG_PORT", "26450"))
SMTP_PORT = int(os.environ.get("MEISA_SMTP_PORT", "26455"))

passed = 0
failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"ok     {name}")
    else:
        failed += 1
        print(f"FAILED {name} {detail}")


pg = Cluster(BINDIR, BASE, PG_PORT, SMTP_PORT)
sink = Sink(SMTP_PORT, BASE)
PEER_PORT = SMTP_PORT + 3
# how long past its limit a stall test keeps waiting (and measuring) before
# it gives up and releases the hanging connection
STALL_PATIENCE = float(os.environ.get("MEISA_STALL_PATIENCE", "10"))
peer = HostilePeer(PEER_PORT, SMTP_PORT)


def q(s):
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def add_contact(email, subscribed=True):
    return int(pg.psql(f"INSERT INTO meisa.contacts (email, subscribed) VALUES ({q(email)}, {subscribed}) "
                       "RETURNING id"))


def queue(contact_id, to, kind="transactional", subject="Hello", text="text body", html="<p>html body</p>"):
    cid = "NULL" if contact_id is None else str(contact_id)
    t = "NULL" if text is None else q(text)
    h = "NULL" if html is None else q(html)
    return int(pg.psql(
        "INSERT INTO meisa.messages (contact_id, to_email, kind, subject, text, html, message_id) "
        f"VALUES ({cid}, {q(to)}, {q(kind)}, {q(subject)}, {t}, {h}, "
        "'live-' || gen_random_uuid() || '@meisa.test') RETURNING id"))


def status(ids):
    rows = pg.rows("SELECT id, status, attempts, coalesce(last_error, '') FROM meisa.messages "
                   f"WHERE id IN ({','.join(map(str, ids))}) ORDER BY id")
    return {int(r[0]): (r[1], int(r[2]), r[3]) for r in rows}


def all_status(ids, st, timeout=20):
    return wait_for(lambda: all(v[0] == st for v in status(ids).values()), timeout)


def msgids(ids):
    rows = pg.rows(f"SELECT id, message_id FROM meisa.messages WHERE id IN ({','.join(map(str, ids))})")
    return {int(r[0]): "<" + r[1].strip("<>") + ">" for r in rows}


def received_ids():
    return [m["Message-ID"] for _, m in sink.messages()]


def body_of(msg, subtype):
    part = msg.get_body(preferencelist=(subtype,))
    if part is None or part.get_content_type() != "text/" + subtype:
        return None
    return part.get_content().replace("\r\n", "\n").rstrip("\n")


# ---------------------------------------------------------------- tests

def test_basic():
    """Each message arrives once, parses, and says what the row says."""
    sink.clear()
    ada = add_contact("ada@example.com")
    bob = add_contact("bob@example.com")
    cases = [
        (ada, "ada@example.com", "marketing", "Welcome, Ada!", "Hi Ada,\nwelcome.", "<p>Hi <b>Ada</b></p>"),
        (bob, "bob@example.com", "transactional", "Ihr Passwort — Grüße aus Köln ✓ " + "long words " * 8,
         "Zeile 1\n.Punkt am Anfang\n..zwei\nFrom the start\nÜmläüte = gleich", "<p>Grüße</p>"),
        (ada, "ada@example.com", "marketing", "日本語の件名 and emoji 🎉", None, "<p>only html 🎉</p>"),
        (bob, "bob@example.com", "transactional", "text only", "just text\n\n-- \nsig", None),
    ]
    ids = [queue(*c) for c in cases]
    ok = all_status(ids, "sent")
    check("basic: every message reaches status sent", ok, status(ids))
    by_mid = msgids(ids)
    time.sleep(0.3)
    got = sink.messages()
    rec = [m["Message-ID"] for _, m in got]
    check("basic: the sink received each message exactly once",
          sorted(rec) == sorted(by_mid.values()), rec)
    for (cid, to, kind, subject, text, html), mid_id in zip(cases, ids):
        mid = by_mid[mid_id]
        match = [(raw, m) for raw, m in got if m["Message-ID"] == mid]
        if not match:
            check(f"basic: message {mid_id} received", False)
            continue
        raw, m = match[0]
        check(f"basic {mid_id}: CRLF only, lines <= 998", b"\n" not in raw.replace(b"\r\n", b"")
              and all(len(line) <= 998 for line in raw.split(b"\r\n")))
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        # within 78, but for List-Unsubscribe: its URL cannot be folded
        long_lines = [line for line in head if len(line) > 78 and not line.startswith(b"List-Unsubscribe: <")]
        check(f"basic {mid_id}: header lines <= 78 (List-Unsubscribe: one line)", not long_lines, long_lines)
        for sub, want in (("plain", text), ("html", html)):
            part = m.get_body(preferencelist=(sub,)) if want is not None else None
            if part is not None:
                # exact: no line break added at the end or doubled
                got_body = part.get_content().replace("\r\n", "\n")
                check(f"basic {mid_id}: text/{sub} round-trips exactly", got_body == want, repr(got_body[-20:]))
        check(f"basic {mid_id}: subject round-trips", str(m["Subject"]) == subject, repr(str(m["Subject"])))
        check(f"basic {mid_id}: headers From/To/Date/MIME-Version",
              m["From"].addresses[0].addr_spec == "noreply@meisa.test"
              and m["From"].addresses[0].display_name == "Meisa Test"
              and m["To"].addresses[0].addr_spec == to
              and m["Date"] is not None and m["Date"].datetime is not None
              and m["MIME-Version"] == "1.0", str(m))
        if text and html:
            check(f"basic {mid_id}: multipart/alternative text+html",
                  m.get_content_type() == "multipart/alternative"
                  and [p.get_content_type() for p in m.iter_parts()] == ["text/plain", "text/html"])
        check(f"basic {mid_id}: parts decode to the row's text and html",
              (text is None or body_of(m, "plain") == text) and (html is None or body_of(m, "html") == html),
              (body_of(m, "plain"), body_of(m, "html")))
        lu = m["List-Unsubscribe"]
        if kind == "marketing":
            ok = lu is not None and m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            check(f"basic {mid_id}: marketing carries List-Unsubscribe (RFC 8058)", ok, str(lu))
            if ok:
                token = re.match(r"<https://app\.test/unsubscribe/([A-Za-z0-9_-]+)>", str(lu)).group(1)
                got_cid = pg.psql(f"SELECT meisa.unsubscribe_token_contact({q(token)})")
                check(f"basic {mid_id}: the token names the contact", int(got_cid) == cid, got_cid)
        else:
            check(f"basic {mid_id}: transactional has no List-Unsubscribe",
                  lu is None and m["List-Unsubscribe-Post"] is None)
    # the token unsubscribes (meisa_unsubscribe when the API is present)
    raw, m = [(r, x) for r, x in got if x["Message-ID"] == by_mid[ids[0]]][0]
    token = re.search(r"/unsubscribe/([A-Za-z0-9_-]+)>", str(m["List-Unsubscribe"])).group(1)
    has_api = pg.psql("SELECT to_regprocedure('meisa_unsubscribe(text,text)') IS NOT NULL") == "t"
    if has_api:
        pg.psql(f"SELECT meisa_unsubscribe({q(token)})")
    else:
        pg.psql(f"UPDATE meisa.contacts SET subscribed = false, unsubscribe_reason = 'unsubscribed', "
                f"unsubscribed_at = now() WHERE id = meisa.unsubscribe_token_contact({q(token)})")
    check(f"basic: the token unsubscribes ada ({'meisa_unsubscribe' if has_api else 'token lookup'})",
          pg.psql(f"SELECT subscribed FROM meisa.contacts WHERE id = {ada}") == "f")
    # marketing to her is now suppressed when sent, transactional still goes
    m1 = queue(ada, "ada@example.com", "marketing", "after unsubscribe")
    m2 = queue(ada, "ada@example.com", "transactional", "receipt after unsubscribe")
    ok = wait_for(lambda: status([m1])[m1][0] == "suppressed" and status([m2])[m2][0] == "sent", 10)
    check("basic: after unsubscribing, marketing is suppressed and transactional sent", ok, status([m1, m2]))


def test_api():
    """Mail queued through the API: meisa_trigger_email (transactional) and a
    sequence step run by the worker's meisa_run_due (marketing); the
    List-Unsubscribe token works with meisa_unsubscribe."""
    if pg.psql("SELECT to_regprocedure('meisa_trigger_email(text,jsonb)') IS NULL "
               "OR to_regprocedure('meisa_enroll(text,text)') IS NULL") == "t":
        check("api: meisa_trigger_email/meisa_enroll not installed (skipped)", True)
        return
    sink.clear()
    pg.psql("""INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES
      ('live_reset', 'transactional', 'Your code, {{first_name}}', '<p>Code <b>{{data.code}}</b></p>',
       'Code {{data.code}}'),
      ('live_welcome', 'marketing', 'Willkommen, {{first_name}}! ✓',
       '<p>Hi {{first_name}}, <a href="{{{unsubscribe_url}}}">unsubscribe</a></p>',
       'Hi {{first_name}}
Unsubscribe: {{{unsubscribe_url}}}')""")
    pg.psql("""INSERT INTO meisa.sequences (name) VALUES ('live_onboarding');
      INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
      SELECT id, 1, '0', 'live_welcome' FROM meisa.sequences WHERE name = 'live_onboarding'""")
    cid = pg.psql("""SELECT (meisa_upsert('{"email": "Api@Example.com", "first_name": "Zoë"}')->>'id')""")
    t0 = time.time()
    mid = pg.psql("""SELECT meisa_trigger_email('live_reset',
                     '{"email": "api@example.com", "data_variables": {"code": "424242"}}')""")
    ok = wait_for(lambda: len(sink.files()) == 1, 5, 0.005)
    check(f"api: meisa_trigger_email delivered in {(time.time() - t0) * 1000:.0f} ms", ok)
    pg.psql("SELECT meisa_enroll('api@example.com', 'live_onboarding')")
    ok = wait_for(lambda: len(sink.files()) == 2, 10)
    check("api: the sequence step was run by the worker and delivered", ok, len(sink.files()))
    got = {str(m["Subject"]): m for _, m in sink.messages()}
    reset = got.get("Your code, Zoë")
    welcome = got.get("Willkommen, Zoë! ✓")
    check("api: subjects rendered and round-tripped", reset is not None and welcome is not None, list(got))
    if not (reset and welcome):
        return
    check("api: transactional body and no List-Unsubscribe",
          body_of(reset, "plain") == "Code 424242" and reset["List-Unsubscribe"] is None,
          body_of(reset, "plain"))
    row = pg.rows(f"SELECT message_id, status FROM meisa.messages WHERE id = {mid}")[0]
    check("api: Message-ID is the row's message_id, status sent",
          reset["Message-ID"] == "<" + row[0].strip("<>") + ">" and row[1] == "sent", row)
    lu = str(welcome["List-Unsubscribe"])
    token = re.search(r"/unsubscribe/([A-Za-z0-9_-]+)>", lu)
    body_token = re.search(r"Unsubscribe: https://app\.test/unsubscribe/([A-Za-z0-9_-]+)",
                           body_of(welcome, "plain") or "")
    check("api: marketing mail has List-Unsubscribe and the link in its body", token and body_token, lu)
    if token and body_token:
        ids = pg.psql(f"SELECT meisa.unsubscribe_token_contact({q(token.group(1))}), "
                      f"meisa.unsubscribe_token_contact({q(body_token.group(1))})")
        check("api: both tokens name the contact", ids == f"{cid}\t{cid}", ids)
        pg.psql(f"SELECT meisa_unsubscribe({q(token.group(1))})")
        st = pg.rows("SELECT subscribed, (SELECT count(*) FROM meisa.unsubscribed_emails "
                     "WHERE email = 'api@example.com') FROM meisa.contacts WHERE email = 'api@example.com'")[0]
        check("api: meisa_unsubscribe(token from the header) unsubscribes", st == ["f", "1"], st)


def test_quoted_addresses_and_long_headers():
    """Addresses the upsert accepts are delivered as they are: quoted local
    parts with specials reach RCPT TO and To: intact; a 400-word ASCII
    display name in From and Reply-To is folded (lines <= 78) and unfolds
    back to the name."""
    sink.clear()
    addrs = ['"a,b"@example.com', '"x>y"@example.com', '"x<y"@example.com', '"say\\"hi\\""@example.com']
    has_api = pg.psql("SELECT to_regprocedure('meisa_upsert(jsonb)') IS NOT NULL") == "t"
    cids = []
    for a in addrs:
        if has_api:
            cids.append(int(pg.psql(f"SELECT meisa_upsert(jsonb_build_object('email', {q(a)}))->>'id'")))
        else:
            cids.append(add_contact(a))
    stored = [pg.psql(f"SELECT email FROM meisa.contacts WHERE id = {c}") for c in cids]
    check("quoted: the contacts are stored as given", stored == addrs, stored)
    name = " ".join(["Word"] * 400)
    reply = " ".join(['Support "Desk" \\'] * 60) + " End"
    ids = []
    for c, a in zip(cids, addrs):
        ids.append(int(pg.psql(
            "INSERT INTO meisa.messages (contact_id, to_email, from_address, reply_to, kind, subject, text, message_id) "
            f"VALUES ({c}, {q(a)}, {q(name + ' <news@meisa.test>')}, "
            f"{q(chr(34) + reply.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34)) + chr(34) + ' <help@meisa.test>')}, "
            f"'marketing', 'quoted', 'body', 'quoted-' || gen_random_uuid() || '@meisa.test') RETURNING id")))
    ok = all_status(ids, "sent")
    check("quoted: every message is sent (none fails as an invalid address)", ok, status(ids))
    time.sleep(0.3)
    rcpts = sorted(r[2] for r in sink.received_log())
    check("quoted: RCPT TO carried each address as stored", rcpts == sorted(addrs), rcpts)
    got = sink.messages()
    tos = sorted(m["To"].addresses[0].addr_spec for _, m in got)
    check("quoted: the To: header parses to each address", tos == sorted(addrs), tos)
    for raw, m in got[:1]:
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        long_lines = [line for line in head if len(line) > 78 and not line.startswith(b"List-Unsubscribe: <")]
        check("long headers: every header line <= 78 (List-Unsubscribe: one line)", not long_lines,
              [len(x) for x in long_lines])
        check("long headers: From's display name unfolds to the 400 words",
              m["From"].addresses[0].display_name == name
              and m["From"].addresses[0].addr_spec == "news@meisa.test", str(m["From"])[:120])
        check("long headers: Reply-To's display name (quotes, backslashes) round-trips",
              m["Reply-To"].addresses[0].display_name == reply, str(m["Reply-To"])[:120])


def test_wake_at_commit():
    """A commit wakes the worker at once even with a long naptime."""
    pg.reload({"meisa.worker_naptime": "60s"})
    time.sleep(1.5)     # let the worker enter its long sleep
    sink.clear()
    c = add_contact("wake@example.com")
    t0 = time.time()
    mid = queue(c, "wake@example.com", subject="wake up")
    ok = wait_for(lambda: len(sink.files()) == 1, 5, 0.005)
    dt = time.time() - t0
    check(f"wake: message delivered {dt*1000:.0f} ms after commit with naptime 60s", ok and dt < 1.0)
    # rolled back: no message, no harm
    pg.psql("BEGIN; INSERT INTO meisa.messages (to_email, kind, subject, message_id) "
            "VALUES ('rb@example.com', 'transactional', 'rolled back', 'rb@meisa.test'); ROLLBACK;")
    pg.reload({"meisa.worker_naptime": None})
    all_status([mid], "sent")


def queue_many(to, n, tag, contact_id=None):
    """Queues n messages to 'to' in one transaction; returns their ids."""
    c = "NULL" if contact_id is None else str(contact_id)
    out = pg.psql("INSERT INTO meisa.messages (contact_id, to_email, kind, subject, text, message_id) "
                  f"SELECT {c}, {q(to)}, 'transactional', {q(tag)} || ' ' || i, 'x', "
                  f"{q(tag)} || '-' || i || '-' || gen_random_uuid() FROM generate_series(1, {n}) i RETURNING id")
    return [int(x) for x in out.split()]


def test_connection_reuse_and_rate():
    """With meisa.smtp_connections = 1 a batch uses one SMTP connection (4:
    at most 4); meisa.max_send_rate spaces sends."""
    pg.reload({"meisa.smtp_connections": "1"})
    time.sleep(1.2)     # the worker reloads between rounds (naptime 1 s)
    sink.clear()
    c = add_contact("batch@example.com")
    queue_many("batch@example.com", 30, "batch", c)
    ok = wait_for(lambda: len(sink.files()) == 30, 20)
    check("reuse: 30 messages committed together arrive", ok, len(sink.files()))
    check(f"reuse: with smtp_connections = 1 they used {sink.connections()} SMTP connection(s)",
          sink.connections() == 1)
    pg.reload({"meisa.smtp_connections": None})
    time.sleep(1.2)
    sink.clear()
    queue_many("batch@example.com", 30, "batch4", c)
    ok = wait_for(lambda: len(sink.files()) == 30, 20)
    check(f"reuse: with smtp_connections = 4 they used {sink.connections()} SMTP connection(s) (2..4)",
          ok and 2 <= sink.connections() <= 4, len(sink.files()))
    sink.clear()
    pg.reload({"meisa.max_send_rate": "10"})
    ids = [queue(c, "batch@example.com", subject=f"rate {i}") for i in range(12)]
    ok = all_status(ids, "sent", 20)
    times = sorted(float(r[0]) for r in sink.received_log())
    span = times[-1] - times[0] if len(times) > 1 else 0
    check(f"rate: 12 messages at max_send_rate=10 took {span:.2f}s (>= 1.0)", ok and span >= 1.0)
    pg.reload({"meisa.max_send_rate": None})


def exactly_once(ids):
    """Every message of ids arrived exactly once, with its own Message-ID."""
    want = sorted(msgids(ids).values())
    return sorted(received_ids()) == want


def test_multi_sessions():
    """meisa.smtp_connections = 4 (the default): one worker keeps four SMTP
    sessions busy at once (a server slow to answer RCPT TO holds one session,
    not the others); every message arrives exactly once with its Message-ID
    and is settled sent after one attempt."""
    sink.clear()
    sink.set_control({"rcpt_delay": 0.3})
    ids = queue_many("multi@example.com", 24, "multi")
    t0 = time.time()
    ok = all_status(ids, "sent", 30)
    dt = time.time() - t0
    time.sleep(0.3)
    check(f"multi: 24 messages with a 0.3 s RCPT answer each were sent in {dt:.1f} s (< 4 s, one session needs 7.2 s)",
          ok and dt < 4.0, status(ids))
    check(f"multi: the sink saw {sink.max_sessions('open')} connections open at once (4)",
          sink.max_sessions("open") == 4)
    check(f"multi: the sink had {sink.max_sessions('busy')} messages in progress at once (4)",
          sink.max_sessions("busy") == 4)
    check("multi: each arrived exactly once with its Message-ID", exactly_once(ids), received_ids())
    check("multi: each took one attempt", all(v[1] == 1 for v in status(ids).values()), status(ids))
    sink.set_control({})


def test_multi_tempfail_one():
    """A 4xx on one session retries only that message: the others are sent
    once, on the first attempt, meanwhile."""
    sink.clear()
    sink.set_control({"data": [{"match": "multi-later@", "reply": "451 4.3.0 try again later", "times": 1}],
                      "delay": 0.05})
    others = queue_many("multi-ok@example.com", 15, "multi-ok")
    later = queue(None, "multi-later@example.com", subject="4xx once among many")
    ok = all_status(others + [later], "sent", 20)
    st = status(others + [later])
    check("multi 4xx: all sent", ok, st)
    check("multi 4xx: the refused message took 2 attempts, the others 1",
          st[later][1] == 2 and all(st[i][1] == 1 for i in others), st)
    time.sleep(0.3)
    check("multi 4xx: each arrived exactly once", exactly_once(others + [later]), received_ids())
    sink.set_control({})


def test_multi_dropped_connection():
    """The server drops one session's connection after reading a message
    (not stored): that message is retried on a new connection and arrives
    once; the messages of the other sessions are neither lost nor sent twice."""
    sink.clear()
    sink.set_control({"drop": [{"match": "multi-cut@", "times": 1}], "delay": 0.05})
    first = queue_many("multi-a@example.com", 10, "multi-a")
    cut = queue(None, "multi-cut@example.com", subject="its connection is dropped")
    rest = queue_many("multi-b@example.com", 10, "multi-b")
    ids = first + [cut] + rest
    ok = all_status(ids, "sent", 25)
    st = status(ids)
    check("multi drop: all sent", ok, st)
    check("multi drop: the dropped message took 2 attempts", st[cut][1] == 2, st[cut])
    check("multi drop: the other messages took one attempt each (never resent)",
          all(st[i][1] == 1 for i in first + rest), st)
    time.sleep(0.3)
    check("multi drop: each arrived exactly once", exactly_once(ids), received_ids())
    sink.set_control({})


def test_multi_rate():
    """meisa.max_send_rate caps the worker as a whole, across its four sessions."""
    sink.clear()
    pg.reload({"meisa.max_send_rate": "20"})
    ids = queue_many("multi-rate@example.com", 31, "multi-rate")
    ok = all_status(ids, "sent", 30)
    times = sorted(float(r[0]) for r in sink.received_log())
    span = times[-1] - times[0] if len(times) > 1 else 0
    worst = max((sum(1 for t in times if s <= t < s + 1.0) for s in times), default=0)
    check(f"multi rate: 31 messages at max_send_rate=20 over 4 sessions took {span:.2f}s (>= 1.4)",
          ok and span >= 1.4)
    check(f"multi rate: at most {worst} messages arrived within any second (<= 21)", worst <= 21)
    pg.reload({"meisa.max_send_rate": None})


def test_smtp_down():
    """SMTP server down: messages wait (queued, retried), then go once it is up."""
    sink.stop()
    sink.clear()
    c = add_contact("down@example.com")
    ids = [queue(c, "down@example.com", subject=f"while down {i}") for i in range(3)]
    tried = wait_for(lambda: any(v[1] >= 1 for v in status(ids).values()), 10)
    st = status(ids)
    check("down: messages stay queued with an error while the server is down",
          tried and all(v[0] == "queued" for v in st.values())
          and any("connect" in v[2].lower() for v in st.values()), st)
    time.sleep(1.5)
    sink.start()
    ok = all_status(ids, "sent", 20)
    check("down: once the server is up every message goes", ok, status(ids))
    time.sleep(0.3)
    rec = received_ids()
    check("down: each arrived exactly once", sorted(rec) == sorted(msgids(ids).values()), rec)


def test_tempfail():
    """4xx then success: retried with backoff, delivered once."""
    sink.clear()
    sink.set_control({"rcpt": [{"match": "rcptlater@", "reply": "451 4.3.0 try again later", "times": 2}],
                      "data": [{"match": "datalater@", "reply": "452 4.3.1 insufficient storage", "times": 1}]})
    a = add_contact("rcptlater@example.com")
    b = add_contact("datalater@example.com")
    m1 = queue(a, "rcptlater@example.com", subject="rcpt 4xx twice")
    m2 = queue(b, "datalater@example.com", subject="data 4xx once")
    ok = all_status([m1, m2], "sent", 20)
    st = status([m1, m2])
    check("4xx: both delivered after retries", ok, st)
    check("4xx: attempts count the tries (3 and 2)", st[m1][1] == 3 and st[m2][1] == 2, st)
    time.sleep(0.3)
    check("4xx: each arrived once", len(sink.files()) == 2, len(sink.files()))
    contacts = pg.rows(f"SELECT bounced_at IS NULL FROM meisa.contacts WHERE id IN ({a},{b})")
    check("4xx: no bounce recorded", all(r[0] == "t" for r in contacts))
    sink.set_control({})


def test_permfail():
    """5xx to RCPT: failed + contact bounced; 5xx to DATA: failed only."""
    sink.clear()
    sink.set_control({"rcpt": [{"match": "nosuch@", "reply": "550 5.1.1 no such user here", "times": -1}],
                      "data": [{"match": "spamtrap@", "reply": "554 5.7.1 message content rejected", "times": -1}]})
    a = add_contact("nosuch@example.com")
    b = add_contact("spamtrap@example.com")
    m1 = queue(a, "nosuch@example.com", subject="to a dead address")
    m2 = queue(b, "spamtrap@example.com", subject="rejected content")
    ok = all_status([m1, m2], "failed", 15)
    st = status([m1, m2])
    check("5xx: both failed after one attempt", ok and st[m1][1] == 1 and st[m2][1] == 1, st)
    check("5xx: last_error keeps the server's answer", "550" in st[m1][2] and "554" in st[m2][2], st)
    ra = pg.rows(f"SELECT bounced_at IS NOT NULL, subscribed, unsubscribe_reason, unsubscribed_at IS NOT NULL "
                 f"FROM meisa.contacts WHERE id = {a}")[0]
    check("5xx on RCPT: contact marked bounced (bounced_at, unsubscribed, reason bounced)",
          ra == ["t", "f", "bounced", "t"], ra)
    act = pg.psql(f"SELECT detail->>'kind' || ' ' || (detail->>'detail') FROM meisa.activity "
                  f"WHERE contact_id = {a} AND kind = 'bounce'")
    check("5xx on RCPT: a bounce activity records the server's answer",
          act.startswith("hard RCPT: 550 5.1.1"), act)
    listed = pg.psql("SELECT reason FROM meisa.unsubscribed_emails WHERE email = 'nosuch@example.com'")
    check("5xx on RCPT: listed in meisa.unsubscribed_emails as bounced", listed == "bounced", listed)
    rb = pg.rows(f"SELECT bounced_at IS NULL, subscribed FROM meisa.contacts WHERE id = {b}")[0]
    check("5xx on DATA: contact not bounced", rb == ["t", "t"], rb)
    m3 = queue(a, "nosuch@example.com", subject="after the bounce")
    ok = wait_for(lambda: status([m3])[m3][0] == "suppressed", 10)
    check("5xx: later mail to the bounced address is suppressed, not sent", ok, status([m3]))
    check("5xx: the sink stored nothing", len(sink.files()) == 0)
    sink.set_control({})


def session(sql_lines=None, sql=None):
    """A psql session running in the background (stdin kept open when sql_lines)."""
    args = [os.path.join(BINDIR, "psql"), "-h", BASE, "-p", str(PG_PORT), "-U", "postgres",
            "-d", "meisa_test", "-XAtq"]
    if sql is not None:
        args += ["-c", sql]
    p = subprocess.Popen(args, stdin=subprocess.PIPE if sql is None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if sql is None:
        for line in sql_lines or []:
            p.stdin.write(line + "\n")
        p.stdin.flush()
    return p


def lock_waiters():
    return int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND query LIKE '%meisa_deliver%'"))


def test_deliver_bounce_order():
    """Two meisa_deliver calls whose batches hold messages to the same two
    RCPT-rejected contacts in opposite orders: the bounces are marked in
    contact id order after the batch, so the calls do not deadlock.  A
    test-only trigger on meisa.contacts holds each bounce on an advisory lock
    until both calls are inside their batches."""
    sink.clear()
    pg.reload({"meisa.smtp_url": ""})  # the worker leaves these messages alone
    sink.set_control({"rcpt": [{"match": "dead-", "reply": "550 5.1.1 no such user here", "times": -1}]})
    a = add_contact("dead-a@example.com")
    b = add_contact("dead-b@example.com")
    ids = []
    for i, c in enumerate([a, b, b, a]):
        to = "dead-a@example.com" if c == a else "dead-b@example.com"
        mid = queue(c, to, subject=f"bounce order {i}")
        pg.psql(f"UPDATE meisa.messages SET next_attempt_at = now() - interval '{10 - i} min' WHERE id = {mid}")
        ids.append(mid)
    pg.psql("CREATE FUNCTION public.bounce_pause() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_advisory_xact_lock_shared(4244); RETURN NULL; END $$; "
            "CREATE TRIGGER bounce_pause AFTER UPDATE ON meisa.contacts "
            "FOR EACH ROW EXECUTE FUNCTION public.bounce_pause()")
    deadlocks_before = pg.log_text().count("deadlock detected")
    holder = session(["SELECT pg_advisory_lock(4244);"])
    wait_for(lambda: pg.psql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted") == "1", 10)
    deliver = f"SET meisa.smtp_url = 'smtp://127.0.0.1:{SMTP_PORT}'; SELECT meisa_deliver(2)"
    first = session(sql=deliver)
    wait_for(lambda: lock_waiters() >= 1, 10)
    second = session(sql=deliver)
    both = wait_for(lambda: lock_waiters() >= 2, 10)
    holder.stdin.write("SELECT pg_advisory_unlock(4244);\n")
    holder.stdin.close()
    holder.wait(10)
    outs = [p.communicate(timeout=30) for p in (first, second)]
    pg.psql("DROP TRIGGER bounce_pause ON meisa.contacts; DROP FUNCTION public.bounce_pause()")
    pg.reload({"meisa.smtp_url": None})
    sink.set_control({})
    errs = outs[0][1] + outs[1][1]
    check("two meisa_deliver with crossed bounces: both were inside their batches at once", both)
    check("two meisa_deliver with crossed bounces: no deadlock, no failed bounce",
          "deadlock" not in errs and "could not mark" not in errs
          and pg.log_text().count("deadlock detected") == deadlocks_before, errs)
    bounced = pg.psql(f"SELECT count(*) FROM meisa.contacts WHERE id IN ({a}, {b}) AND bounced_at IS NOT NULL")
    check("two meisa_deliver with crossed bounces: both contacts bounced", bounced == "2", bounced)
    st = status(ids)
    check("two meisa_deliver with crossed bounces: every message failed or suppressed",
          all(v[0] in ("failed", "suppressed") for v in st.values()), st)


def test_smtp_url_unset():
    """Without meisa.smtp_url the worker delivers nothing and logs it once."""
    sink.clear()
    pg.reload({"meisa.smtp_url": ""})
    c = add_contact("nourl@example.com")
    ids = [queue(c, "nourl@example.com", subject=f"no url {i}") for i in range(2)]
    time.sleep(2.5)
    st = status(ids)
    check("no smtp_url: messages stay queued, not attempted",
          all(v[0] == "queued" and v[1] == 0 for v in st.values()), st)
    n = pg.log_text().count("meisa.smtp_url is not set")
    check(f"no smtp_url: logged once ({n})", n == 1)
    # queued mail that cannot leave must not shorten the sleep: the worker
    # used to wake every 100 ms while messages waited for an smtp_url
    wakeups = worker_wakeups(2.0)
    check(f"no smtp_url: the worker sleeps its naptime (1 s), not 100 ms ({wakeups} wakeups in 2 s)",
          wakeups is not None and wakeups < 10, wakeups)
    # meisa_deliver() sends one batch synchronously with the session's smtp_url
    sink.clear()
    more = [queue(c, "nourl@example.com", subject=f"by meisa_deliver {i}") for i in range(3)]
    n = pg.psql(f"SET meisa.smtp_url = 'smtp://127.0.0.1:{SMTP_PORT}'; SELECT meisa_deliver(3)")
    # its sessions: meisa.smtp_connections (4), at most one per claimed message
    check(f"meisa_deliver(3): sent {n} of the 5 waiting, over {sink.connections()} connection(s) (1..3)",
          n == "3" and len(sink.files()) == 3 and 1 <= sink.connections() <= 3, (n, len(sink.files())))
    pg.reload({"meisa.smtp_url": None})
    check("no smtp_url: sent once it is set again", all_status(ids + more, "sent", 10), status(ids + more))


def worker_wakeups(seconds):
    """Voluntary context switches of the worker over 'seconds' (one per sleep)."""
    def ctxt():
        pid = pg.worker_pid()
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        return int(line.split()[1])
        except (OSError, TypeError):
            return None
    a = ctxt()
    time.sleep(seconds)
    b = ctxt()
    return None if a is None or b is None else b - a


def test_worker_stats():
    """The worker reports its table statistics, so autovacuum sees its updates."""
    def upd():
        return int(pg.psql("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relid = 'meisa.messages'::regclass"))
    before = upd()
    c = add_contact("stats@example.com")
    ids = [queue(c, "stats@example.com", subject=f"stats {i}") for i in range(3)]
    check("stats: sent", all_status(ids, "sent", 10), status(ids))
    # claim + settle: at least two updates per message, reported before the worker sleeps
    ok = wait_for(lambda: upd() >= before + 6, 5)
    check(f"stats: the worker's updates of meisa.messages reach pg_stat_user_tables ({before} -> {upd()})", ok)


def test_run_due_hook():
    """The worker calls meisa_run_due(timestamptz) each round when it exists."""
    if pg.psql("SELECT to_regprocedure('public.meisa_run_due(timestamptz)') IS NOT NULL") == "t":
        # the extension's own meisa_run_due: test_api's sequence step went through it
        check("run_due: the worker runs the extension's meisa_run_due each round without an error",
              not re.search(r"ERROR:.*run_due", pg.log_text()))
        # a failing meisa_run_due is logged and does not hold up delivery
        sink.clear()
        pg.psql("ALTER FUNCTION public.meisa_run_due(timestamptz) RENAME TO meisa_run_due_saved")
        pg.psql("""CREATE FUNCTION public.meisa_run_due(at timestamptz) RETURNS int LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION 'run_due test failure'; END $$""")
        try:
            logged = wait_for(lambda: pg.log_text().count("run_due test failure") >= 2, 10)
            check("run_due: a failing meisa_run_due is logged (every round)", logged)
            c = add_contact("rundue-fails@example.com")
            mid = queue(c, "rundue-fails@example.com", subject="despite run_due failing")
            ok = all_status([mid], "sent", 10)
            check("run_due: while meisa_run_due fails, mail still goes", ok, status([mid]))
        finally:
            pg.psql("DROP FUNCTION public.meisa_run_due(timestamptz)")
            pg.psql("ALTER FUNCTION public.meisa_run_due_saved(timestamptz) RENAME TO meisa_run_due")
        return
    sink.clear()
    pg.psql("CREATE TABLE public.run_due_calls (at timestamptz)")
    pg.psql("""CREATE FUNCTION public.meisa_run_due(at timestamptz) RETURNS int LANGUAGE sql AS $$
                 INSERT INTO public.run_due_calls VALUES (at);
                 INSERT INTO meisa.messages (to_email, kind, subject, text, message_id)
                 SELECT 'due@example.com', 'transactional', 'from run_due', 'x', 'due-' || gen_random_uuid()
                  WHERE (SELECT count(*) FROM public.run_due_calls) = 1;
                 SELECT 1 $$""")
    ok = wait_for(lambda: len(sink.files()) >= 1, 8)
    calls = int(pg.psql("SELECT count(*) FROM public.run_due_calls"))
    check(f"run_due: called by the worker ({calls} calls), its message delivered in the same round",
          ok and calls >= 1)
    pg.psql("DROP FUNCTION public.meisa_run_due(timestamptz); DROP TABLE public.run_due_calls")


def test_starttls_auth():
    """smtp:// upgrades with STARTTLS when offered, authenticates with the
    password in meisa.smtp_password_file, verifies the certificate
    (meisa.smtp_ca_file); a wrong password (the file changed, read again at
    the reload) or an unknown CA keeps the message queued with the reason."""
    cert = os.path.join(BASE, "sink-cert.pem")
    key = os.path.join(BASE, "sink-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    os.chmod(cert, 0o644)
    tls = Sink(SMTP_PORT + 1, BASE, name="tls",
               env={"SINK_TLS_CERT": cert, "SINK_TLS_KEY": key, "SINK_AUTH": "meisa:s3cret"})
    tls.start()
    password_file = os.path.join(BASE, "smtp_password")
    write_secret(password_file, "s3cret")
    try:
        tls.clear()
        pg.reload({"meisa.smtp_url": f"smtp://127.0.0.1:{SMTP_PORT + 1}", "meisa.smtp_user": "meisa",
                   "meisa.smtp_password_file": password_file, "meisa.smtp_ca_file": cert})
        c = add_contact("tls@example.com")
        m1 = queue(c, "tls@example.com", subject="over STARTTLS")
        ok = all_status([m1], "sent", 10)
        check("tls: delivered after STARTTLS and AUTH", ok and len(tls.files()) == 1, status([m1]))
        check("tls: the server saw TLS and the user", tls.mail_lines() == ["MAIL tls=1 auth=meisa"],
              tls.mail_lines())
        write_secret(password_file, "wrong")
        pg.reload({})
        m2 = queue(c, "tls@example.com", subject="wrong password")
        tried = wait_for(lambda: status([m2])[m2][0] == "queued" and status([m2])[m2][1] >= 1, 10)
        st = status([m2])[m2]
        check("tls: a wrong password (file changed, reload) keeps the message queued, AUTH refusal in last_error",
              tried and st[0] == "queued" and "535" in st[2], st)
        write_secret(password_file, "s3cret")
        pg.reload({"meisa.smtp_ca_file": None})
        m3 = queue(c, "tls@example.com", subject="unknown CA")
        tried = wait_for(lambda: status([m3])[m3][0] == "queued" and status([m3])[m3][1] >= 1, 10)
        st = status([m3])[m3]
        check("tls: an unverifiable certificate keeps the message queued",
              tried and st[0] == "queued" and "certificate" in st[2].lower(), st)
        pg.reload({"meisa.smtp_ca_file": cert})
        ok = all_status([m2, m3], "sent", 15)
        check("tls: both go once the settings are right", ok and len(tls.files()) == 3, status([m2, m3]))
        # smtps://: TLS from the start
        smtps = Sink(SMTP_PORT + 2, BASE, name="smtps",
                     env={"SINK_TLS_CERT": cert, "SINK_TLS_KEY": key, "SINK_IMPLICIT_TLS": "1",
                          "SINK_AUTH": "meisa:s3cret"})
        smtps.start()
        try:
            smtps.clear()
            pg.reload({"meisa.smtp_url": f"smtps://127.0.0.1:{SMTP_PORT + 2}"})
            m4 = queue(c, "tls@example.com", subject="over smtps")
            ok = all_status([m4], "sent", 10)
            check("smtps: delivered over implicit TLS with AUTH",
                  ok and len(smtps.files()) == 1 and smtps.mail_lines() == ["MAIL tls=1 auth=meisa"],
                  (status([m4]), smtps.mail_lines()))
        finally:
            smtps.stop()
    finally:
        pg.reload({"meisa.smtp_url": None, "meisa.smtp_user": None, "meisa.smtp_password_file": None,
                   "meisa.smtp_ca_file": None})
        tls.stop()


# ------------------------------------------- an SMTP server that stops answering

def worker_xact_age():
    """Seconds the worker's current transaction has been open (0: none)."""
    out = pg.psql("SELECT coalesce(extract(epoch FROM clock_timestamp() - xact_start), 0) "
                  "FROM pg_stat_activity WHERE backend_type = 'meisa delivery'")
    return float(out) if out else 0.0


def sink_time(msgid):
    """When the sink stored the message with that Message-ID (None: not yet)."""
    for r in sink.received_log():
        if r[1] == msgid:
            return float(r[0])
    return None


def via_peer(settings=None):
    """meisa.smtp_url points at the hostile peer (plus other settings)."""
    pg.reload(dict({"meisa.smtp_url": f"smtp://127.0.0.1:{PEER_PORT}"}, **(settings or {})))
    time.sleep(1.2)     # the worker reloads between rounds (naptime 1 s)


def peer_reset():
    peer.release()
    pg.reload({"meisa.smtp_url": None, "meisa.smtp_timeout": None,
               "meisa.smtp_connect_timeout": None, "meisa.lease_time": None})


def next_message_after_stall(mode, event, budget, what):
    """A stall in 'mode' begins with 'event'; a message queued then must
    reach the sink within 'budget' seconds of it, while no transaction of
    the worker stays open longer than 3 s.  Returns the stalled message id."""
    sink.clear()
    to = f"stall-{mode}@example.com"
    c = add_contact(to)
    peer.arm(mode)
    m1 = queue(c, to, subject=f"stalled ({mode})")
    began = wait_for(lambda: peer.first(event), 10)
    check(f"stall ({mode}): the peer stalls the session ({event})", began, peer.events)
    if not began:
        return m1
    t0 = began[0]
    m2 = queue(c, to, subject=f"after the stall ({mode})")
    mid2 = msgids([m2])[m2]
    oldest = 0.0
    while time.time() < t0 + budget + STALL_PATIENCE and sink_time(mid2) is None:
        oldest = max(oldest, worker_xact_age())
        time.sleep(0.1)
    got = sink_time(mid2)
    dt = (got - t0) if got else None
    check(f"stall ({mode}): the next message went out "
          f"{'%.1f s' % dt if dt is not None else 'not at all'} after the stall began "
          f"(within {what} + 4 s = {budget} s)", dt is not None and dt <= budget)
    check(f"stall ({mode}): no worker transaction stayed open longer than 3 s (longest {oldest:.1f} s)",
          oldest < 3.0)
    return m1


def test_stall_after_data():
    """A server that answers DATA with 354 and never answers the message:
    after meisa.smtp_timeout the message is queued again and the dead
    connection is dropped at once (no QUIT waiting for an answer), outside
    any transaction, so the next message leaves within smtp_timeout plus a
    few seconds; the stalled message is retried with the same Message-ID."""
    via_peer()
    try:
        m1 = next_message_after_stall("data", "stalled", 5 + 4, "smtp_timeout 5 s")
        check("stall (data): the dead connection was dropped without a QUIT",
              wait_for(lambda: peer.first("closed"), 5) and peer.first("quit") is None, peer.events)
        stalled = peer.first("stalled")
        ok = all_status([m1], "sent", 15)
        st = status([m1])[m1]
        mid = msgids([m1])[m1]
        check("stall (data): the stalled message is sent later (attempt 2), same Message-ID, once",
              ok and st[1] == 2 and stalled is not None and stalled[1] == mid
              and received_ids().count(mid) == 1, (st, stalled, received_ids()))
    finally:
        peer_reset()


def test_stall_greeting():
    """A server that accepts the TCP connection and never greets: the
    message waits meisa.smtp_connect_timeout at most, the next goes out."""
    via_peer()
    try:
        m1 = next_message_after_stall("greeting", "stall", 2 + 4, "smtp_connect_timeout 2 s")
        check("stall (greeting): the stalled message is sent later",
              all_status([m1], "sent", 15), status([m1]))
    finally:
        peer_reset()


def test_stall_quit():
    """A server that accepts the message and never answers QUIT: the
    worker's QUIT at the end of a round waits meisa.smtp_connect_timeout at
    most (libcurl alone waits 120 s), the next message goes out."""
    via_peer()
    try:
        m1 = next_message_after_stall("quit", "quit", 2 + 4, "smtp_connect_timeout 2 s")
        check("stall (quit): the message the peer accepted is sent",
              status([m1])[m1][0] == "sent", status([m1]))
    finally:
        peer_reset()


def test_stall_refused():
    """A server that refuses RCPT TO with 451 and then answers nothing (not
    the QUIT libcurl sends after a refused command, which it used to await
    120 s): the message is retried, the next one leaves within
    meisa.smtp_timeout plus a few seconds."""
    via_peer()
    try:
        m1 = next_message_after_stall("rcpt", "rcpt", 5 + 4, "smtp_timeout 5 s")
        ok = all_status([m1], "sent", 15)
        st = status([m1])[m1]
        check("stall (rcpt): the refused message is sent later (attempt 2)", ok and st[1] == 2, st)
    finally:
        peer_reset()


def test_stall_deliver_cancel():
    """meisa_deliver() against a server that never answers the message
    (smtp_timeout 30 s): a statement_timeout of 2 s ends the call within
    5 s (the answer is awaited 1 s more once cancelled, the dead connection
    dropped without a QUIT); the rolled-back claim leaves the message queued."""
    pg.reload({"meisa.smtp_url": ""})   # the worker leaves the message alone
    try:
        to = "stall-deliver@example.com"
        c = add_contact(to)
        peer.arm("data")
        m = queue(c, to, subject="meisa_deliver while the server hangs")
        t0 = time.time()
        p = session(sql=f"SET meisa.smtp_url = 'smtp://127.0.0.1:{PEER_PORT}'; SET meisa.smtp_timeout = '30s'; "
                        "SET statement_timeout = '2s'; SELECT meisa_deliver(1)")
        try:
            out, err = p.communicate(timeout=5 + STALL_PATIENCE + 150)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        dt = time.time() - t0
        check(f"stall (meisa_deliver): statement_timeout 2 s ended the call after {dt:.1f} s (< 5 s)",
              dt < 5 and "statement timeout" in err, err.strip())
        check("stall (meisa_deliver): the peer got the message, then the connection was dropped without a QUIT",
              peer.first("stalled") is not None and peer.first("quit") is None
              and wait_for(lambda: peer.first("closed"), 2), peer.events)
        st = status([m])[m]
        check("stall (meisa_deliver): the message is still queued, not attempted", st[:2] == ("queued", 0), st)
    finally:
        peer_reset()
    check("stall (meisa_deliver): the worker sends it", all_status([m], "sent", 15), status([m]))


def test_stall_terminate(mode, event):
    """pg_terminate_backend of the worker while the server hangs (with
    smtp_timeout and smtp_connect_timeout at 30 s): the worker exits within
    5 s, drops the connection and leaves nothing 'sending'; the message is
    sent later by the restarted worker (at least once, same Message-ID)."""
    via_peer({"meisa.smtp_timeout": "30s", "meisa.smtp_connect_timeout": "30s", "meisa.lease_time": "60s"})
    pid = pg.worker_pid()
    try:
        sink.clear()
        to = f"terminate-{mode}@example.com"
        c = add_contact(to)
        peer.arm(mode)
        m = queue(c, to, subject=f"terminated while stalled ({mode})")
        began = wait_for(lambda: peer.first(event), 10)
        check(f"terminate ({mode}): the peer stalls the session ({event})", began, peer.events)
        time.sleep(0.5)
        pid = pg.worker_pid()
        t0 = time.time()
        r = pg.psql(f"SELECT pg_terminate_backend({pid}, 5000)", check=False)
        if r != "t":
            wait_for(lambda: pg.worker_pid() != pid, STALL_PATIENCE)
        dt = time.time() - t0
        when = f"exited {dt:.1f} s" if pg.worker_pid() != pid else f"was still running {dt:.1f} s"
        check(f"terminate ({mode}): the worker {when} after pg_terminate_backend (< 5 s)",
              r == "t" and dt < 5, r)
        check(f"terminate ({mode}): the worker dropped the connection",
              wait_for(lambda: peer.first("closed"), 2), peer.events)
        st = status([m])[m]
        check(f"terminate ({mode}): nothing left 'sending'", st[0] != "sending" or r != "t", st)
    finally:
        peer_reset()
    back = wait_for(lambda: pg.worker_pid() not in (None, pid), 20)
    check(f"terminate ({mode}): the worker is restarted", back)
    ok = all_status([m], "sent", 20)
    time.sleep(0.3)
    mid = msgids([m])[m]
    n = received_ids().count(mid)
    if mode == "quit":
        # the peer accepted it: sent, and not again
        check("terminate (quit): the message the peer accepted stays sent, not resent",
              ok and n == 0, (status([m]), n))
    else:
        check(f"terminate ({mode}): the message is sent once by the restarted worker, same Message-ID",
              ok and n == 1, (status([m]), n))


def test_drop_waits_for_worker():
    """DROP EXTENSION and a worker round never deadlock: each worker
    transaction first takes a share lock on the extension, which DROP
    EXTENSION holds exclusively before it locks the member tables."""
    wpid = pg.worker_pid()
    drop = subprocess.Popen([os.path.join(pg.bindir, "psql"), "-h", pg.base, "-p", str(pg.port),
                             "-U", "postgres", "-d", "meisa_test", "-XAtq", "-v", "ON_ERROR_STOP=1"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    drop.stdin.write("BEGIN;\nDROP EXTENSION meisa CASCADE;\nSELECT pg_sleep(3);\nROLLBACK;\n")
    drop.stdin.close()
    waiting = wait_for(lambda: pg.psql(
        "SELECT count(*) FROM pg_locks WHERE pid = %d AND NOT granted AND locktype = 'object' "
        "AND classid = 'pg_extension'::regclass" % wpid) == "1", 2.5)
    drop.wait(timeout=20)
    err = drop.stderr.read()
    check("drop: while DROP EXTENSION is uncommitted the worker waits on the extension's lock", waiting)
    check("drop: the DROP EXTENSION transaction ran without a deadlock", drop.returncode == 0 and
          "deadlock" not in err, err.strip())
    check("drop: the same worker keeps running", pg.worker_pid() == wpid)
    c = add_contact("afterdrop@example.com")
    mid = queue(c, "afterdrop@example.com", subject="after a rolled-back DROP EXTENSION")
    check("drop: mail is delivered after the rolled-back DROP", all_status([mid], "sent", 10), status([mid]))


def test_extension_recreated():
    """DROP EXTENSION: the worker waits (logged once); CREATE EXTENSION: it delivers again."""
    sink.clear()
    pg.psql("DROP EXTENSION meisa CASCADE")
    time.sleep(2.5)
    n = pg.log_text().count("extension meisa is not installed")
    check(f"recreate: without the extension the worker waits, logged once ({n})", n == 1)
    check("recreate: the worker keeps running", pg.worker_pid() is not None)
    pg.psql("CREATE EXTENSION meisa")
    c = add_contact("again@example.com")
    mid = queue(c, "again@example.com", subject="after CREATE EXTENSION")
    check("recreate: mail is delivered after CREATE EXTENSION", all_status([mid], "sent", 10), status([mid]))


def test_stall_terminate_data():
    test_stall_terminate("data", "stalled")


def test_stall_terminate_greeting():
    test_stall_terminate("greeting", "stall")


def test_stall_terminate_quit():
    test_stall_terminate("quit", "quit")


def main():
    print(f"meisa live delivery tests: bindir {BINDIR}, PostgreSQL port {PG_PORT}, SMTP port {SMTP_PORT}")
    t0 = time.time()
    try:
        pg.init()
        sink.start()
        peer.start()
        pg.start()
        pg.psql("CREATE DATABASE meisa_test", db="postgres")
        pg.psql("CREATE EXTENSION meisa")
        check("the worker starts with the server",
              wait_for(lambda: pg.worker_pid() is not None, 10))
        tests = (test_basic, test_api, test_quoted_addresses_and_long_headers, test_wake_at_commit, test_connection_reuse_and_rate,
                 test_multi_sessions, test_multi_tempfail_one, test_multi_dropped_connection, test_multi_rate,
                 test_smtp_down,
                 test_tempfail, test_permfail, test_smtp_url_unset, test_deliver_bounce_order, test_worker_stats,
                 test_run_due_hook, test_starttls_auth, test_stall_after_data, test_stall_greeting, test_stall_quit,
                 test_stall_refused, test_stall_deliver_cancel,
                 test_stall_terminate_data, test_stall_terminate_greeting, test_stall_terminate_quit,
                 test_drop_waits_for_worker, test_extension_recreated)
        only = [x for x in os.environ.get("MEISA_DELIVERY_ONLY", "").split(",") if x]
        for t in tests:
            if only and not any(t.__name__.startswith("test_" + o) for o in only):
                continue
            try:
                t()
            except Exception:
                check(getattr(t, "__name__", "test") + " raised", False, traceback.format_exc())
        check("no server crash in the log",
              "terminated by signal 11" not in pg.log_text() and "TRAP" not in pg.log_text())
    finally:
        try:
            pg.stop(force=True)
        finally:
            sink.stop()
            peer.stop()
    print(f"time {time.time() - t0:.0f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
