#!/usr/bin/env python3
"""HTTP/2 attacks on grok-server's tunnel port, each beside a live tunnel.

usage: h2_attacks.py BUILD_DIR      (BUILD_DIR holds grok-server, grok and grok-demo-upstream)

Starts the real binaries on 127.0.0.1 (grok-demo-upstream, grok-server with a conf file written
here, and `grok http` serving the name "app"), keeps public requests flowing through the tunnel
from a separate process, and runs one attack at a time against the tunnel port. For each attack it
checks that the server is still running, that its RSS stays under Mode.rss_bound_mib, that the attacking
connection is closed (EOF, RST, GOAWAY) or throttled (the server stops reading from it) within a
bound, and that the tunnel's requests all succeed with a p99 under the latency bound. It prints a
table of the server's CPU and peak RSS and the tunnel's p50/p99 per attack (also written to
$GROK_ATTACK_REPORT when set) and exits 1 if any check failed, naming each.

Light mode (GROK_ATTACK_LIGHT=1, or BUILD_DIR/CMakeCache.txt with GROK_SANITIZE set) uses fewer
connections and streams and looser time and memory bounds, for sanitizer builds.
Exit status 77 (skipped) when python3-h2 is missing outside CI; in CI (env CI set) that fails.
"""

import ctypes
import http.client
import os
import re
import resource
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

SKIP = 77

try:
    import h2.config
    import h2.connection
    import h2.events
    import h2.exceptions
    import hpack
except ImportError as e:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        pass  # the load generator needs only the standard library
    elif os.environ.get("CI"):
        print(f"h2_attacks: python3-h2 is required in CI ({e}); .ci/setup installs it", file=sys.stderr)
        sys.exit(1)
    else:
        print(f"h2_attacks: SKIPPED: python3-h2 is not importable ({e}); apt-get install python3-h2",
              file=sys.stderr)
        sys.exit(SKIP)

HOST = "127.0.0.1"
TOKEN = "attack-" + os.urandom(8).hex()
UPSTREAM_BODY = b"Hello from grok-demo-upstream\n"
CONNECT_PATH = "/grok.tunnel.v1.Tunnel/Connect"
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# The tunnel port's limits this suite configures (small, so that it runs fast).
MAX_CONNECTIONS_PER_IP = 64
MAX_CONNECTIONS = 160  # below MAX_CONNECTIONS_PER_IP times the idle flood's source addresses
# gRPC 1.51 collects an unfinished header block (a CONTINUATION flood) until the connection's
# hello_timeout, and once its memory quota is reached it reclaims by resetting streams, the tunnel's
# included: the quota is sized above what the paced floods here can collect in hello_timeout, and the
# RSS bound above the quota.
GRPC_MEMORY_QUOTA_MIB = 256
REPLY_BOUND = 256 * 1024  # bytes the server may send back to one refused Hello
LOG_BOUND = 64 * 1024  # bytes of server log (access lines aside) one attack may cause


class Mode:
    """Counts and bounds; light mode is for sanitizer builds, which run 3 to 8 times slower."""

    def __init__(self, light, sanitizer=""):
        self.light = light
        self.sanitizer = sanitizer  # "address", "thread" or ""
        self.attack_s = 4.0
        # tunnels.hello_timeout; "closed at once" (at accept, over a cap) must be well below it.
        self.hello_timeout_s = 4 if light else 2
        self.at_once_s = 2.0 if light else 1.0
        # Idle flood: connections per source address, over several loopback addresses so that
        # both the per-address and the total cap are reached.
        self.idle_sources = 3 if light else 6
        self.idle_per_source = 200 if light else 500
        self.slow_tls_connections = 20 if light else 48
        self.rapid_reset_connections = 4 if light else 16
        # Floods are paced: on a shared loopback host an unpaced attacker only measures how much
        # CPU it takes from the server and the tunnel, not how the server copes.
        self.flood_rate = (4 if light else 16) * 2 ** 20  # bytes a second
        self.reset_rate = 5000 if light else 20000  # streams a second
        self.flood_max_connections = 64
        self.no_hello_connections = 8 if light else 24
        self.big_hello_count = 2 if light else 4  # at least, then more until attack_s, up to big_hello_max
        self.big_hello_max = 4 if light else 20
        # Bounds the checks use.
        # Sanitizers' shadow memory counts in RSS: ASan's is about 1/8 of the heap (its quarantine is
        # held to 32 MiB here), TSan's several times the memory the program touches.
        self.rss_bound_mib = {"address": 700, "thread": 1500}.get(sanitizer, 600 if light else 300)
        self.p99_bound_ms = 500 if light else 100
        self.close_margin_s = 6.0 if light else 2.5  # past hello_timeout
        self.close_bound_s = 10.0 if light else 4.0  # a flood's connection closed or throttled within
        self.stall_s = 2.0 if light else 1.0  # a send blocked this long means the server stopped reading
        self.start_s = 60.0 if light else 15.0
        self.min_requests = 10 if light else 40  # tunnel requests an attack window must hold


# Processes

