#!/usr/bin/python3
"""delivery_bench.py: delivery benchmark of meisa (run through bench/delivery.sh).

1. Throughput: N messages committed in one transaction; messages/s from the
   commit to the SMTP sink's receipt of the last one, and the number of SMTP
   connections used.  Baseline: the same number of messages of the same size
   sent by Python's smtplib over one connection to the same sink (the sink's
   ceiling on this machine).
2. Latency: M messages, each queued by its own committing transaction
   (meisa_trigger_email, or an INSERT into meisa.messages when the outbox is
   not installed), 10 ms apart; for each, the time from the commit to the
   sink's receipt: median, p90, p99, max.
"""
import os
import smtplib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "delivery"))
from lib import Cluster, Sink, wait_for  # noqa: E402

BINDIR = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/postgresql/15/bin"
N = int(os.environ.get("BENCH_MESSAGES", "2000"))
M = int(os.environ.get("BENCH_LATENCY_MESSAGES", "1000"))
BASE = "/tmp/meisa-delivery-bench"
pg = Cluster(BINDIR, BASE, 26450, 26455, extra_conf="meisa.worker_naptime = '10s'\n")
sink = Sink(26455, BASE)


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def throughput():
    sink.clear()
    pg.psql("INSERT INTO meisa.contacts (email) VALUES ('tp@example.com') ON CONFLICT DO NOTHING")
    conns0 = sink.connections()
    t_commit = float(pg.psql(
        "INSERT INTO meisa.messages (contact_id, to_email, kind, subject, text, html, message_id) "
        "SELECT (SELECT id FROM meisa.contacts WHERE email = 'tp@example.com'), 'tp@example.com', "
        "'transactional', 'Throughput ' || i, repeat('Some text of a typical message. ', 20), "
        "'<p>' || repeat('Some <b>html</b> of a typical message. ', 20) || '</p>', "
        f"'tp-' || i || '-' || gen_random_uuid() FROM generate_series(1, {N}) i; "
        "SELECT extract(epoch FROM clock_timestamp())").splitlines()[-1])
    ok = wait_for(lambda: len(sink.received_log()) >= N, 300, 0.05)
    times = sorted(float(r[0]) for r in sink.received_log())
    if not ok:
        print(f"throughput: only {len(times)} of {N} messages arrived")
        return None
    total = times[-1] - t_commit
    conns = sink.connections() - conns0
    size = len(open(sink.files()[0], "rb").read())
    print(f"throughput: {N} messages ({size} bytes each) in {total:.2f} s from commit = "
          f"{N / total:.0f} messages/s over {conns} SMTP connection(s)")
    return N / total, size


def baseline(size):
    sink.clear()
    body = ("Subject: baseline\r\nMessage-ID: <b@x>\r\n\r\n" + "x" * 70 + "\r\n") * max(1, size // 110)
    t0 = time.time()
    with smtplib.SMTP("127.0.0.1", 26455) as s:
        for i in range(N):
            s.sendmail("noreply@meisa.test", ["tp@example.com"], body)
    dt = time.time() - t0
    print(f"baseline: Python smtplib, one connection, {N} messages in {dt:.2f} s = {N / dt:.0f} messages/s")
    return N / dt


def latency(pg=pg, sink=sink, M=M):
    """Commit-to-receipt latency of M messages (pg's worker into sink); returns (median, p99) ms."""
    sink.clear()
    api = pg.psql("SELECT to_regprocedure('meisa_trigger_email(text,jsonb)') IS NOT NULL") == "t"
    if api:
        pg.psql("INSERT INTO meisa.templates (key, kind, subject, text, html) VALUES "
                "('bench_latency', 'transactional', 'Latency {{data.i}}', 'Code {{data.i}}', '<p>{{data.i}}</p>') "
                "ON CONFLICT DO NOTHING")
        pg.psql("""SELECT meisa_upsert('{"email": "lat@example.com"}')""")
    else:
        pg.psql("INSERT INTO meisa.contacts (email) VALUES ('lat@example.com') ON CONFLICT DO NOTHING")
    lines = []
    for i in range(M):
        if api:
            lines.append(f"""SELECT 'I', meisa_trigger_email('bench_latency', '{{"email": "lat@example.com", "data_variables": {{"i": {i}}}}}');""")
        else:
            lines.append("INSERT INTO meisa.messages (to_email, kind, subject, text, message_id) VALUES "
                         f"('lat@example.com', 'transactional', 'Latency {i}', 'x', 'lat-{i}-' || gen_random_uuid()) "
                         "RETURNING 'I', id;")
        lines.append("SELECT 'T', extract(epoch FROM clock_timestamp());")
        lines.append("SELECT pg_sleep(0.01);")
    r = subprocess.run([os.path.join(pg.bindir, "psql"), "-h", pg.base, "-p", str(pg.port), "-U", "postgres",
                        "-d", "meisa_test", "-XAtq", "-F", " ", "-v", "ON_ERROR_STOP=1"],
                       input="\n".join(lines), capture_output=True, text=True, check=True)
    commit = {}
    last_id = None
    for line in r.stdout.splitlines():
        parts = line.split()
        if parts and parts[0] == "I":
            last_id = int(parts[1])
        elif parts and parts[0] == "T":
            commit[last_id] = float(parts[1])
    wait_for(lambda: len(sink.received_log()) >= M, 60, 0.05)
    mids = dict(pg.rows("SELECT '<' || trim(both '<>' FROM message_id) || '>', id FROM meisa.messages "
                        f"WHERE id IN ({','.join(map(str, commit))})"))
    lat = []
    for t, mid, _ in sink.received_log():
        if mid in mids and int(mids[mid]) in commit:
            lat.append((float(t) - commit[int(mids[mid])]) * 1000)
    how = "meisa_trigger_email" if api else "INSERT INTO meisa.messages"
    print(f"latency: {len(lat)} of {M} messages, each committed by {how}, to receipt at the sink: "
          f"median {statistics.median(lat):.1f} ms, p90 {pct(lat, 90):.1f} ms, "
          f"p99 {pct(lat, 99):.1f} ms, max {max(lat):.1f} ms")
    return statistics.median(lat), pct(lat, 99)


def main():
    print(f"meisa delivery benchmark: bindir {BINDIR}, {os.cpu_count()} CPUs, "
          f"PostgreSQL defaults (fsync on, synchronous_commit on)")
    try:
        pg.init()
        sink.start()
        pg.start()
        pg.psql("CREATE DATABASE meisa_test", db="postgres")
        pg.psql("CREATE EXTENSION meisa")
        wait_for(lambda: pg.worker_pid() is not None, 10)
        res = throughput()
        if res:
            rate, size = res
            base = baseline(size)
            print(f"throughput ratio meisa / smtplib baseline: {rate / base:.2f}")
        med, p99 = latency()
        print(f"targets: >= 200 messages/s: {'met' if res and res[0] >= 200 else 'NOT met'}; "
              f"median latency < 100 ms: {'met' if med < 100 else 'NOT met'}")
    finally:
        try:
            pg.stop(force=True)
        finally:
            sink.stop()


if __name__ == "__main__":
    main()
