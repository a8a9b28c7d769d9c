#!/usr/bin/python3
"""test/hardening/memory.py: backend memory under a long stream of upserts.

One connection (one backend) makes N meisa_upsert calls, each its own
transaction, mixing created, changed and unchanged contacts with automations
firing (enrolment on creation, tag + notification on free->pro, a queued
email on churn).  Every N/20 calls it reads the backend's own memory from
pg_backend_memory_contexts.  After the warm-up (the first 40% of the calls: every plan transition, so
every automation path, has run)
the total must not grow by more than the tolerance.

Usage: memory.py --host DIR --port P --db DB --calls N [--tolerance BYTES]
"""
import argparse
import json
import sys
import time

import psycopg2

ap = argparse.ArgumentParser()
ap.add_argument("--host", required=True)
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--db", required=True)
ap.add_argument("--calls", type=int, default=20000)
ap.add_argument("--tolerance", type=int, default=256 * 1024)
a = ap.parse_args()

conn = psycopg2.connect(host=a.host, port=a.port, dbname=a.db, user="postgres")
conn.autocommit = True
cur = conn.cursor()
cur.execute("SELECT pg_backend_pid()")
pid = cur.fetchone()[0]
cur.execute("PREPARE up(jsonb) AS SELECT meisa_upsert($1)")
MEM = "SELECT sum(total_bytes), sum(used_bytes), count(*) FROM pg_backend_memory_contexts"
TOP = ("SELECT name, coalesce(ident, ''), total_bytes FROM pg_backend_memory_contexts "
       "ORDER BY total_bytes DESC LIMIT 6")

N = a.calls
K = max(N // 20, 10)          # distinct contacts: the first K calls create them
PLANS = ["free", "pro", "free", "pro", "churned", "free"]
samples = []
kinds = {"created": 0, "changed": 0, "unchanged": 0}
t0 = time.time()
step = max(N // 20, 1)
for i in range(N):
    c = i % K
    rnd = i // K
    if c % 2 == 0:
        plan = PLANS[rnd % len(PLANS)]          # changes every round
    else:
        plan = "free"                           # never changes after creation
    p = {"email": "mem%d@mem.test" % c, "external_id": "mem-%d" % c,
         "custom_fields": {"plan": plan, "n": c % 7}}
    if c % 5 == 0:
        p["tag_names"] = ["t%d" % (rnd % 3)]
    cur.execute("EXECUTE up(%s)", (json.dumps(p),))
    r = cur.fetchone()[0]
    if r.get("created"):
        kinds["created"] += 1
    elif r.get("changed"):
        kinds["changed"] += 1
    else:
        kinds["unchanged"] += 1
    if (i + 1) % step == 0:
        cur.execute(MEM)
        total, used, nctx = cur.fetchone()
        samples.append((i + 1, int(total), int(used), int(nctx)))
        print("  after %8d calls: total %9d bytes, used %9d bytes, %4d contexts, %.0f calls/s"
              % (i + 1, total, used, nctx, (i + 1) / (time.time() - t0)), flush=True)

elapsed = time.time() - t0
cur.execute(TOP)
print("largest contexts at the end:")
for name, ident, total in cur.fetchall():
    print("  %-40s %-30s %d" % (name, ident[:30], total))
warm = [s for s in samples if s[0] > N * 0.4]  # a full cycle of PLANS runs by 30%
base = warm[0][1]
peak = max(s[1] for s in warm)
final = samples[-1][1]
growth = peak - base
print("calls: %d in %.1f s (%.0f/s): created %d, changed %d, unchanged %d"
      % (N, elapsed, N / elapsed, kinds["created"], kinds["changed"], kinds["unchanged"]))
print("backend %d memory after warm-up (%d calls): %d bytes; peak after: %d; final: %d; growth: %d bytes"
      % (pid, warm[0][0], base, peak, final, growth))
ok_mix = all(v > 0 for v in kinds.values())
results = [
    ("memory: calls mixed created/changed/unchanged (%d/%d/%d)" % (kinds["created"], kinds["changed"],
                                                                    kinds["unchanged"]), ok_mix),
    ("memory: no growth after warm-up over %d calls (growth %d bytes, tolerance %d)"
     % (N, growth, a.tolerance), growth <= a.tolerance),
]
failed = 0
for name, ok in results:
    print(("ok     " if ok else "FAILED ") + name)
    failed += 0 if ok else 1
print("%d passed, %d failed" % (len(results) - failed, failed))
sys.exit(1 if failed else 0)
