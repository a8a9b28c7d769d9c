#!/usr/bin/python3
"""test/hardening/fuzz.py: hostile-input harness of meisa's SQL API.

Sends generated and mutated inputs through meisa_upsert, meisa_track,
meisa_trigger_email, meisa_add_tag, meisa.render, meisa.jsonb_diff,
meisa_unsubscribe (email or signed token), meisa.segment_count, and writes
of meisa.automations, meisa.templates and meisa.segments (whose rebuilds and
maintenance then run on every later write): random and mutated JSON, deep nesting, huge strings,
NUL bytes and invalid UTF-8 (rejected by the server's input functions in a
UTF8 database; passed through to meisa in a SQL_ASCII database), extreme
numbers, unicode in emails and tags, CR/LF in names and headers.

Asserts: no backend crash (the connection never drops and the server log
never says "terminated by signal"), every SQLSTATE seen is in the target's
allow-list, no statement runs into the timeout (a hang), a rejected write
leaves nothing behind (no more rows carry its fresh email, event id or
idempotency key after it than before it: a mutated email of an earlier input
can carry this input's number), and meisa.check_invariants() finds nothing at the end
(it compares every segment's members, kept by the writes, with its rule).  Every input
that breaks a rule is written to OUT/findings.jsonl (replayable).

Usage: fuzz.py --host SOCKETDIR --port PORT --db DB [--ascii-db DB]
               --count N --seed S --log SERVERLOG --out DIR
"""
import argparse
import collections
import json
import os
import random
import sys
import time

import psycopg2
import psycopg2.extensions

# SQLSTATEs every target may answer with: meisa's documented rejections
# (22023 bad payload, 22P02 malformed input, 54000 limit exceeded) and the
# server's own input checks (54001 nesting too deep for the stack, 22021
# invalid UTF-8, 22P05 \u0000 in jsonb, 22003 a number beyond numeric).
COMMON = {"22023", "22P02", "54000", "54001", "22021", "22P05", "22003"}
ALLOWED = {
    "upsert": COMMON | {"23505"},           # identity conflict
    # identity conflict; unknown external_id; occurred_at not a time (22007/22008)
    "track": COMMON | {"23505", "P0002", "22007", "22008"},
    "trigger_email": COMMON | {"23505", "42704"},   # unknown template
    "add_tag": COMMON | {"23505", "P0002"},   # P0002: no contact has that email
    "render": COMMON,
    "jsonb_diff": COMMON,
    "unsubscribe": COMMON | {"42704", "P0002"},   # P0002: no contact has that email
    # direct table writes: the table's constraints answer too
    "automation": COMMON | {"23505", "23514", "23502", "42704"},
    "template": COMMON | {"23505", "23514", "23502"},
    # segments: unknown segment read (42704), still read by another (2BP01)
    "segment": COMMON | {"23505", "23502", "42704", "2BP01"},
    "segment_count": COMMON | {"42704", "22004"},
    # meisa_upsert on mutated JSON text: a mutation can turn the payload into
    # a valid one whose email and external_id belong to two contacts
    "raw_json": COMMON | {"23505"},         # identity conflict
}
NAMES = {
    "22023": "invalid_parameter_value", "22P02": "invalid_text_representation",
    "54000": "program_limit_exceeded", "54001": "statement_too_complex",
    "22021": "character_not_in_repertoire", "22P05": "untranslatable_character",
    "22003": "numeric_value_out_of_range", "23505": "unique_violation",
    "23514": "check_violation", "23502": "not_null_violation",
    "42704": "undefined_object", "57014": "query_canceled (timeout: a hang)",
    "XX000": "internal_error", "42883": "undefined_function", "P0002": "no_data_found",
    "22007": "invalid_datetime_format", "22008": "datetime_field_overflow",
    "2BP01": "dependent_objects_still_exist", "22004": "null_value_not_allowed",
}

WEIRD_STRINGS = [
    "", " ", "\t", "\r\n", "a\r\nBcc: injected@evil.test", "x\nSubject: injected",
    "\u0000", "\ud7ff", "\ue000", "\uffff", "\U0001F600", "\u202e\u202d", "\u200b",
    "e\u0301", "ＡＢＣ", "日本語", "\u00df", "İ", "ﬀ", "'; DROP TABLE meisa.contacts; --",
    "{{", "}}", "{{{x}}}", "{{#a}}{{/a}}", "{{=<% %>=}}", "{{>p}}", "%s%n%x", "\\", "\"",
    "null", "true", "1e309", "-0", "NaN", "Infinity", "9" * 400, "0." + "0" * 300 + "1",
    "2024-02-30", "10000-01-01T00:00:00Z", "infinity", "epoch", "now", "1970-01-01",
    "294277-01-01", "-infinity", "7 days", "-7 days", "1000000 years", "P1D",
]
WEIRD_NUMBERS = [0, -1, 1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -2**63, 2**64, 10**40,
                 -10**40, 1.5, -0.0, 1e308, 5e-324, 123456789012345678901234567890]