def die_with_parent():
    """In the child before exec: SIGKILL when the suite ends, however it ends (a ctest timeout)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Proc:
    """A child process whose output goes to a file; stopped by PID only."""

    def __init__(self, name, argv, workdir, env=None):
        self.name = name
        self.log_path = os.path.join(workdir, name + ".log")
        self.log = open(self.log_path, "wb")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  env=env, preexec_fn=die_with_parent)
        self.pid = self.p.pid

    def running(self):
        return self.p.poll() is None

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pattern, timeout):
        deadline = time.monotonic() + timeout
        rx = re.compile(pattern)
        while time.monotonic() < deadline:
            m = rx.search(self.text())
            if m:
                return m
            if not self.running():
                m = rx.search(self.text())
                return m
            time.sleep(0.05)
        return None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals the process and waits; SIGKILL if it has not ended. Returns its exit status."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.p.wait(10)
                self.log.close()
                return None
        self.log.close()
        return self.p.returncode


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def sanitizer_build(build):
    """GROK_SANITIZE of the build ("address", "thread"), "" for none or no CMakeCache.txt."""
    try:
        with open(os.path.join(build, "CMakeCache.txt")) as f:
            m = re.search(r"^GROK_SANITIZE:STRING=(address|thread)\s*$", f.read(), re.M)
            return m.group(1) if m else ""
    except OSError:
        return ""


SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|"
                              r"runtime error:")


class Stack:
    """grok-server and a `grok http` client serving "app", against a shared demo upstream."""

    def __init__(self, build, workdir, upstream_port, mode, tls_dir=None, limits=True):
        self.build = build
        self.workdir = workdir
        self.mode = mode
        self.tls_dir = tls_dir
        self.api_port = free_port()
        self.server = None
        self.client = None
        self.upstream_port = upstream_port
        self.limits_configured = limits
        tag = "tls-" if tls_dir else ""
        self.conf = os.path.join(workdir, tag + "grok-server.yaml")
        self.tag = tag

    def write_conf(self):
        tunnels = "  name_grace: 60s\n"
        if self.limits_configured:
            tunnels += (f"  hello_timeout: {self.mode.hello_timeout_s}s\n"
                        f"  max_connections_per_ip: {MAX_CONNECTIONS_PER_IP}\n"
                        f"  max_connections: {MAX_CONNECTIONS}\n"
                        f"  grpc_memory_quota: {GRPC_MEMORY_QUOTA_MIB}MiB\n")
        text = ("server:\n  domain: localhost\n  bind_address: 127.0.0.1\n  http_port: 0\n"
                "  grpc_address: 127.0.0.1\n  grpc_port: 0\n"
                f"  api_address: 127.0.0.1\n  api_port: {self.api_port}\n  drain_timeout: 2s\n"
                f"tunnels:\n{tunnels}"
                f"auth:\n  tokens: [{TOKEN}]\n"
                "logging:\n  level: info\n  format: text\n")
        if self.tls_dir:
            text += f"tls:\n  cert_file: {self.tls_dir}/server.pem\n  key_file: {self.tls_dir}/server.key\n"
        with open(self.conf, "w") as f:
            f.write(text)

    def start_server(self):
        """Starts grok-server; returns None, or the unknown conf key it refused."""
        self.write_conf()
        env = None
        if self.mode.sanitizer == "address":
            # ASan keeps 256 MiB of freed memory in quarantine by default: RSS would measure that.
            env = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=32")
        self.server = Proc(self.tag + "grok-server", [os.path.join(self.build, "grok-server"), "--config", self.conf],
                           self.workdir, env)
        m = self.server.wait_for(r"ready: http=127\.0\.0\.1:(\d+) grpc=127\.0\.0\.1:(\d+)", self.mode.start_s)
        if not m:
            text = self.server.text()
            self.server.stop(signal.SIGKILL)
            unknown = re.search(r"tunnels\.(\w+).*unknown key", text)
            if unknown and self.limits_configured:
                return unknown.group(1)
            raise RuntimeError(f"grok-server did not start:\n{text[-3000:]}")
        self.http_port = int(m.group(1))
        self.grpc_port = int(m.group(2))
        return None

    def start_client(self):
        argv = [os.path.join(self.build, "grok")]
        argv += ["--ca", os.path.join(self.tls_dir, "server.pem")] if self.tls_dir else ["--insecure"]
        argv += ["--config", "/dev/null", "http", str(self.upstream_port), "--subdomain", "app", "--server",
                 f"{HOST}:{self.grpc_port}", "--token", TOKEN]
        self.client = Proc(self.tag + "grok", argv, self.workdir)
        if not self.client.wait_for(r"Forwarding\s+\S+", self.mode.start_s):
            raise RuntimeError(f"grok did not come online:\n{self.client.text()[-3000:]}")

    def stop(self, failures):
        if self.client:
            self.client.stop(signal.SIGINT, 30 if self.mode.light else 10)
        if self.server:
            was_running = self.server.running()
            status = self.server.stop(signal.SIGTERM, 30 if self.mode.light else 10)
            if not was_running:
                failures.append(f"{self.tag}grok-server had ended before the suite stopped it "
                                f"(status {self.server.p.returncode})")
            elif status != 0:
                failures.append(f"{self.tag}grok-server did not exit 0 after SIGTERM (status {status})")
        for p in (self.server, self.client):
            if p and SANITIZER_REPORT.search(p.text()):
                failures.append(f"{p.name} printed a sanitizer report (see {p.log_path})")

    def metrics(self):
        with urllib.request.urlopen(f"http://{HOST}:{self.api_port}/metrics", timeout=5) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    try:
                        out[name] = float(value)
                    except ValueError:
                        pass
            return out


def make_cert(workdir):
    d = os.path.join(workdir, "tls")
    os.mkdir(d)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", f"{d}/server.key", "-out", f"{d}/server.pem", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    return d


# The legitimate tunnel's traffic: a separate process, so that the attacks' Python work does
# not show up as tunnel latency. Each request is a line "start latency ok|error" with start in
# CLOCK_MONOTONIC seconds, which both processes share.

def load_main(port, host_header, out_path):
    lock = threading.Lock()
    out = open(out_path, "a", buffering=1)

    def worker():
        conn = None
        while True:
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, port, timeout=5)
                conn.request("GET", "/", headers={"Host": host_header})
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200 and body == UPSTREAM_BODY
                what = "ok" if ok else f"status={r.status}"
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                what = "error=" + type(e).__name__
                if conn:
                    conn.close()
                conn = None
            t1 = time.monotonic()
            with lock:
                out.write(f"{t0:.6f} {t1 - t0:.6f} {what}\n")
            time.sleep(max(0.0, 0.02 - (t1 - t0)))

    for _ in range(2):
        threading.Thread(target=worker, daemon=True).start()
    signal.sigwait([signal.SIGTERM])
    os._exit(0)


class Load:
    def __init__(self, stack, workdir):
        self.path = os.path.join(workdir, stack.tag + "load.txt")
        open(self.path, "w").close()
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
        try:
            self.proc = Proc(stack.tag + "load", [sys.executable, os.path.abspath(__file__), "--load",
                                                  str(stack.http_port), f"app.localhost:{stack.http_port}", self.path],
                             workdir)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])

    def samples(self, t0, t1):
        out = []
        with open(self.path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and t0 <= float(parts[0]) <= t1:
                    out.append((float(parts[1]), parts[2]))
        return out

    def wait_ok(self, timeout):
        t = time.monotonic()
        deadline = t + timeout
        while time.monotonic() < deadline:
            if any(w == "ok" for _, w in self.samples(t, time.monotonic())):
                return True
            time.sleep(0.05)
        return False


# Server measurements

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Samples the server's RSS every 20 ms; peak() is the highest since the last reset()."""

    def __init__(self, pid):
        self.pid = pid
        self.max_kib = 0
        self.stop_ = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_.wait(0.02):
            try:
                self.max_kib = max(self.max_kib, status_kib(self.pid, "VmRSS"))
            except OSError:
                return

    def reset(self):
        try:
            # 5 resets VmHWM (proc(5), clear_refs), so it is the peak of this attack alone.
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        self.max_kib = status_kib(self.pid, "VmRSS")

    def peak_mib(self):
        try:
            hwm = status_kib(self.pid, "VmHWM")
        except OSError:
            hwm = 0
        return max(self.max_kib, hwm) / 1024

    def close(self):
        self.stop_.set()
        self.t.join()


