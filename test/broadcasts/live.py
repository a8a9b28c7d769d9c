#!/usr/bin/python3
"""live.py: broadcasts delivered for real, and the topic unsubscribe tokens
of the mail that arrived.

Starts the SMTP sink of the delivery tests (test/delivery/smtp_sink.py, on
aiosmtpd; port 26493) and a private cluster with meisa preloaded
(127.0.0.1:26492, the delivery tests' settings: meisa.smtp_url to the sink,
meisa.secret_file, meisa.unsubscribe_base_url; meisa.broadcast_batch_size
2, so that the worker queues each broadcast in several batches).  Topics 'product-updates'
and 'tips', marketing templates of each and one without a topic, a segment
of five contacts (two more outside it).  The worker queues each broadcast
(meisa_run_due) and delivers it; the checks read what the sink received:
one message per member, personalised, List-Unsubscribe with a 60-character
token (44 for mail without a topic), List-Unsubscribe-Post One-Click.  The
token of one received message, given to meisa_unsubscribe, leaves
'product-updates' only: the contact still gets a broadcast of 'tips', and a
second broadcast of 'product-updates' gives it a message 'suppressed'
(topic_unsubscribed) that never reaches the sink.  The token of a message
without a topic unsubscribes from all marketing mail.
Prints "N passed, M failed" last.

Usage (as root): live.py [BINDIR]
"""
import email.utils
import os
import re
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "delivery"))
from lib import Cluster, Sink, wait_for  # noqa: E402

BINDIR = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/postgresql/15/bin"
BASE = "/tmp/meisa-broadcasts-live"
PG_PORT = 26492
SMTP_PORT = 26493
UNSUB = "https://app.test/unsubscribe/"
MEMBERS = ["ann", "bob", "cat", "dan", "eve"]
OTHERS = ["out1", "out2"]

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


# batches of 2: the worker queues each broadcast of five in three calls
pg = Cluster(BINDIR, BASE, PG_PORT, SMTP_PORT, extra_conf="meisa.broadcast_batch_size = 2")
sink = Sink(SMTP_PORT, BASE)


def q(s):
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def addr(name):
    return name + "@example.com"


def setup():
    contacts = ", ".join(
        f"({q(addr(n))}, {q(n.capitalize())}, '{{\"beta\": {'true' if n in MEMBERS else 'false'}}}')"
        for n in MEMBERS + OTHERS)
    pg.psql(f"""
INSERT INTO meisa.topics (name, description) VALUES
  ('product-updates', 'What is new'), ('tips', 'How to use it');
INSERT INTO meisa.templates (key, kind, subject, text, html, topic) VALUES
  ('pu', 'marketing', 'Product update for {{{{first_name}}}}', 'Hi {{{{first_name}}}}, version 2 is out.',
   '<p>Hi {{{{first_name}}}}, version 2 is out.</p>', 'product-updates'),
  ('tip', 'marketing', 'A tip for {{{{first_name}}}}', 'Hi {{{{first_name}}}}, try the shortcuts.', NULL, 'tips'),
  ('plain', 'marketing', 'News for {{{{first_name}}}}', 'Hi {{{{first_name}}}}, general news.', NULL, NULL);
INSERT INTO meisa.segments (name, conditions)
  VALUES ('beta', jsonb_build_object('field', 'custom_fields.beta', 'eq', true));
INSERT INTO meisa.contacts (email, first_name, custom_fields) VALUES {contacts};
""")


def broadcast(name, template, topic=None):
    """Creates and schedules a broadcast to segment 'beta'; returns its id."""
    bid = pg.psql(f"INSERT INTO meisa.broadcasts (name, template, segment, topic) VALUES "
                  f"({q(name)}, {q(template)}, 'beta', {q(topic) if topic else 'NULL'}) RETURNING id")
    pg.psql(f"SELECT meisa_schedule_broadcast({q(name)})")
    return bid


def settled(bid):
    """True when broadcast bid is 'sent' and none of its messages is still queued or sending."""
    out = pg.psql(f"SELECT b.status = 'sent' AND NOT EXISTS (SELECT 1 FROM meisa.messages m "
                  f"WHERE m.broadcast_id = b.id AND m.status IN ('queued', 'sending')) "
                  f"FROM meisa.broadcasts b WHERE b.id = {bid}")
    return out == "t"


def statuses(bid):
    """{email: (status, last_error)} of broadcast bid's messages."""
    return {r[0]: (r[1], r[2]) for r in pg.rows(
        f"SELECT to_email, status, coalesce(last_error, '') FROM meisa.messages "
        f"WHERE broadcast_id = {bid} ORDER BY 1")}