EMAILS = [
    "a@b.co", " Mixed@Example.COM ", "user+tag@example.com", "\"quoted local\"@example.com",
    "\"a@b\"@example.com", "x@localhost", "@example.com", "a@", "a@@b.com", "a b@c.com",
    "a\r\n@b.com", "a@b.com\r\nBcc: evil@x.com", "ü@exämple.com", "用户@例子.广告",
    "a@xn--bcher-kva.example", "a" * 64 + "@example.com", "a" * 65 + "@example.com",
    "a@" + "b" * 250 + ".com", ("a" * 60 + ".") * 4 + "@e.com", ".a@b.com", "a.@b.com",
    "a..b@c.com", "a@b..com", "a@-b.com", "a@b.c", "ＡＢ＠ＥＸ.ＣＯＭ", "a\u0000b@c.com",
    "a@b.com.", "a@[127.0.0.1]", "\u202ea@b.com", "a\tb@c.com", "<a@b.com>", "a@b.com,c@d.com",
]
TRIGGERS = ["contact_created", "contact_updated", "tag_added", "tag_removed",
            "custom_event", "sequence_enrolled", "segment_entered", "segment_exited"]
TESTS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with",
         "exists", "within_last", "older_than", "changed", "changed_from", "changed_to"]
PATHS = ["email", "external_id", "first_name", "last_name", "subscribed", "created_at",
         "custom_fields.plan", "custom_fields.n", "custom_fields.", "custom_fields.a.b",
         "nosuch", "", "custom_fields." + "x" * 70]


