#!/usr/bin/python3
"""smtp_throughput.py: meisa's delivery worker against Postfix's smtp-source
into the same Postfix smtp-sink (run through bench/smtp_throughput.sh).

For each session count C (BENCH_CONNECTIONS, default "4 1"):
1. smtp-source -d -s C -m N -l SIZE into smtp-sink: N messages of SIZE
   bytes over C connections kept open; messages/s over its wall-clock time.
2. meisa: N messages of about SIZE bytes queued beforehand (while
   meisa.smtp_url is empty), then meisa.smtp_url set to the same smtp-sink
   with meisa.smtp_connections = C and the configuration reloaded; messages/s
   from the reload to the last message's sent_at (settled, not only
   received), and the ratio meisa / smtp-source.
Then the commit-to-receipt latency of BENCH_LATENCY_MESSAGES messages (each
committed by its own transaction, 10 ms apart) into the aiosmtpd sink of the
tests, which logs each receipt time, with meisa.smtp_connections = 4:
median, p90, p99, max (the measure of bench/delivery.sh).

Environment: BENCH_MESSAGES (N, default 20000), BENCH_SIZE (default 2000),
BENCH_CONNECTIONS, BENCH_BATCH (meisa.batch_size, default 100),
BENCH_LATENCY_MESSAGES (default 1000), BENCH_CONF (postgresql.conf lines,
separated by ";").  Ports: PostgreSQL 26470, smtp-sink
26471, aiosmtpd 26472.
"""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "delivery"))
sys.path.insert(0, HERE)
from lib import Cluster, Sink, wait_for  # noqa: E402
import delivery_bench  # noqa: E402

BINDIR = sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/postgresql/15/bin"
N = int(os.environ.get("BENCH_MESSAGES", "20000"))
SIZE = int(os.environ.get("BENCH_SIZE", "2000"))
CONNS = [int(c) for c in os.environ.get("BENCH_CONNECTIONS", "4 1").split()]
BATCH = int(os.environ.get("BENCH_BATCH", "100"))
M = int(os.environ.get("BENCH_LATENCY_MESSAGES", "1000"))
BASE = "/tmp/meisa-smtp-throughput"
PG_PORT, SINK_PORT, AIO_PORT = 26470, 26471, 26472
SINK_PID = os.path.join("/tmp", "meisa-smtp-throughput-sink.pid")

pg = Cluster(BINDIR, BASE, PG_PORT, AIO_PORT,
             extra_conf=f"meisa.worker_naptime = '10s'\nmeisa.batch_size = {BATCH}\n"
                        "meisa.lease_time = '300s'\nmeisa.smtp_timeout = '60s'\n"
                        + os.environ.get("BENCH_CONF", "").replace(";", "\n") + "\n")
aio = Sink(AIO_PORT, BASE)


def stop_old_sink():
    """Stops the smtp-sink a previous run of this script left (its pid file)."""
    try:
        with open(SINK_PID) as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGTERM)
        time.sleep(0.3)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass


def start_sink():
    """Starts Postfix's smtp-sink on 127.0.0.1:SINK_PORT (as nobody)."""
    stop_old_sink()
    p = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", f"127.0.0.1:{SINK_PORT}", "1024"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(SINK_PID, "w") as f:
        f.write(str(p.pid))
    time.sleep(0.5)
    return p


def smtp_source(c):
    """smtp-source -d -s C -m N -l SIZE into the sink; messages/s."""
    t0 = time.time()
    subprocess.run(["/usr/sbin/smtp-source", "-d", "-s", str(c), "-m", str(N), "-l", str(SIZE),
                    "-f", "noreply@meisa.test", "-t", "tp@example.com", f"127.0.0.1:{SINK_PORT}"],
                   check=True, stdout=subprocess.DEVNULL)
    dt = time.time() - t0
    rate = N / dt
    print(f"smtp-source -d -s {c} -m {N} -l {SIZE}: {dt:.2f} s = {rate:.0f} messages/s", flush=True)
    return rate