# Raw HTTP/2

DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS = 1, 1, 4
GOAWAY_CODES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
                6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR",
                11: "ENHANCE_YOUR_CALM"}


def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


def header_block(fields):
    """HPACK, literals never indexed: the block leaves no state behind and can be sent again."""
    enc = hpack.Encoder()
    return enc.encode([hpack.NeverIndexedHeaderTuple(n, v) for n, v in fields], huffman=False)


def connect_headers(port, extra=()):
    return [(":method", "POST"), (":scheme", "http"), (":path", CONNECT_PATH), (":authority", f"{HOST}:{port}"),
            ("content-type", "application/grpc"), ("te", "trailers")] + list(extra)


def headers_frames(sid, block, end_stream=False, max_frame=16384):
    """HEADERS and CONTINUATION frames carrying block."""
    first, rest = block[:max_frame], block[max_frame:]
    flags = END_STREAM if end_stream else 0
    out = [frame(HEADERS, flags | (0 if rest else END_HEADERS), sid, first)]
    while rest:
        piece, rest = rest[:max_frame], rest[max_frame:]
        out.append(frame(CONTINUATION, 0 if rest else END_HEADERS, sid, piece))
    return b"".join(out)


def tcp_connect(port, src=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((HOST, port))
    s.setblocking(False)
    return s


class RawConn:
    """A hand-driven HTTP/2 client connection: sends whatever bytes it is given, and records how
    the server ended it (EOF, RST, GOAWAY) or that it stopped reading (a send blocked)."""

    def __init__(self, port, mode, src=None, settings=True):
        self.mode = mode
        self.t0 = time.monotonic()
        self.sock = tcp_connect(port, src)
        self.buf = b""
        self.closed = None  # "eof", "rst", or an errno name
        self.closed_at = None
        self.goaway = None  # (error code name, debug text)
        self.goaway_at = None
        self.throttled_at = None
        self.ended_streams = {}  # stream id -> how the server ended it, and when (s after connect)
        self.decoder = hpack.Decoder()
        self.answer_pings = True
        self.sent = 0
        if settings:
            self.send(PREFACE + frame(SETTINGS, 0, 0))

    def ended(self):
        return self.closed is not None or self.goaway is not None

    def ended_at(self):
        ts = [t for t in (self.closed_at, self.goaway_at) if t is not None]
        return min(ts) - self.t0 if ts else None

    def outcome(self):
        first = "throttled, then " if self.throttled_at and self.throttled_at < (self.ended_at() or 1e18) + self.t0 \
            else ""
        if self.goaway:
            return f"{first}GOAWAY {self.goaway[0]}"
        if self.closed:
            return f"{first}{self.closed.upper()}"
        if self.throttled_at:
            return "throttled"
        return "open"

    def _mark_closed(self, how):
        if self.closed is None:
            self.closed = how
            self.closed_at = time.monotonic()

    def send(self, data):
        """Sends all of data unless the server closes the connection or takes more than
        mode.stall_s to read it (throttled). Returns True when all was sent."""
        view = memoryview(data)
        deadline = time.monotonic() + self.mode.stall_s
        while view and self.closed is None:
            try:
                n = self.sock.send(view)
                view = view[n:]
                self.sent += n
                continue
            except BlockingIOError:
                pass
            except ConnectionResetError:
                self._mark_closed("rst")
                return False
            except BrokenPipeError:
                self._mark_closed("eof")
                return False
            left = deadline - time.monotonic()
            _, w, _ = select.select([], [self.sock], [], max(0.0, left))
            if not w or left <= 0:
                if self.throttled_at is None:
                    self.throttled_at = time.monotonic()
                return False
        return not view and self.closed is None

    def pump(self):
        """Reads what the server sent (up to 1 MiB a call), answering SETTINGS (and PING unless
        told not to)."""
        got = 0
        while self.closed is None and got < 2 ** 20:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                self._mark_closed("rst")
                break
            if not chunk:
                self._mark_closed("eof")
                break
            got += len(chunk)
            self.buf += chunk
        replies = []
        buf, at = self.buf, 0
        while len(buf) - at >= 9:
            length = int.from_bytes(buf[at:at + 3], "big")
            if len(buf) - at < 9 + length:
                break
            ftype, flags = buf[at + 3], buf[at + 4]
            sid = int.from_bytes(buf[at + 5:at + 9], "big") & 0x7FFFFFFF
            payload = buf[at + 9:at + 9 + length]
            at += 9 + length
            if ftype == SETTINGS and not flags & ACK:
                replies.append(frame(SETTINGS, ACK, 0))
            elif ftype == PING and not flags & ACK and self.answer_pings:
                replies.append(frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY and self.goaway is None:
                code = int.from_bytes(payload[4:8], "big")
                self.goaway = (GOAWAY_CODES.get(code, str(code)), payload[8:].decode("utf-8", "replace"))
                self.goaway_at = time.monotonic()
            elif ftype == RST_STREAM:
                code = int.from_bytes(payload[:4], "big")
                self.ended_streams.setdefault(sid, (f"RST_STREAM {GOAWAY_CODES.get(code, code)}",
                                                    time.monotonic() - self.t0))
            elif ftype == HEADERS:
                status = self._grpc_status(flags, payload)
                if flags & END_STREAM:
                    what = "END_STREAM" + (f" grpc-status {status}" if status else "")
                    self.ended_streams.setdefault(sid, (what, time.monotonic() - self.t0))
            elif ftype == DATA and flags & END_STREAM:
                self.ended_streams.setdefault(sid, ("END_STREAM", time.monotonic() - self.t0))
        self.buf = buf[at:]
        if replies and self.closed is None:
            self.send(b"".join(replies))

    def _grpc_status(self, flags, payload):
        """grpc-status in a HEADERS frame, decoded so that the HPACK state stays in step."""
        if flags & 0x8:  # PADDED
            payload = payload[1:len(payload) - payload[0]]
        if flags & 0x20:  # PRIORITY
            payload = payload[5:]
        try:
            for n, v in self.decoder.decode(payload, raw=True):
                if n == b"grpc-status":
                    return v.decode()
        except hpack.HPACKError:
            return "?"
        return None

    def wait_ended(self, until):
        """Reads until the server ends the connection or until (monotonic) passes."""
        while not self.ended() and time.monotonic() < until:
            select.select([self.sock], [], [], max(0.0, min(0.1, until - time.monotonic())))
            self.pump()
        return self.ended()

    def close(self):
        self.sock.close()


# Protobuf by hand: Batch{frames: [Frame{hello: Hello{protocol_version, token, name}}]}

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field_bytes(number, data):
    return varint(number << 3 | 2) + varint(len(data)) + data


def field_varint(number, value):
    return varint(number << 3) + varint(value)


def hello_message(token, name):
    hello = field_varint(1, 1) + field_bytes(2, token.encode()) + field_bytes(3, name.encode())
    batch = field_bytes(1, field_bytes(2, hello))  # Batch.frames = 1, Frame.hello = 2
    return b"\0" + struct.pack(">I", len(batch)) + batch  # gRPC: not compressed, length, message


class H2Client:
    """An h2-driven connection, for attacks that need real flow control."""

    def __init__(self, port, src=None):
        self.sock = tcp_connect(port, src)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(cfg)
        self.conn.initiate_connection()
        self.port = port
        self.closed = None
        self.terminated = None
        self.ended = {}  # stream id -> how the server ended it
        self.grpc_status = {}
        self.received = 0  # bytes, frames included
        self.flush()

    def flush(self):
        out = self.conn.data_to_send()
        if out and self.closed is None:
            try:
                self.sock.setblocking(True)
                self.sock.settimeout(5)
                self.sock.sendall(out)
            except (ConnectionResetError, BrokenPipeError):
                self.closed = "rst"
            except socket.timeout:
                self.closed = "send blocked 5 s"
            finally:
                self.sock.setblocking(False)

    def open_stream(self):
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, connect_headers(self.port))
        self.flush()
        return sid

    def pump(self, wait=0.1):
        select.select([self.sock], [], [], wait)
        while self.closed is None:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except ConnectionResetError:
                self.closed = "rst"
                break
            if not chunk:
                self.closed = "eof"
                break
            self.received += len(chunk)
            try:
                events = self.conn.receive_data(chunk)
            except h2.exceptions.ProtocolError as e:
                self.closed = f"h2 error {type(e).__name__}: {e}"
                break
            for ev in events:
                if isinstance(ev, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    for n, v in ev.headers:
                        if n == "grpc-status":
                            self.grpc_status[ev.stream_id] = v
                elif isinstance(ev, h2.events.StreamEnded):
                    self.ended.setdefault(ev.stream_id, "END_STREAM")
                elif isinstance(ev, h2.events.StreamReset):
                    self.ended.setdefault(ev.stream_id, f"RST_STREAM {ev.error_code.name}")
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.terminated = f"GOAWAY {ev.error_code.name}"
            self.flush()

    def send_message(self, sid, data, until):
        """Sends data on the stream as flow control allows; False if the server ended it first."""
        view = memoryview(data)
        while view:
            if self.closed or self.terminated or sid in self.ended or time.monotonic() > until:
                return False
            n = min(len(view), self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if n > 0:
                self.conn.send_data(sid, bytes(view[:n]))
                view = view[n:]
                self.flush()
            else:
                self.pump(0.05)
        return True

    def stream_outcome(self, sid):
        if sid in self.ended:
            st = self.grpc_status.get(sid)
            return self.ended[sid] + (f" grpc-status {st}" if st else "")
        if self.terminated:
            return self.terminated
        if self.closed:
            return self.closed if self.closed.startswith("h2 error") else self.closed.upper()
        return None

    def close(self):
        self.sock.close()


# Attacks. Each returns (outcome text, list of failed checks); it runs for about mode.attack_s
# unless it says otherwise.

def summarize(outcomes):
    counts = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return ", ".join(f"{n}x {o}" for o, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def handled_at(c, mode):
    """Seconds from connect until the server closed the connection or stopped reading it."""
    ts = [c.ended_at()]
    if c.throttled_at is not None:
        ts.append(c.throttled_at - c.t0 - mode.stall_s)
    ts = [t for t in ts if t is not None]
    return min(ts) if ts else None


def judge_connections(name, conns, mode, refused=0):
    """The attack's connections summed up, and failures for any left open and read past the bound."""
    groups = {}
    for c in conns:
        groups.setdefault(c.outcome(), []).append(handled_at(c, mode))
    parts = []
    for o, ts in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        known = [t for t in ts if t is not None]
        span = f" ({min(known):.2f}-{max(known):.2f} s)" if known else ""
        parts.append(f"{len(ts)}x {o}{span}")
    if refused:
        parts.append(f"{refused}x connect refused")
    failures = []
    late = [handled_at(c, mode) for c in conns if handled_at(c, mode) is not None
            and handled_at(c, mode) > mode.close_bound_s]
    if late:
        failures.append(f"{name}: {len(late)} connection(s) closed or throttled only after {max(late):.1f} s "
                        f"(bound {mode.close_bound_s} s)")
    open_ = [c for c in conns if handled_at(c, mode) is None]
    if open_:
        failures.append(f"{name}: {len(open_)} of {len(conns)} connections were neither closed nor throttled "
                        f"within {mode.close_bound_s} s")
    return "; ".join(parts), failures


def flood(name, stack, mode, chunk, read=False, setup=None):
    """Sends chunk after chunk, at most mode.flood_rate bytes a second, for mode.attack_s. A
    connection the server closes or stops reading is replaced by a new one, as an attacker would;
    the last one is kept at it until the server deals with it or mode.close_bound_s passes.
    read says whether the attacker reads what the server sends (not reading lets replies pile up)."""
    conns, cur, refused, sent = [], None, 0, 0
    t_start = time.monotonic()
    end = t_start + mode.attack_s
    while True:
        now = time.monotonic()
        if cur is None or cur.ended() or cur.throttled_at is not None:
            if now >= end:
                break
            if len(conns) >= mode.flood_max_connections:
                time.sleep(0.05)  # the tunnel is still measured until the attack's time is up
                continue
            try:
                cur = RawConn(stack.grpc_port, mode)
            except OSError:
                refused += 1
                cur = None
                time.sleep(0.05)
                continue
            cur.answer_pings = False
            conns.append(cur)
            if setup:
                setup(cur)
            continue
        if now >= end and now - cur.t0 >= mode.close_bound_s:
            break
        ahead = sent / mode.flood_rate - (now - t_start)
        if ahead > 0:
            time.sleep(min(ahead, 0.02))
        elif cur.send(chunk):
            sent += len(chunk)
        if read:
            cur.pump()
    # What the attacker has not read may hold a GOAWAY; a stalled connection may be closed yet.
    until = time.monotonic() + 1.0
    for c in conns:
        c.wait_ended(until)
    outcome, failures = judge_connections(name, conns, mode, refused)
    for c in conns:
        c.close()
    return f"{len(conns)} conn, {sent / 2 ** 20:.1f} MiB: {outcome}", failures


def attack_ping_flood(stack, mode):
    chunk = b"".join(frame(PING, 0, 0, struct.pack(">Q", i)) for i in range(256))
    return flood("PING flood", stack, mode, chunk)


def attack_settings_flood(stack, mode):
    # SETTINGS_INITIAL_WINDOW_SIZE = 65535 and SETTINGS_MAX_FRAME_SIZE = 16384: valid values,
    # each frame owes the server an ACK.
    one = frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 65535) + struct.pack(">HI", 5, 16384))
    return flood("SETTINGS flood", stack, mode, one * 256)


def attack_window_update_flood(stack, mode):
    one = frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1))
    return flood("WINDOW_UPDATE flood", stack, mode, one * 512)