class Gen:
    """Random inputs: values, JSON documents, payloads, templates, rules."""

    def __init__(self, rnd):
        self.r = rnd

    def string(self, maxlen=40):
        r = self.r
        k = r.random()
        if k < 0.3:
            return r.choice(WEIRD_STRINGS)
        if k < 0.35:
            return r.choice(WEIRD_STRINGS) * r.randint(1, 2000)
        if k < 0.37:
            return "x" * r.choice([255, 256, 1000, 65536, 1 << 20])
        if k < 0.6:
            return "".join(chr(r.randint(0x20, 0x7e)) for _ in range(r.randint(0, maxlen)))
        if k < 0.8:
            return "".join(chr(r.choice([r.randint(0x80, 0xd7ff), r.randint(0xe000, 0x10ffff),
                                         r.randint(1, 0x1f)])) for _ in range(r.randint(0, maxlen)))
        return r.choice(["plan", "free", "pro", "standard", "churned", "vip", "beta", "n", "a"])

    def number(self):
        r = self.r
        if r.random() < 0.5:
            return r.choice(WEIRD_NUMBERS)
        return r.choice([r.randint(-10, 10), r.uniform(-1e6, 1e6), r.randint(-2**70, 2**70)])

    def scalar(self):
        k = self.r.random()
        if k < 0.4:
            return self.string()
        if k < 0.7:
            return self.number()
        if k < 0.85:
            return self.r.choice([True, False])
        return None

    def value(self, depth=0):
        r = self.r
        if depth > 4 or r.random() < 0.6:
            return self.scalar()
        if r.random() < 0.5:
            return [self.value(depth + 1) for _ in range(r.randint(0, 5))]
        return {self.string(12): self.value(depth + 1) for _ in range(r.randint(0, 5))}

    def deep(self):
        """A deeply nested document (text), too deep for naive recursion."""
        r = self.r
        n = r.choice([100, 1000, 5000, 20000, 100000])
        if r.random() < 0.5:
            return "[" * n + "1" + "]" * n
        return '{"a":' * n + "1" + "}" * n

    def email(self, i):
        r = self.r
        k = r.random()
        if k < 0.65:
            return "fz%dx@fuzz.test" % i
        if k < 0.75:
            return r.choice(EMAILS)
        if k < 0.85:
            return self.string(30) + "fz%dx@fuzz.test" % i
        return self.mutate_str("fz%dx@fuzz.test" % i)

    def mutate_str(self, s):
        r = self.r
        s = list(s)
        for _ in range(r.randint(1, 4)):
            op = r.random()
            pos = r.randint(0, len(s))
            if op < 0.4:
                s.insert(pos, chr(r.choice([0x40, 0x2e, 0x22, 0x20, 0x0d, 0x0a, 0x5c, r.randint(1, 0x2fff)])))
            elif op < 0.7 and s:
                del s[min(pos, len(s) - 1)]
            elif s:
                s[min(pos, len(s) - 1)] = chr(r.randint(1, 0x7f))
        return "".join(s)

    def valid_scalar(self):
        r = self.r
        return r.choice(["free", "pro", "standard", "churned", "Zoë", "日本", r.randint(-100, 100),
                         r.uniform(-1e3, 1e3), True, False, "2024-05-01T10:00:00Z", "x" * r.randint(0, 300)])

    def custom_fields(self):
        r = self.r
        k = r.random()
        if k < 0.55:
            return {r.choice(["plan", "n", "posts_generated", "onboarding_completed", "timezone", "score",
                              "Name_2", "_x"]): r.choice([self.valid_scalar(), None])
                    for _ in range(r.randint(0, 4))}
        if k < 0.6:
            return self.value()
        if k < 0.15:
            return {"f%d" % j: j for j in range(r.choice([100, 500, 1000, 5000]))}
        d = {}
        for _ in range(r.randint(0, 6)):
            name = r.choice(["plan", "n", "posts_generated", "onboarding_completed", "timezone",
                             self.string(10), "_ok", "9bad", "a" * 64, "a" * 65, "a.b", "a-b"])
            d[name] = r.choice([self.scalar(), self.scalar(), self.value(), None,
                                r.choice(["free", "pro", "churned", "standard"])])
        return d

    def upsert_payload(self, i):
        r = self.r
        p = {}
        if r.random() < 0.9:
            p["email"] = self.email(i)
        if r.random() < 0.4:
            p["external_id"] = r.choice(["fzext%d" % i, self.string(20), self.number(), None, ["x"]])
        for key in ("first_name", "last_name"):
            if r.random() < 0.5:
                p[key] = r.choice(["Ann", "Zoë", "李", "O'Brien", "\u202eevil", "Ann\r\nBcc: injected@evil.test",
                                   "x" * 500, self.string(), self.scalar()])
        if r.random() < 0.6:
            p["custom_fields"] = self.custom_fields()
        if r.random() < 0.3:
            p["tag_names"] = r.choice([
                ["vip", "beta"], ["news", "日本", "émoji😀"], ["vip"],
                [self.string(20) for _ in range(r.randint(0, 5))],
                ["t%d" % j for j in range(r.choice([100, 1000, 10000]))],
                self.value(), "vip", ["vip", "vip"], [None], [1, 2], ["x" * 300]])
        if r.random() < 0.2:
            p["subscribed"] = r.choice([True, False, self.scalar()])
        if r.random() < 0.05:
            p[self.string(10)] = self.value()
        return self.mutate_obj(p) if r.random() < 0.1 else p

    def mutate_obj(self, v, depth=0):
        """Structural mutation: replace, drop or add a node somewhere."""
        r = self.r
        if isinstance(v, dict) and v and depth < 5:
            k = r.choice(list(v))
            op = r.random()
            if op < 0.3:
                del v[k]
            elif op < 0.6:
                v[k] = self.value()
            else:
                v[k] = self.mutate_obj(v[k], depth + 1)
            return v
        if isinstance(v, list) and v and depth < 5:
            j = r.randrange(len(v))
            v[j] = self.mutate_obj(v[j], depth + 1)
            return v
        return self.value()

    def condition(self, depth=0):
        r = self.r
        k = r.random()
        if depth < 4 and k < 0.2:
            return {r.choice(["all", "any"]): [self.condition(depth + 1) for _ in range(r.randint(0, 4))]}
        if depth < 4 and k < 0.28:
            return {"not": self.condition(depth + 1)}
        if k < 0.35:
            return {r.choice(["has_tag", "lacks_tag"]): self.string(10)}
        if k < 0.42:
            return {"event": "properties." + self.string(8), r.choice(TESTS): self.scalar()}
        if k < 0.5:
            return {"performed": self.string(10), "count": {r.choice(TESTS): self.number()},
                    "within": r.choice(["7 days", "1 hour", "-1 day", "banana", self.string(8)])}
        if k < 0.53:
            return {r.choice(["in_segment", "not_in_segment"]): r.choice(["fzseg1", "fzseg2", self.string(8)])}
        if k < 0.56:
            return self.value()
        c = {"field": r.choice(PATHS)}
        for _ in range(r.randint(1, 3)):
            t = r.choice(TESTS)
            c[t] = r.choice([self.scalar(), [self.scalar() for _ in range(3)],
                             {r.choice(TESTS): self.scalar()}, self.value()])
        return c

    def valid_condition(self, depth=0):
        """A condition of the documented language with random literals."""
        r = self.r
        k = r.random()
        if depth < 3 and k < 0.2:
            return {r.choice(["all", "any"]): [self.valid_condition(depth + 1) for _ in range(r.randint(1, 3))]}
        if depth < 3 and k < 0.3:
            return {"not": self.valid_condition(depth + 1)}
        if k < 0.4:
            return {r.choice(["has_tag", "lacks_tag"]): r.choice(["vip", "beta", "日本"])}
        if k < 0.45:
            return {"performed": r.choice(["login", "purchase"]), "count": {"gte": r.randint(0, 3)},
                    "within": r.choice(["7 days", "1 hour"])}
        field = r.choice(["email", "first_name", "subscribed", "created_at", "custom_fields.plan",
                          "custom_fields.n", "custom_fields.score"])
        test = r.choice(["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "contains", "starts_with",
                         "exists", "changed", "changed_from", "changed_to", "within_last", "older_than"])
        if test in ("in", "not_in"):
            v = [self.valid_scalar() for _ in range(r.randint(1, 3))]
        elif test in ("exists", "changed"):
            v = r.choice([True, False])
        elif test in ("within_last", "older_than"):
            v = r.choice(["7 days", "1 hour", "2 weeks"])
        elif test in ("changed_from", "changed_to"):
            v = r.choice([self.valid_scalar(), {"in": ["free", "pro"]}, {"gte": r.randint(0, 9)}])
        else:
            v = self.valid_scalar()
        return {"field": field, test: v}

    def valid_automation(self):
        """(trigger, filter, conditions, actions) that should be accepted."""
        r = self.r
        trig = r.choice(TRIGGERS)
        filt = {"tag_added": "vip", "tag_removed": "vip", "custom_event": "login",
                "sequence_enrolled": "fz_seq"}.get(trig) if r.random() < 0.5 else None
        cond = self.valid_condition() if r.random() < 0.8 else None
        if trig == "custom_event" and r.random() < 0.5:
            cond = {"event": "properties.amount", r.choice(["gte", "lt", "eq"]): r.randint(0, 100)}
        acts = [r.choice([{"add_tag": r.choice(["auto", "日本", "x" * 50])}, {"remove_tag": "beta"},
                          {"set_field": {"custom_fields.auto": self.valid_scalar()}},
                          {"enroll": "fz_seq"}, {"unenroll": "fz_seq"}, {"send_email": "fz_mk"},
                          {"notify": {"channel": "c", "message": "{{email}} {{first_name}}"}},
                          {"unsubscribe": True}]) for _ in range(r.randint(1, 3))]
        return trig, filt, cond, acts

    def action(self):
        r = self.r
        return r.choice([
            {"add_tag": self.string(12)}, {"remove_tag": self.string(12)},
            {"set_field": {r.choice(["custom_fields.x", "custom_fields.plan", "email", "first_name",
                                     "custom_fields.", self.string(8)]): self.scalar()}},
            {"enroll": r.choice(["fz_seq", self.string(8)])},
            {"unenroll": r.choice(["fz_seq", self.string(8)])},
            {"send_email": r.choice(["fz_tx", "fz_mk", self.string(8)])},
            {"notify": {"channel": self.string(8), "message": self.template()}},
            {"unsubscribe": self.scalar()}, self.value(), {},
            {"add_tag": "x", "remove_tag": "y"},
        ])

    def template(self):
        r = self.r
        parts = ["text ", "{{first_name}}", "{{{email}}}", "{{&data}}", "{{#tags}}", "{{/tags}}",
                 "{{^subscribed}}", "{{/subscribed}}", "{{custom_fields.plan}}", "{{! c }}",
                 "{{=<% %>=}}", "<%x%>", "<%={{ }}=%>", "{{>p}}", "{{>fz_tx}}", "{{.}}", "{{#a}}",
                 "{{/a}}", "{{/b}}", "{{", "}}", "{{{", "}}}", "{{#}}", "{{a.b.c.d}}", "\r\n",
                 "{{=| |=}}", "|x|", "{{#data}}{{.}}{{/data}}", "{{unsubscribe_url}}", "é", "\u0000"]
        k = r.random()
        if k < 0.05:
            n = r.choice([100, 1000, 10000])
            return "{{#a}}" * n + "x" + "{{/a}}" * n
        if k < 0.1:
            return self.string(200)
        return "".join(r.choice(parts) for _ in range(r.randint(0, 20)))


