"""lib.py: shared helpers of meisa's live delivery tests and benchmarks: a
private PostgreSQL cluster with meisa preloaded (run as the postgres user),
the SMTP sink (smtp_sink.py), psql, and reading what the sink received."""
import email
import email.policy
import glob
import json
import os
import shutil
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def write_secret(path, value, mode=0o600):
    """Writes a secret file (meisa.secret_file, meisa.smtp_password_file)
    owned by the postgres user, replacing the old one at once."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.chmod(tmp, mode)
    shutil.chown(tmp, "postgres", "postgres")
    os.rename(tmp, path)


class Cluster:
    """A throw-away cluster on 127.0.0.1:port with meisa preloaded."""

    def __init__(self, bindir, base, port, smtp_port, extra_conf=""):
        self.bindir = bindir
        self.base = base
        self.data = os.path.join(base, "data")
        self.log = os.path.join(base, "postgres.log")
        self.port = port
        self.smtp_port = smtp_port
        self.extra_conf = extra_conf

    def run_pg(self, *args, check=True):
        return subprocess.run(["runuser", "-u", "postgres", "--"] + list(args),
                              check=check, capture_output=True, text=True)

    def init(self):
        if os.path.exists(self.base):
            self.stop(force=True)
            shutil.rmtree(self.base)
        os.makedirs(self.base)
        shutil.chown(self.base, "postgres", "postgres")
        self.run_pg(os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--locale=C")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.base}'
shared_preload_libraries = 'meisa'
meisa.database = 'meisa_test'
meisa.smtp_url = 'smtp://127.0.0.1:{self.smtp_port}'
meisa.from_address = 'Meisa Test <noreply@meisa.test>'
meisa.secret_file = 'meisa_secret'
meisa.unsubscribe_base_url = 'https://app.test/unsubscribe/'
meisa.worker_naptime = '1s'
meisa.retry_backoff_base = '1s'
meisa.retry_backoff_max = '2s'
meisa.lease_time = '6s'
meisa.smtp_timeout = '5s'
meisa.smtp_connect_timeout = '2s'
{self.extra_conf}
""")
        # the key of unsubscribe tokens, relative to the data directory
        write_secret(os.path.join(self.data, "meisa_secret"), "live-test-secret-5f1c0e2b9a")

    def start(self):
        # the port (264xx) is below Linux's default ephemeral range; where
        # ip_local_port_range includes it, a client socket in TIME_WAIT on it
        # blocks bind() for up to a minute, so retry
        for attempt in range(40):
            r = self.run_pg(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-l", self.log,
                            "-w", "-t", "60", "start", check=False)
            if r.returncode == 0:
                return
            if "Address already in use" not in self.log_text()[-2000:]:
                break
            time.sleep(2)
        raise RuntimeError("could not start PostgreSQL: " + r.stderr + self.log_text()[-2000:])

    def stop(self, force=False):
        if os.path.exists(os.path.join(self.data, "postmaster.pid")):
            self.run_pg(os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-m", "fast",
                        "-w", "stop", check=not force)

    def postmaster_pid(self):
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            return int(f.readline())

    def psql(self, sql, db="meisa_test", check=True):
        r = subprocess.run([os.path.join(self.bindir, "psql"), "-h", self.base, "-p", str(self.port),
                            "-U", "postgres", "-d", db, "-XAtq", "-v", "ON_ERROR_STOP=1",
                            "-F", "\t", "-c", sql], capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed: {sql}\n{r.stderr}")
        return r.stdout.rstrip("\n")

    def rows(self, sql):
        out = self.psql(sql)
        return [line.split("\t") for line in out.split("\n")] if out else []

    def reload(self, settings):
        for k, v in settings.items():
            if v is None:
                self.psql(f"ALTER SYSTEM RESET {k}")
            else:
                self.psql(f"ALTER SYSTEM SET {k} = '{v}'")
        self.psql("SELECT pg_reload_conf()")
        time.sleep(0.3)

    def worker_pid(self):
        out = self.psql("SELECT pid FROM pg_stat_activity WHERE backend_type = 'meisa delivery'")
        return int(out) if out else None

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


class Sink:
    """The SMTP sink process and the messages it stored."""

    def __init__(self, port, base, name="mail", env=None):
        self.port = port
        self.dir = os.path.join(base, name)
        self.control = os.path.join(base, name + "-control.json")
        self.env = env or {}
        self.proc = None

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "smtp_sink.py"),
                                      str(self.port), self.dir, self.control],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=dict(os.environ, **self.env))
        self.proc.stdout.readline()  # "listening"

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
            self.proc = None

    def set_control(self, rules):
        tmp = self.control + ".tmp"
        with open(tmp, "w") as f:
            json.dump(rules, f)
        os.rename(tmp, self.control)
        time.sleep(0.02)

    def clear(self):
        self.set_control({})
        for f in glob.glob(os.path.join(self.dir, "*.eml")):
            os.unlink(f)
        # the sink keeps its log files open: truncate instead of recreate
        for name in ("received.log", "connections.log", "inflight.log", "sessions.log"):
            open(os.path.join(self.dir, name), "w").close()

    def files(self):
        return sorted(glob.glob(os.path.join(self.dir, "*.eml")))

    def messages(self):
        out = []
        for path in self.files():
            with open(path, "rb") as f:
                raw = f.read()
            out.append((raw, email.message_from_bytes(raw, policy=email.policy.default)))
        return out

    def received_log(self):
        path = os.path.join(self.dir, "received.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split() for line in f if line.strip()]

    def inflight(self):
        path = os.path.join(self.dir, "inflight.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split()[1] for line in f if line.strip()]

    def connections(self):
        path = os.path.join(self.dir, "connections.log")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return sum(1 for line in f if " EHLO" in line or " HELO" in line)

    def max_sessions(self, what="open"):
        """The most connections open ("open") or messages being stored
        ("busy") at once since the last clear()."""
        path = os.path.join(self.dir, "sessions.log")
        if not os.path.exists(path):
            return 0
        with open(path) as f:
            return max([int(p[2]) for p in (line.split() for line in f) if len(p) == 3 and p[1] == what],
                       default=0)

    def mail_lines(self):
        """The "MAIL tls=.. auth=.." lines: how each message's session looked."""
        path = os.path.join(self.dir, "connections.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [line.split(None, 1)[1].strip() for line in f if " MAIL " in line]


def wait_for(cond, timeout, step=0.1):
    """Polls cond() until it is true or timeout seconds pass; returns its last value."""
    end = time.time() + timeout
    while True:
        v = cond()
        if v or time.time() > end:
            return v
        time.sleep(step)