def attack_continuation_flood(stack, mode):
    """A Connect HEADERS without END_HEADERS, then CONTINUATION frames that never end the block.
    Their payloads are valid HPACK (small never-indexed literals), so that only the block's size,
    not a decoding error, can end it."""
    field = header_block([("x-c", "v" * 20)])
    cont = frame(CONTINUATION, 0, 1, field * (16384 // len(field)))

    def setup(c):
        c.send(frame(HEADERS, 0, 1, header_block(connect_headers(stack.grpc_port))))

    return flood("CONTINUATION flood", stack, mode, cont * 4, setup=setup)


def attack_rapid_reset(stack, mode):
    """HEADERS for the tunnel RPC then RST_STREAM(CANCEL), at most mode.reset_rate streams a
    second over mode.rapid_reset_connections connections; a connection the server ends is
    replaced while the attack lasts."""
    block = header_block(connect_headers(stack.grpc_port))
    per_batch = 20
    live, conns, refused, streams = [], [], 0, 0
    t_start = time.monotonic()
    end = t_start + mode.attack_s
    while True:
        now = time.monotonic()
        live = [(c, sid) for c, sid in live if not c.ended() and c.throttled_at is None]
        if now < end:
            while len(live) < mode.rapid_reset_connections and len(conns) < 4 * mode.rapid_reset_connections:
                try:
                    c = RawConn(stack.grpc_port, mode)
                except OSError:
                    refused += 1
                    break
                conns.append(c)
                live.append((c, 1))
        # After the attack's time, the connections still going are kept at it until the bound.
        live = [(c, sid) for c, sid in live if now < end or now - c.t0 < mode.close_bound_s]
        if not live:
            break
        ahead = streams / mode.reset_rate - (now - t_start)
        if ahead > 0:
            time.sleep(min(ahead, 0.02))
            for c, _ in live:
                c.pump()
            continue
        nxt = []
        for c, sid in live:
            batch = b"".join(frame(HEADERS, END_HEADERS, sid + 2 * k, block) +
                             frame(RST_STREAM, 0, sid + 2 * k, struct.pack(">I", 8)) for k in range(per_batch))
            if c.send(batch):
                streams += per_batch
            c.pump()
            nxt.append((c, sid + 2 * per_batch))
        live = nxt
    until = time.monotonic() + 1.0
    for c in conns:
        c.wait_ended(until)
    outcome, failures = judge_connections("rapid reset", conns, mode, refused)
    for c in conns:
        c.close()
    return f"{streams} streams over {len(conns)} conn: {outcome}", failures


def attack_header_fields(stack, mode, name, extra, per_conn_streams=4):
    """Connect streams whose HEADERS block carries extra fields, on one new connection after the
    other; the server must end each stream (RST_STREAM, trailers) or the connection."""
    block = header_block(connect_headers(stack.grpc_port, extra))
    outcomes, failures, latest = [], [], 0.0
    end = time.monotonic() + mode.attack_s
    streams = 0
    while time.monotonic() < end:
        c = RawConn(stack.grpc_port, mode)
        sids = [1 + 2 * k for k in range(per_conn_streams)]
        for sid in sids:
            c.send(headers_frames(sid, block))
            c.pump()
        streams += len(sids)
        until = c.t0 + mode.close_bound_s
        while time.monotonic() < until and not c.ended() and not all(s in c.ended_streams for s in sids):
            select.select([c.sock], [], [], 0.1)
            c.pump()
        for sid in sids:
            if sid in c.ended_streams:
                how, at = c.ended_streams[sid]
            elif c.ended():
                how, at = c.outcome(), c.ended_at()
            else:
                how, at = "open", None
                failures.append(f"{name}: a stream was neither ended nor its connection closed within "
                                f"{mode.close_bound_s} s")
            outcomes.append(how)
            latest = max(latest, at or 0.0)
        c.close()
    return f"{streams} streams: {summarize(outcomes)}; slowest end {latest:.2f} s", failures[:1]


def attack_many_fields(stack, mode):
    return attack_header_fields(stack, mode, "many small fields", [(f"x-f{i}", "v") for i in range(10000)])


def attack_huge_fields(stack, mode):
    return attack_header_fields(stack, mode, "huge fields", [(f"x-huge{i}", "h" * (256 * 1024)) for i in range(4)],
                                per_conn_streams=1)


def attack_no_hello(stack, mode):
    """Connect streams that never send a Hello: the server ends them within hello_timeout."""
    clients = [H2Client(stack.grpc_port) for _ in range(mode.no_hello_connections)]
    t0 = time.monotonic()
    streams = [(c, c.open_stream()) for c in clients]
    ended_at = {}
    until = t0 + mode.hello_timeout_s + mode.close_margin_s
    while time.monotonic() < until and len(ended_at) < len(streams):
        for c, sid in streams:
            if (c, sid) not in ended_at:
                c.pump(0.0)
                if c.stream_outcome(sid):
                    ended_at[(c, sid)] = time.monotonic() - t0
        time.sleep(0.05)
    outcomes = [c.stream_outcome(s) or "open" for c, s in streams]
    failures = []
    left = len(streams) - len(ended_at)
    if left:
        failures.append(f"no Hello: {left} of {len(streams)} streams still open "
                        f"{mode.hello_timeout_s + mode.close_margin_s:.1f} s after they opened "
                        f"(tunnels.hello_timeout {mode.hello_timeout_s}s)")
    slowest = max(ended_at.values()) if ended_at else 0
    for c in clients:
        c.close()
    return f"{len(streams)} streams: {summarize(outcomes)}; slowest end {slowest:.2f} s", failures


def attack_big_hello(stack, mode):
    """Hello{protocol_version 1, the real token, a 7 MiB name}, one after the other. The server must
    end the stream, and its answer must not grow with the name (REPLY_BOUND)."""
    msg = hello_message(TOKEN, "a" * (7 * 2 ** 20))
    outcomes, failures, slowest, biggest = [], [], 0.0, 0
    end = time.monotonic() + mode.attack_s
    while len(outcomes) < mode.big_hello_count or (time.monotonic() < end and len(outcomes) < mode.big_hello_max):
        c = H2Client(stack.grpc_port)
        t0 = time.monotonic()
        until = t0 + mode.close_bound_s * 2
        sid = c.open_stream()
        c.send_message(sid, msg, until)
        while time.monotonic() < until and not c.stream_outcome(sid):
            c.pump(0.1)
        o = c.stream_outcome(sid)
        slowest = max(slowest, time.monotonic() - t0)
        biggest = max(biggest, c.received)
        if not o:
            failures.append(f"7 MiB Hello: stream not ended within {mode.close_bound_s * 2:.0f} s")
            o = "open"
        outcomes.append(o[:80])
        c.close()
    if biggest > REPLY_BOUND:
        failures.append(f"7 MiB Hello: the server answered with {biggest / 2 ** 20:.1f} MiB (bound "
                        f"{REPLY_BOUND // 1024} KiB): it sends the name back")
    return (f"{len(outcomes)} Hellos: {summarize(outcomes)}; slowest {slowest:.2f} s; "
            f"answer up to {biggest / 1024:.0f} KiB"), failures[:2]


def attack_idle_flood(stack, mode):
    """Many TCP connections that never send a byte, from several loopback addresses."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = mode.idle_sources * mode.idle_per_source + 512
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    before = stack.metrics() if stack.limits_configured else {}
    socks = []  # (socket, source, connect time)
    closed = {}  # index -> seconds after its connect
    failures = []
    sources = [f"127.0.0.{2 + i}" for i in range(mode.idle_sources)]
    t_start = time.monotonic()
    # One address after the other: the first ones reach the per-address cap, the later ones the total.
    for src in sources:
        for k in range(mode.idle_per_source):
            s = socket.socket()
            s.bind((src, 0))
            s.setblocking(False)
            try:
                s.connect((HOST, stack.grpc_port))
            except BlockingIOError:
                pass
            socks.append((s, src, time.monotonic()))
    connected = time.monotonic()
    poller = select.poll()
    by_fd = {}
    for i, (s, _, _) in enumerate(socks):
        poller.register(s, select.POLLIN | select.POLLERR | select.POLLHUP)
        by_fd[s.fileno()] = i
    until = connected + mode.hello_timeout_s + mode.close_margin_s
    while time.monotonic() < until and len(closed) < len(socks):
        for fd, ev in poller.poll(100):
            i = by_fd[fd]
            s = socks[i][0]
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # EOF, RST or a refused connect
                closed[i] = time.monotonic() - socks[i][2]
                poller.unregister(fd)
    connect_s = connected - t_start
    at_once = sum(1 for t in closed.values() if t <= mode.at_once_s + connect_s)
    open_left = len(socks) - len(closed)
    held_allowed = min(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_IP * len(sources))
    after = stack.metrics() if stack.limits_configured else {}
    for s, _, _ in socks:
        s.close()
    # Every slot comes back: only the tunnel's own connection stays counted.
    active = after.get("grok_tunnel_connections_active")
    deadline = time.monotonic() + mode.close_margin_s
    while active is not None and active > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        active = stack.metrics().get("grok_tunnel_connections_active")
    if active is not None and active > 1:
        failures.append(f"idle flood: grok_tunnel_connections_active is {active:.0f}, not 1 (the tunnel), "
                        f"{mode.close_margin_s} s after the flood's connections closed")
    n = len(socks)
    outcome = (f"{n} connects in {connect_s:.2f} s: {at_once} closed at once, "
               f"{len(closed) - at_once} later, {open_left} open at "
               f"{mode.hello_timeout_s + mode.close_margin_s:.1f} s")
    if n - at_once > held_allowed:
        failures.append(f"idle flood: {n - at_once} connections outlived accept, more than the caps allow "
                        f"({held_allowed}: {MAX_CONNECTIONS_PER_IP} per address over {len(sources)} addresses, "
                        f"{MAX_CONNECTIONS} in all)")
    if open_left:
        failures.append(f"idle flood: {open_left} idle connections still open "
                        f"{mode.hello_timeout_s + mode.close_margin_s:.1f} s after connecting "
                        f"(tunnels.hello_timeout {mode.hello_timeout_s}s)")
    if not stack.limits_configured:
        failures.append("idle flood: refusals not checked in /metrics: the server does not take the tunnel "
                        "port's limits in its conf")
    else:
        for reason in ("per_ip", "total"):
            key = f'grok_tunnel_connections_refused_total{{reason="{reason}"}}'
            if key not in after:
                failures.append(f"idle flood: /metrics has no {key}")
            elif after[key] - before.get(key, 0) <= 0:
                failures.append(f"idle flood: {key} did not grow")
            else:
                outcome += f"; refused {reason} +{after[key] - before.get(key, 0):.0f}"
        if "grok_tunnel_connections_active" not in after:
            failures.append("idle flood: /metrics has no grok_tunnel_connections_active")
    return outcome, failures


def client_hello():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def attack_slow_tls(stack, mode):
    """On the TLS tunnel port: half the connections send nothing, half send a ClientHello one byte
    every 200 ms. The server must close each within hello_timeout."""
    hello = client_hello()
    n = mode.slow_tls_connections
    conns = []
    for i in range(n):
        s = tcp_connect(stack.grpc_port, "127.0.0.2")
        conns.append({"s": s, "t0": time.monotonic(), "drip": i % 2 == 1, "sent": 0, "closed": None})
    until = time.monotonic() + mode.hello_timeout_s + mode.close_margin_s
    next_drip = time.monotonic()
    while time.monotonic() < until and any(c["closed"] is None for c in conns):
        now = time.monotonic()
        if now >= next_drip:
            next_drip = now + 0.2
            for c in conns:
                if c["drip"] and c["closed"] is None and c["sent"] < len(hello):
                    try:
                        c["s"].send(hello[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        c["closed"] = time.monotonic() - c["t0"]
        open_ = [c for c in conns if c["closed"] is None]
        r, _, _ = select.select([c["s"] for c in open_], [], [], 0.05)
        for c in open_:
            if c["s"] in r:
                try:
                    data = c["s"].recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if not data:
                    c["closed"] = time.monotonic() - c["t0"]
    left = [c for c in conns if c["closed"] is None]
    for c in conns:
        c["s"].close()
    times = [c["closed"] for c in conns if c["closed"] is not None]
    outcome = (f"{n} handshakes ({n // 2} silent, {n - n // 2} dripping): {len(times)} closed"
               + (f" after {min(times):.2f}..{max(times):.2f} s" if times else "") + f", {len(left)} open at "
               f"{mode.hello_timeout_s + mode.close_margin_s:.1f} s")
    failures = []
    if left:
        failures.append(f"slow TLS handshake: {len(left)} of {n} connections still open "
                        f"{mode.hello_timeout_s + mode.close_margin_s:.1f} s after connecting "
                        f"(tunnels.hello_timeout {mode.hello_timeout_s}s)")
    return outcome, failures


def attack_baseline(stack, mode):
    time.sleep(mode.attack_s)
    return "no attack", []


ATTACKS = [
    ("baseline (no attack)", attack_baseline),
    ("idle-connection flood", attack_idle_flood),
    ("rapid reset", attack_rapid_reset),
    ("PING flood", attack_ping_flood),
    ("SETTINGS flood", attack_settings_flood),
    ("WINDOW_UPDATE flood", attack_window_update_flood),
    ("CONTINUATION flood", attack_continuation_flood),
    ("HEADERS: many small fields", attack_many_fields),
    ("HEADERS: huge fields", attack_huge_fields),
    ("stream without Hello", attack_no_hello),
    ("Hello with a 7 MiB name", attack_big_hello),
]
TLS_ATTACKS = [("slow TLS handshake", attack_slow_tls)]


# Running

def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def log_growth(path, offset):
    """Bytes the server logged after offset, access lines (" req=") aside."""
    with open(path, "rb") as f:
        f.seek(offset)
        return sum(len(line) for line in f if b" req=" not in line)


def run_attack(name, fn, stack, load, sampler, mode, rows):
    print(f"-- {name}", flush=True)
    sampler.reset()
    pid = stack.server.pid
    rss0 = status_kib(pid, "VmRSS") / 1024
    log0 = os.path.getsize(stack.server.log_path)
    cpu0, t0 = cpu_seconds(pid), time.monotonic()
    try:
        outcome, fails = fn(stack, mode)
    except Exception as e:  # an attack that cannot run is a failed check, not a crash
        outcome, fails = f"attack error: {type(e).__name__}: {e}", [f"{name}: the attack itself failed: {e!r}"]
    # An attack the server ends early still gets its whole window of tunnel samples.
    rest = t0 + mode.attack_s - time.monotonic()
    if rest > 0:
        time.sleep(rest)
    t1 = time.monotonic()
    alive = stack.server.running()
    cpu = (cpu_seconds(pid) - cpu0) if alive else float("nan")
    peak = sampler.peak_mib()
    logged = log_growth(stack.server.log_path, log0)
    samples = load.samples(t0, t1)
    lat = sorted(x for x, w in samples if w == "ok")
    bad = [w for _, w in samples if w != "ok"]
    p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
    if not alive:
        fails.append(f"{name}: grok-server is not running (exit status {stack.server.p.returncode})")
    if peak > mode.rss_bound_mib:
        fails.append(f"{name}: server peak RSS {peak:.0f} MiB over the bound {mode.rss_bound_mib} MiB")
    if logged > LOG_BOUND:
        fails.append(f"{name}: the server logged {logged / 1024:.0f} KiB (bound {LOG_BOUND // 1024} KiB)")
    if bad:
        fails.append(f"{name}: {len(bad)} of {len(samples)} tunnel requests failed ({summarize(bad)})")
    if len(lat) < mode.min_requests:
        fails.append(f"{name}: the tunnel answered only {len(lat)} requests in {t1 - t0:.1f} s")
    elif p99 > mode.p99_bound_ms:
        fails.append(f"{name}: tunnel p99 {p99:.1f} ms over the bound {mode.p99_bound_ms} ms")
    rows.append([name, f"{cpu * 1000:.0f} ({100 * cpu / (t1 - t0):.0f}%)", f"{rss0:.0f} -> {peak:.0f}",
                 f"{p50:.1f}/{p99:.1f} (n={len(lat)})", outcome, "FAIL" if fails else "ok"])
    for f in fails:
        print(f"   FAILED: {f}", flush=True)
    print(f"   {outcome}\n   {t1 - t0:.1f} s, cpu {cpu * 1000:.0f} ms, RSS {rss0:.0f} -> peak {peak:.1f} MiB, "
          f"logged {logged / 1024:.1f} KiB, tunnel p50/p99 {p50:.1f}/{p99:.1f} ms", flush=True)
    return fails


def run_one(build, workdir, upstream_port, mode, name, fn, limits, failures, rows, tls_dir=None):
    """One attack against a server and tunnel of its own, so that each figure is the attack's."""
    d = os.path.join(workdir, re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
    os.mkdir(d)
    stack = Stack(build, d, upstream_port, mode, tls_dir, limits["on"])
    load = sampler = None
    fails = []
    try:
        unknown = stack.start_server()
        if unknown:
            failures.append(f"grok-server refuses tunnels.{unknown} in its conf: the tunnel port's limits "
                            f"(hello_timeout, max_connections_per_ip, max_connections, grpc_memory_quota) are "
                            f"not there; the attacks run against its defaults")
            limits["on"] = stack.limits_configured = False
            if stack.start_server():
                raise RuntimeError("grok-server did not start without the limits either")
        stack.start_client()
        load = Load(stack, d)
        if not load.wait_ok(mode.start_s):
            raise RuntimeError("no request went through the tunnel")
        sampler = Sampler(stack.server.pid)
        fails += run_attack(name, fn, stack, load, sampler, mode, rows)
    except RuntimeError as e:
        fails.append(f"{name}: {e}")
    finally:
        if sampler:
            sampler.close()
        if load:
            load.proc.stop(signal.SIGTERM, 5)
        stopped = []
        stack.stop(stopped)
        fails += [f"{name}: {x}" for x in stopped]
        for x in stopped:
            print(f"   FAILED: {x}", flush=True)
        if stopped and rows and rows[-1][0] == name:
            rows[-1][-1] = "FAIL"
    failures.extend(fails)


def format_table(rows):
    head = ("attack", "server CPU ms (% core)", "RSS MiB start -> peak", "tunnel p50/p99 ms", "attacker outcome",
            "")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: " | ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()
    return "\n".join([line(head), "-+-".join("-" * w for w in widths)] + [line(r) for r in rows]) + "\n"


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--load":
        load_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return 0
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    build = os.path.abspath(sys.argv[1])
    for b in ("grok-server", "grok", "grok-demo-upstream"):
        if not os.access(os.path.join(build, b), os.X_OK):
            print(f"h2_attacks: no executable {b} in {build}", file=sys.stderr)
            return 2
    sanitizer = sanitizer_build(build)
    light = os.environ.get("GROK_ATTACK_LIGHT") == "1" or bool(sanitizer)
    mode = Mode(light, sanitizer)
    started = time.monotonic()
    print(f"h2_attacks: {build}, {'light' if light else 'normal'} mode; bounds: RSS {mode.rss_bound_mib} MiB, "
          f"tunnel p99 {mode.p99_bound_ms} ms, closed or throttled within {mode.close_bound_s} s", flush=True)
    failures, rows = [], []
    with tempfile.TemporaryDirectory(prefix="grok-attack-") as workdir:
        upstream = Proc("grok-demo-upstream", [os.path.join(build, "grok-demo-upstream"), "--port", "0"], workdir)
        try:
            m = upstream.wait_for(r"listening 127\.0\.0\.1:(\d+)", mode.start_s)
            if not m:
                raise RuntimeError(f"grok-demo-upstream did not start:\n{upstream.text()[-2000:]}")
            upstream_port = int(m.group(1))
            limits = {"on": True}
            only = os.environ.get("GROK_ATTACK_ONLY", "").lower()  # a substring of attack names, to run some
            for name, fn in ATTACKS:
                if only and only not in name.lower():
                    continue
                run_one(build, workdir, upstream_port, mode, name, fn, limits, failures, rows)
            try:
                tls_dir = make_cert(workdir) if not only or "tls" in only else None
            except (OSError, subprocess.SubprocessError) as e:
                tls_dir = None
                print(f"-- slow TLS handshake: SKIPPED, cannot make a certificate with openssl: {e}", flush=True)
            if tls_dir and (not only or any(only in name.lower() for name, _ in TLS_ATTACKS)):
                for name, fn in TLS_ATTACKS:
                    run_one(build, workdir, upstream_port, mode, name, fn, limits, failures, rows, tls_dir)
        except RuntimeError as e:
            failures.append(str(e))
        finally:
            upstream.stop(signal.SIGTERM, 10)
            if SANITIZER_REPORT.search(upstream.text()):
                failures.append("grok-demo-upstream printed a sanitizer report")
            if failures and os.environ.get("GROK_ATTACK_KEEP_LOGS"):
                keep = tempfile.mkdtemp(prefix="grok-attack-logs-")
                shutil.copytree(workdir, keep, dirs_exist_ok=True)
                print(f"h2_attacks: logs kept in {keep}")
    table = format_table(rows)
    elapsed = time.monotonic() - started
    summary = (f"h2_attacks: {'light' if light else 'normal'} mode, {elapsed:.0f} s; bounds: peak RSS "
               f"{mode.rss_bound_mib} MiB, tunnel p99 {mode.p99_bound_ms} ms\n")
    print("\n" + table + summary, end="")
    if os.environ.get("GROK_ATTACK_REPORT"):
        with open(os.environ["GROK_ATTACK_REPORT"], "w") as f:
            f.write(table + summary + "".join(f"FAILED: {x}\n" for x in failures))
    if failures:
        print(f"h2_attacks: {len(failures)} failed check(s):")
        for f in failures:
            print(f"  FAILED: {f}")
        return 1
    print("h2_attacks: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