def received():
    """{recipient: message} of what the sink holds (a recipient twice: the list under its key)."""
    got = {}
    for raw, msg in sink.messages():
        got.setdefault(email.utils.parseaddr(str(msg["To"]))[1].lower(), []).append(msg)
    return got


def token_of(msg):
    """The token in a message's List-Unsubscribe header, or None."""
    m = re.fullmatch(r"<" + re.escape(UNSUB) + r"([A-Za-z0-9_-]+)>", str(msg.get("List-Unsubscribe", "")).strip())
    return m.group(1) if m else None


def body_text(msg):
    part = msg.get_body(preferencelist=("plain",))
    return part.get_content() if part else ""


def deliver(label, bid, want_received, want_status):
    """Waits for broadcast bid to settle and the sink to hold want_received
    (names); checks each member's message status; returns {email: msg}."""
    ok = wait_for(lambda: settled(bid), 60, 0.3)
    check(f"{label}: the worker queues and sends the broadcast", ok, statuses(bid))
    want = {addr(n) for n in want_received}
    wait_for(lambda: len(sink.files()) >= len(want), 20, 0.2)
    time.sleep(1.5)  # anything more that arrives would be a wrong message
    got = received()
    check(f"{label}: the sink received one message per recipient ({len(want)})",
          set(got) == want and all(len(v) == 1 for v in got.values()),
          {k: len(v) for k, v in got.items()})
    st = statuses(bid)
    want_st = {addr(n): s for n, s in want_status.items()}
    check(f"{label}: one message per member with the expected status", st == want_st, st)
    return {k: v[0] for k, v in got.items()}


def test_first_broadcast():
    """pu1 to the segment: five messages, topic tokens, RFC 8058 headers."""
    bid = broadcast("pu1", "pu")
    got = deliver("pu1", bid, MEMBERS, {n: ("sent", "") for n in MEMBERS})
    toks = {k: token_of(m) for k, m in got.items()}
    check("pu1: every message has List-Unsubscribe <base + 60-character token>",
          len(toks) == 5 and all(t is not None and len(t) == 60 for t in toks.values()),
          {k: str(m.get("List-Unsubscribe")) for k, m in got.items()})
    check("pu1: every message has List-Unsubscribe-Post: List-Unsubscribe=One-Click",
          all(str(m.get("List-Unsubscribe-Post", "")).strip() == "List-Unsubscribe=One-Click" for m in got.values()))
    check("pu1: each message is rendered for its recipient (subject and body name them)",
          all(str(m["Subject"]) == f"Product update for {k.split('@')[0].capitalize()}"
              and f"Hi {k.split('@')[0].capitalize()}, version 2 is out." in body_text(m)
              for k, m in got.items()),
          {k: str(m["Subject"]) for k, m in got.items()})
    check("pu1: the tokens differ per contact", len(set(toks.values())) == 5)
    names = {k: pg.psql(f"SELECT meisa.unsubscribe_token_topic({q(t)})") for k, t in toks.items() if t}
    check("pu1: each token names topic 'product-updates'",
          all(v == "product-updates" for v in names.values()), names)
    stats = pg.rows("SELECT status, audience, queued, sent, failed, suppressed FROM meisa.broadcast_stats "
                    "WHERE broadcast = 'pu1'")
    batches = pg.psql(f"SELECT count(DISTINCT created_at) FROM meisa.messages WHERE broadcast_id = {bid}")
    check("pu1: the worker queued it in 3 transactions (batches of 2)", batches == "3", batches)
    check("pu1: meisa.broadcast_stats: sent, audience 5, 5 sent", stats == [["sent", "5", "0", "5", "0", "0"]], stats)
    return toks


def test_topic_token(toks):
    """ann's token leaves product-updates only."""
    r = pg.psql(f"SELECT meisa_unsubscribe({q(toks[addr('ann')])})")
    check("ann's token from the received mail: meisa_unsubscribe returns true", r == "t", r)
    outs = pg.rows("SELECT email, topic FROM meisa.topic_opt_outs ORDER BY 1")
    check("ann left 'product-updates' (meisa.topic_opt_outs)", outs == [[addr("ann"), "product-updates"]], outs)
    un = pg.psql("SELECT count(*) FROM meisa.unsubscribed_emails")
    sub = pg.psql(f"SELECT subscribed FROM meisa.contacts WHERE email = {q(addr('ann'))}")
    check("ann is still subscribed globally (not in meisa.unsubscribed_emails)", un == "0" and sub == "t", (un, sub))
    r = pg.psql(f"SELECT meisa_unsubscribe({q(toks[addr('ann')])})")
    check("the same token again changes nothing (false)", r == "f", r)