def queue_messages():
    """Queues N messages of about SIZE bytes (meisa.smtp_url empty: nothing leaves yet)."""
    pg.reload({"meisa.smtp_url": ""})
    pg.psql("TRUNCATE meisa.messages")
    pg.psql("INSERT INTO meisa.contacts (email) VALUES ('tp@example.com') ON CONFLICT DO NOTHING")
    cid = pg.psql("SELECT id FROM meisa.contacts WHERE email = 'tp@example.com'")
    # the headers take about 330 bytes; the text part fills the rest
    body = max(SIZE - 330, 10)
    pg.psql("INSERT INTO meisa.messages (contact_id, to_email, kind, subject, text, message_id) "
            f"SELECT {cid}, 'tp@example.com', 'transactional', 'Throughput ' || i, "
            f"rpad('Some text of a typical message. ', {body}, 'Some text of a typical message. '), "
            f"'tp-' || i || '-' || gen_random_uuid() FROM generate_series(1, {N}) i")
    pg.psql("VACUUM ANALYZE meisa.messages")
    return len(pg.psql("SELECT meisa.mime(min(id)) FROM meisa.messages").encode()) + 2


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def meisa_run(c):
    """The worker delivers the N queued messages over C sessions; messages/s."""
    size = queue_messages()
    wpid = pg.worker_pid()
    cpu0 = cpu_seconds(wpid)
    # a build without the setting (before it existed) sends over one session
    if pg.psql("SELECT count(*) FROM pg_settings WHERE name = 'meisa.smtp_connections'") == "1":
        pg.psql(f"ALTER SYSTEM SET meisa.smtp_connections = {c}")
    else:
        print("(this build has no meisa.smtp_connections: one session)")
    pg.psql(f"ALTER SYSTEM SET meisa.smtp_url = 'smtp://127.0.0.1:{SINK_PORT}'")
    t0 = float(pg.psql("SELECT extract(epoch FROM clock_timestamp()) FROM pg_reload_conf()"))
    ok = wait_for(lambda: pg.psql("SELECT count(*) FROM meisa.messages WHERE status <> 'sent'") == "0",
                  600, 0.2)
    if not ok:
        print(f"meisa: not every message was sent: "
              f"{pg.rows('SELECT status, count(*) FROM meisa.messages GROUP BY 1')}")
        return None
    t1 = float(pg.psql("SELECT extract(epoch FROM max(sent_at)) FROM meisa.messages"))
    attempts = pg.psql("SELECT sum(attempts) FROM meisa.messages")
    cpu = cpu_seconds(wpid) - cpu0
    dt = t1 - t0
    rate = N / dt
    print(f"meisa worker, meisa.smtp_connections = {c}, batch_size {BATCH}: {N} messages of {size} bytes "
          f"in {dt:.2f} s = {rate:.0f} messages/s ({attempts} attempts; the worker used {cpu:.2f} s CPU)",
          flush=True)
    return rate


def main():
    print(f"meisa SMTP throughput against Postfix smtp-source: bindir {BINDIR}, {os.cpu_count()} CPUs, "
          f"N {N}, size {SIZE}, PostgreSQL defaults (fsync on, synchronous_commit on)"
          + (f" plus {os.environ['BENCH_CONF']}" if os.environ.get("BENCH_CONF") else ""), flush=True)
    sinkp = None
    results = {}
    try:
        pg.init()
        sinkp = start_sink()
        aio.start()
        pg.start()
        pg.psql("CREATE DATABASE meisa_test", db="postgres")
        pg.psql("CREATE EXTENSION meisa")
        wait_for(lambda: pg.worker_pid() is not None, 10)
        for c in CONNS:
            src = smtp_source(c)
            mine = meisa_run(c)
            if mine:
                print(f"ratio meisa / smtp-source at {c} connection(s): {mine / src:.2f}", flush=True)
            results[c] = (src, mine)
        pg.reload({"meisa.smtp_url": None})
        if pg.psql("SELECT count(*) FROM pg_settings WHERE name = 'meisa.smtp_connections'") == "1":
            pg.reload({"meisa.smtp_connections": "4"})
        pg.psql("TRUNCATE meisa.messages")
        med, p99 = delivery_bench.latency(pg, aio, M)
        if 4 in results and results[4][1]:
            src, mine = results[4]
            print(f"targets (C=4): >= 2000 messages/s: {'met' if mine >= 2000 else 'NOT met'}; "
                  f"ratio >= 0.5: {'met' if mine / src >= 0.5 else 'NOT met'}; "
                  f"median latency < 100 ms: {'met' if med < 100 else 'NOT met'}")
    finally:
        try:
            pg.stop(force=True)
        finally:
            aio.stop()
            if sinkp:
                sinkp.terminate()
                sinkp.wait(10)
            stop_old_sink()


if __name__ == "__main__":
    main()
