"""hostile_peer.py: an SMTP server that stops answering, for meisa's live
delivery tests.  It listens on 127.0.0.1:PORT in a thread of the test
process.  While a stall is armed, each new connection (up to the armed
count) is answered by hand and then left hanging:

  greeting  the TCP connection is accepted, no greeting is ever sent
  data      greeting, EHLO, MAIL, RCPT, DATA answered (354); the message is
            read to its final "." and never answered
  quit      a whole message is answered (250) and RSET/NOOP too; QUIT is
            never answered
  rcpt      RCPT TO is answered 451 (try again later), then nothing more

Every other connection is relayed byte for byte to the real SMTP sink
(smtp_sink.py on UPSTREAM), so mail sent after the stall arrives there.
What happened is recorded in .events as (time, event, detail): "stall"
(mode) when a stalled connection starts, "stalled" (Message-ID) when the
data mode has read a whole message, "rcpt" when the rcpt mode has refused
the recipient, "quit" when a QUIT arrives on a
stalled connection, "closed" (mode) when the client drops it.
"""
import socket
import threading
import time


class HostilePeer:
    def __init__(self, port, upstream):
        self.port = port
        self.upstream = upstream
        self.mode = None
        self.remaining = 0
        self.events = []
        self.lock = threading.Lock()
        self.held = []
        self.sock = None

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.release()
        if self.sock:
            self.sock.close()
            self.sock = None

    def arm(self, mode, count=1):
        """The next 'count' connections stall in 'mode'."""
        with self.lock:
            self.mode, self.remaining = mode, count
            self.events = []

    def release(self):
        """Disarms and closes every stalled connection still open."""
        with self.lock:
            self.mode, self.remaining = None, 0
            held, self.held = self.held, []
        for c in held:
            try:
                # shutdown first: close() alone sends no FIN while the
                # stalled thread is still blocked in recv() on the socket
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass

    def first(self, event):
        """The first recorded event of that name: (time, detail) or None."""
        with self.lock:
            for t, e, d in self.events:
                if e == event:
                    return t, d
        return None

    def _event(self, event, detail=""):
        with self.lock:
            self.events.append((time.time(), event, detail))

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                mode = self.mode if self.remaining > 0 else None
                if mode:
                    self.remaining -= 1
                    self.held.append(conn)
            target = self._stall if mode else self._relay
            threading.Thread(target=target, args=(conn, mode), daemon=True).start()

    def _relay(self, conn, _mode):
        try:
            up = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            conn.close()
            return

        def pump(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data:
                        break
                    b.sendall(data)
            except OSError:
                pass
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        threading.Thread(target=pump, args=(up, conn), daemon=True).start()
        pump(conn, up)

    def _stall(self, conn, mode):
        self._event("stall", mode)
        buf = b""
        in_data = False
        answering = mode != "greeting"
        try:
            if answering:
                conn.sendall(b"220 hostile.test ESMTP\r\n")
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    if in_data:
                        end = buf.find(b"\r\n.\r\n")
                        if end < 0:
                            break
                        msg, buf = buf[:end], buf[end + 5:]
                        in_data = False
                        msgid = "-"
                        for line in msg.split(b"\r\n"):
                            if line.lower().startswith(b"message-id:"):
                                msgid = line.split(b":", 1)[1].strip().decode("ascii", "replace")
                                break
                        if mode == "data":
                            self._event("stalled", msgid)
                            answering = False
                        else:
                            conn.sendall(b"250 2.0.0 accepted\r\n")
                        continue
                    nl = buf.find(b"\r\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 2:]
                    verb = line[:4].upper()
                    if verb == b"QUIT":
                        self._event("quit")
                        answering = False
                    if not answering:
                        continue
                    if verb in (b"EHLO", b"HELO"):
                        conn.sendall(b"250 hostile.test\r\n")
                    elif verb == b"RCPT" and mode == "rcpt":
                        conn.sendall(b"451 4.3.0 try again later\r\n")
                        self._event("rcpt")
                        answering = False
                    elif verb == b"DATA":
                        conn.sendall(b"354 end with <CRLF>.<CRLF>\r\n")
                        in_data = True
                    else:
                        conn.sendall(b"250 OK\r\n")
        except OSError:
            pass
        self._event("closed", mode)