def test_other_topic():
    """tips1: ann still gets the other topic."""
    sink.clear()
    bid = broadcast("tips1", "tip")
    got = deliver("tips1 (topic tips)", bid, MEMBERS, {n: ("sent", "") for n in MEMBERS})
    tok = token_of(got.get(addr("ann"))) if addr("ann") in got else None
    check("tips1: ann's message carries a 60-character token of topic 'tips'",
          tok is not None and len(tok) == 60
          and pg.psql(f"SELECT meisa.unsubscribe_token_topic({q(tok)})") == "tips", tok)


def test_same_topic_again():
    """pu2: ann's message is suppressed and never reaches the sink."""
    sink.clear()
    bid = broadcast("pu2", "pu")
    want = {n: ("sent", "") for n in MEMBERS}
    want["ann"] = ("suppressed", "topic_unsubscribed")
    deliver("pu2 (product-updates again)", bid, [n for n in MEMBERS if n != "ann"], want)
    stats = pg.rows("SELECT audience, sent, suppressed FROM meisa.broadcast_stats WHERE broadcast = 'pu2'")
    check("pu2: meisa.broadcast_stats counts 4 sent, 1 suppressed", stats == [["5", "4", "1"]], stats)


def test_global_token():
    """plain1 (no topic): 44-character tokens that unsubscribe globally."""
    sink.clear()
    bid = broadcast("plain1", "plain")
    got = deliver("plain1 (no topic)", bid, MEMBERS, {n: ("sent", "") for n in MEMBERS})
    toks = {k: token_of(m) for k, m in got.items()}
    check("plain1: List-Unsubscribe tokens of 44 characters",
          len(toks) == 5 and all(t is not None and len(t) == 44 for t in toks.values()), toks)
    check("plain1: List-Unsubscribe-Post One-Click",
          all(str(m.get("List-Unsubscribe-Post", "")).strip() == "List-Unsubscribe=One-Click" for m in got.values()))
    r = pg.psql(f"SELECT meisa_unsubscribe({q(toks.get(addr('bob')) or 'x')})")
    check("bob's global token: meisa_unsubscribe returns true", r == "t", r)
    un = pg.rows("SELECT email, reason FROM meisa.unsubscribed_emails")
    check("bob is unsubscribed globally (meisa.unsubscribed_emails)", un == [[addr("bob"), "unsubscribed"]], un)
    outs = pg.psql(f"SELECT count(*) FROM meisa.topic_opt_outs WHERE email = {q(addr('bob'))}")
    check("bob's global unsubscribe is not a topic choice", outs == "0", outs)
    sink.clear()
    bid = broadcast("tips2", "tip")
    want = {n: ("sent", "") for n in MEMBERS}
    want["bob"] = ("suppressed", "unsubscribed")
    deliver("tips2 (after bob's global unsubscribe)", bid, [n for n in MEMBERS if n != "bob"], want)


def main():
    print(f"meisa live broadcast tests: bindir {BINDIR}, PostgreSQL port {PG_PORT}, SMTP port {SMTP_PORT}")
    t0 = time.time()
    try:
        pg.init()
        sink.start()
        pg.start()
        pg.psql("CREATE DATABASE meisa_test", db="postgres")
        pg.psql("CREATE EXTENSION meisa")
        check("the worker starts with the server", wait_for(lambda: pg.worker_pid() is not None, 10))
        setup()
        steps = [test_first_broadcast, test_topic_token, test_other_topic, test_same_topic_again,
                 test_global_token]
        toks = None
        for t in steps:
            try:
                if t is test_first_broadcast:
                    toks = t()
                elif t is test_topic_token:
                    if not toks or not toks.get(addr("ann")):
                        check("test_topic_token: a token of ann's message to start from", False)
                        continue
                    t(toks)
                else:
                    t()
            except Exception:
                check(t.__name__ + " raised", False, traceback.format_exc())
        inv = pg.psql("SELECT count(*) FROM meisa.check_invariants()")
        check("meisa.check_invariants() is empty", inv == "0", inv)
        log = pg.log_text()
        check("no server crash in the log", "terminated by signal" not in log and "TRAP" not in log)
    except Exception:
        check("setup raised", False, traceback.format_exc())
    finally:
        try:
            pg.stop(force=True)
        finally:
            sink.stop()
    print(f"time {time.time() - t0:.0f}s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