class Fuzzer:
    def __init__(self, args):
        self.a = args
        self.rnd = random.Random(args.seed)
        self.g = Gen(self.rnd)
        self.codes = collections.defaultdict(collections.Counter)
        self.findings = []
        self.counts = collections.Counter()
        self.crashes = 0
        self.partial = 0
        self.token = None
        os.makedirs(args.out, exist_ok=True)
        self.fout = open(os.path.join(args.out, "findings.jsonl"), "w")
        self.conn = self.connect(args.db)
        self.aconn = self.connect(args.ascii_db) if args.ascii_db else None

    def connect(self, db):
        for _ in range(60):
            try:
                c = psycopg2.connect(host=self.a.host, port=self.a.port, dbname=db, user="postgres")
                c.autocommit = True
                if db == self.a.ascii_db:
                    c.set_client_encoding("LATIN1")  # SQL_ASCII: bytes pass unconverted
                cur = c.cursor()
                cur.execute("SET statement_timeout = '10s'")
                return c
            except psycopg2.OperationalError:
                time.sleep(1)
        raise SystemExit("cannot connect to %s" % db)

    def finding(self, kind, target, sql, params, detail):
        rec = {"kind": kind, "target": target, "sql": sql if isinstance(sql, str) else sql.decode("latin-1"),
               "params": [p if isinstance(p, (str, type(None))) else repr(p) for p in (params or ())],
               "detail": detail}
        self.findings.append(rec)
        self.fout.write(json.dumps(rec) + "\n")
        self.fout.flush()

    def run(self, target, sql, params=None, conn=None, fresh=None):
        """Executes one input; classifies the outcome."""
        conn = conn or self.conn
        self.counts[target] += 1
        if params:
            # libpq sends C strings: a NUL byte cannot travel as text (JSON
            # documents carry it as the escape \u0000, which json.dumps writes)
            params = tuple(p.replace("\x00", "<NUL>") if isinstance(p, str) else p for p in params)
        # what already matches the input's fresh marker (a mutated email of
        # another input can carry this input's number): only an increase
        # after a rejection is a partial write
        before = self.count_fresh(fresh) if fresh else 0
        try:
            cur = conn.cursor()
            cur.execute(sql, params)
            self.codes[target]["ok"] += 1
            return cur.fetchall() if cur.description else None
        except UnicodeDecodeError:
            self.codes[target]["ok (undecodable result)"] += 1
            return None
        except psycopg2.Error as e:
            code = e.pgcode
            if code is None or conn.closed:
                self.crashes += 1
                self.finding("connection lost", target, sql, params, str(e)[:500])
                time.sleep(2)
                if conn is self.conn:
                    self.conn = self.connect(self.a.db)
                else:
                    self.aconn = self.connect(self.a.ascii_db)
                return None
            self.codes[target][code] += 1
            if code not in ALLOWED[target]:
                self.finding("unexpected SQLSTATE " + code, target, sql, params,
                             (e.pgerror or "")[:500])
            if fresh:
                self.check_nothing_left(target, sql, params, fresh, before)
            return None

    def count_fresh(self, fresh):
        """Rows that carry an input's fresh marker (its email, event id, key ...)."""
        kind, value = fresh
        q = {"email": "SELECT count(*) FROM meisa.contacts WHERE strpos(email, %s) > 0",
             "event": "SELECT count(*) FROM meisa.events WHERE event_id = %s",
             "idem": "SELECT count(*) FROM meisa.messages WHERE idempotency_key = %s",
             "automation": "SELECT count(*) FROM meisa.automations WHERE name = %s",
             "template": "SELECT count(*) FROM meisa.templates WHERE key = %s",
             "segment": "SELECT count(*) FROM meisa.segments WHERE name = %s"}[kind]
        cur = self.conn.cursor()
        cur.execute(q, (value,))
        return cur.fetchone()[0]

    def check_nothing_left(self, target, sql, params, fresh, before):
        """A rejected write left nothing behind (no more rows with its marker than before it)."""
        kind, value = fresh
        after = self.count_fresh(fresh)
        if after > before:
            self.partial += 1
            self.finding("partial write", target, sql, params,
                         "%s %s stored after an error (%d rows before, %d after)" % (kind, value, before, after))

    def setup(self):
        cur = self.conn.cursor()
        cur.execute("""
          INSERT INTO meisa.templates (key, kind, subject, html, text) VALUES
            ('fz_tx', 'transactional', 'Hi {{first_name}}', '<p>{{data.x}}</p>', '{{{unsubscribe_url}}}'),
            ('fz_mk', 'marketing', 'News for {{first_name}} {{last_name}}', '<p>{{email}}</p>', 'Plan {{custom_fields.plan}}')
          ON CONFLICT DO NOTHING;
          INSERT INTO meisa.sequences (name) VALUES ('fz_seq') ON CONFLICT DO NOTHING;
          INSERT INTO meisa.sequence_steps (sequence_id, position, delay, template)
          SELECT id, 1, interval '0', 'fz_mk' FROM meisa.sequences WHERE name = 'fz_seq'
          ON CONFLICT DO NOTHING;
        """)
        # a valid unsubscribe token, to mutate
        try:
            cur.execute("SELECT meisa_trigger_email('fz_tx', %s)",
                        (json.dumps({"email": "token-owner@fuzz.test"}),))
            mid = cur.fetchone()[0]
            cur.execute("SELECT text FROM meisa.messages WHERE id = %s", (mid,))
            url = cur.fetchone()[0].strip()
            self.token = url.rsplit("/", 1)[-1].split("=")[-1]
        except psycopg2.Error as e:
            print("no unsubscribe token available: %s" % str(e).strip()[:200])
        if self.aconn:
            self.aconn.cursor().execute(
                "INSERT INTO meisa.templates (key, kind, subject, text) VALUES "
                "('fz_tx', 'transactional', 'Hi {{first_name}}', 'x') ON CONFLICT DO NOTHING")

    def one(self, i):
        r, g = self.rnd, self.g
        t = r.random()
        if t < 0.30:
            p = g.upsert_payload(i)
            self.run("upsert", "SELECT meisa_upsert(%s::jsonb)", (json.dumps(p, ensure_ascii=False),),
                     fresh=("email", "fz%dx@" % i))
        elif t < 0.42:
            p = {r.choice(["email", "external_id"]): g.email(i), "event_id": "fzev%d" % i}
            if r.random() < 0.7:
                p["properties"] = r.choice([g.value(), {"amount": g.number()}, g.custom_fields()])
            if r.random() < 0.3:
                p["occurred_at"] = r.choice([g.string(), g.number(), "2024-01-01T00:00:00Z",
                                             "2024-13-01", "99999-01-01", "infinity"])
            if r.random() < 0.1:
                p["event_id"] = g.scalar()
            if r.random() < 0.1:
                p = g.mutate_obj(p)
            name = r.choice(["login", "purchase", g.string(20), "a" * 100, "a" * 101, "x:y.z-1", ""])
            self.run("track", "SELECT meisa_track(%s, %s::jsonb)", (name, json.dumps(p, ensure_ascii=False)),
                     fresh=("event", "fzev%d" % i) if p.get("event_id") == "fzev%d" % i else None)
        elif t < 0.50:
            p = {"email": g.email(i), "idempotency_key": "fzid%d" % i}
            if r.random() < 0.7:
                p["data_variables"] = r.choice([g.value(), {"x": g.string()}, g.custom_fields()])
            if r.random() < 0.1:
                p = g.mutate_obj(p)
            key = r.choice(["fz_tx", "fz_tx", "fz_mk", g.string(10), "", None])
            self.run("trigger_email", "SELECT meisa_trigger_email(%s, %s::jsonb)",
                     (key, json.dumps(p, ensure_ascii=False)), fresh=("idem", "fzid%d" % i))
        elif t < 0.55:
            self.run("add_tag", "SELECT meisa_add_tag(%s, %s)",
                     (r.choice([g.email(i), "token-owner@fuzz.test"]), g.string(30)))
        elif t < 0.67:
            tmpl = g.template()
            data = json.dumps(r.choice([g.value(), {"first_name": g.string(), "tags": [g.value()],
                                                    "a": g.value(), "data": g.value()}]), ensure_ascii=False)
            partials = r.choice(["{}", json.dumps({"p": g.template()}), '{"p": "{{>p}}"}',
                                 json.dumps(g.value()), '{"p": "{{#a}}{{>p}}{{/a}}"}'])
            self.run("render", "SELECT meisa.render(%s, %s::jsonb, %s::jsonb)", (tmpl, data, partials))
        elif t < 0.74:
            a = json.dumps(g.value(), ensure_ascii=False)
            b = json.dumps(r.choice([g.value(), g.custom_fields()]), ensure_ascii=False)
            if r.random() < 0.05:
                a = g.deep()
            self.run("jsonb_diff", "SELECT meisa.jsonb_diff(%s::jsonb, %s::jsonb)", (a, b))
        elif t < 0.80:
            if self.token and r.random() < 0.8:
                arg = g.mutate_str(self.token) if r.random() < 0.9 else self.token + g.string(5)
            else:
                arg = r.choice([g.string(60), g.email(i)])
            self.run("unsubscribe", "SELECT meisa_unsubscribe(%s)", (arg,))
        elif t < 0.88:
            name = "fzauto%d" % i
            if r.random() < 0.5:
                trig, filt, cond, acts = g.valid_automation()
                cond = json.dumps(cond, ensure_ascii=False) if cond is not None else None
                acts = json.dumps(acts, ensure_ascii=False)
            else:
                cond = r.choice([None, json.dumps(g.condition(), ensure_ascii=False)])
                acts = json.dumps(r.choice([[g.action() for _ in range(r.randint(0, 4))], g.value()]),
                                  ensure_ascii=False)
                trig = r.choice(TRIGGERS + [g.string(10)])
                filt = r.choice([None, None, "vip", "login", "fz_seq", g.string(10)])
            self.run("automation",
                     "INSERT INTO meisa.automations (name, trigger, trigger_filter, conditions, actions) "
                     "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb)", (name, trig, filt, cond, acts),
                     fresh=("automation", name))
            if i % 50 == 0:  # keep the rule set small: drop older fuzz rules
                self.run("automation", "DELETE FROM meisa.automations WHERE name LIKE 'fzauto%%' "
                         "AND id NOT IN (SELECT id FROM meisa.automations ORDER BY id DESC LIMIT 30)", ())
        elif t < 0.925:
            key = "fztpl%d" % i
            self.run("template",
                     "INSERT INTO meisa.templates (key, kind, subject, html, text, \"from\", reply_to) "
                     "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                     (key, r.choice(["transactional", "marketing", "marketing", g.string(5)]),
                      r.choice([g.template(), "Hello {{first_name}}", "{{{first_name}}} {{last_name}}",
                                "Subject\r\nBcc: injected@evil.test", g.string()]),
                      g.template(), r.choice([g.template(), None]),
                      r.choice([None, "a@b.com", "A <a@b.com>\r\nBcc: injected@evil.test", g.string()]),
                      r.choice([None, g.email(i)])),
                     fresh=("template", key))
        elif t < 0.95:
            self.segment(i)
        elif t < 0.97:
            # malformed JSON text straight into the API
            base = json.dumps(g.upsert_payload(i), ensure_ascii=False)
            txt = g.mutate_str(base) if r.random() < 0.8 else g.deep()
            self.run("raw_json", "SELECT meisa_upsert(%s::jsonb)", (txt,))
        else:
            self.ascii_input(i)

    def segment(self, i):
        """A segment row (valid or random rule; its rebuild runs) or a draft count."""
        r, g = self.rnd, self.g
        cond = g.valid_condition() if r.random() < 0.6 else r.choice([g.condition(), g.value(), None])
        # valid rules of a segment have no write-time tests: drop them most of the time
        text = json.dumps(cond, ensure_ascii=False) if cond is not None else None
        if text and r.random() < 0.8:
            for t in ("changed_from", "changed_to", "changed"):
                text = text.replace('"%s"' % t, '"eq"')
        if r.random() < 0.3:
            self.run("segment_count", "SELECT meisa.segment_count(%s::jsonb)", (text,))
            return
        # (a name, unlike a parameter, is also the fresh marker: no NUL byte)
        name = r.choice(["fzseg1", "fzseg2", "fzseg%d" % i, g.string(12).replace("\x00", "")])
        if r.random() < 0.3:
            self.run("segment", "UPDATE meisa.segments SET conditions = %s::jsonb, enabled = %s WHERE name = %s",
                     (text, r.random() < 0.8, name))
        else:
            self.run("segment", "INSERT INTO meisa.segments (name, conditions) VALUES (%s, %s::jsonb)",
                     (name, text), fresh=("segment", name))
        if i % 40 == 0:  # keep the set small: older fuzz segments go (unless read)
            self.run("segment", "DELETE FROM meisa.segments WHERE name LIKE 'fzseg%%' AND name NOT IN "
                     "('fzseg1', 'fzseg2') AND id NOT IN (SELECT id FROM meisa.segments ORDER BY id DESC LIMIT 8)", ())

    def ascii_input(self, i):
        """Invalid UTF-8 and NUL bytes: rejected by a UTF8 database, passed through by SQL_ASCII."""
        r = self.rnd
        junk = bytes(r.randint(0x80, 0xff) for _ in range(r.randint(1, 8)))
        if r.random() < 0.5 or not self.aconn:
            # UTF8 database: the server must refuse the bytes before meisa sees them
            sql = b"SELECT meisa_upsert('{\"email\": \"a" + junk + b"@b.com\"}'::jsonb)"
            if r.random() < 0.3:
                sql = b"SELECT meisa_upsert('{\"email\": \"a\\u0000" + b"@b.com\"}'::jsonb)"
            self.run("raw_json", sql)
            return
        # SQL_ASCII database: the bytes reach meisa
        target = r.choice(["upsert", "render", "jsonb_diff", "track", "trigger_email"])
        s = b"n" + junk + b"\xc3"
        if target == "upsert":
            sql = (b"SELECT meisa_upsert('{\"email\": \"fz" + str(i).encode() + b"x" + junk +
                   b"@fuzz.test\", \"first_name\": \"" + s + b"\", \"custom_fields\": {\"" + s +
                   b"\": \"" + s + b"\"}, \"tag_names\": [\"" + s + b"\"]}'::jsonb)")
        elif target == "render":
            sql = b"SELECT meisa.render('{{a}}" + s + b"{{#a}}" + s + b"{{/a}}', '{\"a\": \"" + s + b"\"}'::jsonb)"
        elif target == "jsonb_diff":
            sql = b"SELECT meisa.jsonb_diff('{\"" + s + b"\": 1}'::jsonb, '{\"" + s + b"\": \"" + s + b"\"}'::jsonb)"
        elif target == "track":
            sql = (b"SELECT meisa_track('login', '{\"email\": \"fz" + str(i).encode() +
                   b"x@fuzz.test\", \"properties\": {\"" + s + b"\": \"" + s + b"\"}}'::jsonb)")
        else:
            sql = (b"SELECT meisa_trigger_email('fz_tx', '{\"email\": \"fz" + str(i).encode() +
                   b"x@fuzz.test\", \"data_variables\": {\"x\": \"" + s + b"\"}}'::jsonb)")
        self.run(target, sql, conn=self.aconn)

    def main(self):
        self.setup()
        t0 = time.time()
        for i in range(self.a.count):
            self.one(i)
            if i and i % 5000 == 0:
                print("  %d inputs, %.0f/s, %d findings" % (i, i / (time.time() - t0), len(self.findings)),
                      flush=True)
        elapsed = time.time() - t0
        # end state
        cur = self.conn.cursor()
        cur.execute("SELECT invariant || ': ' || violations FROM meisa.check_invariants()")
        inv = [row[0] for row in cur.fetchall()]
        for v in inv:
            self.finding("invariant", "end", "meisa.check_invariants()", [], v)
        return elapsed, inv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--ascii-db")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--log", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    f = Fuzzer(a)
    elapsed, inv = f.main()
    total = sum(f.counts.values())
    print("inputs: %d in %.1f s (seed %d)" % (total, elapsed, a.seed))
    for target in sorted(f.counts):
        codes = ", ".join("%s=%d" % (c, n) for c, n in sorted(f.codes[target].items()))
        print("  %-14s %6d  %s" % (target, f.counts[target], codes))
    seen = sorted({c for t in f.codes.values() for c in t if c != "ok"})
    print("SQLSTATEs seen: " + ", ".join("%s (%s)" % (c, NAMES.get(c, "?")) for c in seen))
    log = open(a.log, errors="replace").read() if os.path.exists(a.log) else ""
    crash_log = [l for l in log.splitlines() if "terminated by signal" in l or "PANIC" in l]
    unexpected = [x for x in f.findings if x["kind"].startswith("unexpected")]
    print("findings: %d (written to %s/findings.jsonl)" % (len(f.findings), a.out))
    for x in f.findings[:15]:
        print("  %s [%s]: %s %s -> %s" % (x["kind"], x["target"], x["sql"][:80],
                                         str(x["params"])[:160], x["detail"][:200]))
    results = [
        ("fuzz: %d inputs without a lost connection" % total, f.crashes == 0),
        ("fuzz: server log shows no crash", not crash_log),
        ("fuzz: only allow-listed SQLSTATEs (%d unexpected)" % len(unexpected), not unexpected),
        ("fuzz: rejected writes leave nothing behind (%d partial)" % f.partial, f.partial == 0),
        ("fuzz: meisa.check_invariants() clean at the end", not inv),
    ]
    for l in crash_log[:5]:
        print("  log: " + l)
    failed = 0
    for name, ok in results:
        print(("ok     " if ok else "FAILED ") + name)
        failed += 0 if ok else 1
    print("%d passed, %d failed" % (len(results) - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
