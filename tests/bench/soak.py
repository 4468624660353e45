#!/usr/bin/env python3
"""Load driver of tests/bench/soak.sh (python3 standard library only).

Runs mixed traffic through a running grok stack for a fixed time from a
bounded number of threads, samples RSS and open fds of grok-server and grok
into a CSV, prints a summary and exits non-zero on any unexpected error, on a
process that died, on exchanges left in flight, or on RSS/fd growth.

Every operation checks what a user would: status, body bytes, sha-256 of
downloads and uploads, SSE events in order, WebSocket echoes. Injected public
client disconnects (after the request, mid-response, mid-upload) are counted
apart and are not errors.
"""

import argparse
import base64
import collections
import csv
import hashlib
import http.client
import os
import random
import socket
import struct
import sys
import threading
import time

PATTERN = bytes(((i * 31 + 7) & 0xFF) for i in range(256))
OP_TIMEOUT = 30.0


def pattern(size, offset=0):
    """The bytes grok-demo-upstream's /download serves: byte i = (i*31+7)&0xff."""
    start = offset % 256
    reps = (start + size) // 256 + 1
    return (PATTERN * reps)[start:start + size]


def proc_rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def proc_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] not in ("Z", "X")
    except OSError:
        return False


def scrape(api_port):
    """The gauges of grok-server's /metrics that the soak watches."""
    out = {}
    conn = http.client.HTTPConnection("127.0.0.1", api_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in body.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


class Unexpected(Exception):
    pass


class Stats:
    def __init__(self):
        self.mu = threading.Lock()
        self.ok = collections.Counter()
        self.injected = collections.Counter()
        self.errors = collections.Counter()
        self.first_errors = []

    def count(self, kind, what):
        with self.mu:
            getattr(self, kind)[what] += 1

    def error(self, op, exc):
        with self.mu:
            self.errors[op] += 1
            if len(self.first_errors) < 10:
                self.first_errors.append(f"{op}: {type(exc).__name__}: {exc}")

    def totals(self):
        with self.mu:
            return sum(self.ok.values()), sum(self.injected.values()), sum(self.errors.values())


class Worker:
    """One public client: a keep-alive connection for ordinary requests, raw
    sockets for WebSocket and for the disconnects it injects."""

    def __init__(self, args, stats, seed):
        self.args = args
        self.stats = stats
        self.rng = random.Random(seed)
        self.conn = None

    def http(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.args.http_port, timeout=OP_TIMEOUT)
        return self.conn

    def drop_http(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def exchange(self, method, target, body=None, headers=None):
        h = {"Host": self.args.host}
        h.update(headers or {})
        conn = self.http()
        conn.request(method, target, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        if resp.will_close:
            self.drop_http()
        return resp, data

    def raw(self):
        s = socket.create_connection(("127.0.0.1", self.args.http_port), timeout=OP_TIMEOUT)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def abandon(self, s):
        """Closes a raw socket the way a vanishing client does: FIN or reset."""
        if self.rng.random() < 0.5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    # ---- ordinary operations: every failure is an error ----

    def op_get(self):
        resp, data = self.exchange("GET", "/")
        if resp.status != 200 or data != b"Hello from grok-demo-upstream\n":
            raise Unexpected(f"GET / -> {resp.status} {data[:60]!r}")

    def op_echo(self):
        body = self.rng.randbytes(self.rng.randrange(0, 256 * 1024))
        resp, data = self.exchange("POST", "/echo", body=body)
        if resp.status != 200 or data != body:
            raise Unexpected(f"POST /echo -> {resp.status}, {len(data)} of {len(body)} bytes, equal={data == body}")

    def op_download(self):
        size = self.rng.randrange(1, 8 << 20)
        chunked = self.rng.random() < 0.3
        resp, data = self.exchange("GET", f"/download?size={size}{'&chunked=1' if chunked else ''}")
        if resp.status != 200 or len(data) != size:
            raise Unexpected(f"GET /download -> {resp.status}, {len(data)} of {size} bytes")
        if hashlib.sha256(data).digest() != hashlib.sha256(pattern(size)).digest():
            raise Unexpected(f"GET /download size={size}: sha-256 mismatch")

    def op_upload(self):
        size = self.rng.randrange(0, 4 << 20)
        body = pattern(size, self.rng.randrange(256))
        resp, data = self.exchange("POST", "/upload", body=body)
        want = f"{size} {hashlib.sha256(body).hexdigest()}".encode()
        if resp.status != 200 or data != want:
            raise Unexpected(f"POST /upload -> {resp.status} {data[:100]!r}, want {want!r}")

    def op_sse(self):
        n = self.rng.randrange(1, 6)
        resp, data = self.exchange("GET", f"/sse?n={n}&interval_ms=10")
        want = b"".join(b"data: event %d\n\n" % i for i in range(n))
        if resp.status != 200 or data != want:
            raise Unexpected(f"GET /sse -> {resp.status} {data[:100]!r}")

    def op_websocket(self):
        s = self.raw()
        try:
            key = base64.b64encode(self.rng.randbytes(16)).decode()
            s.sendall((f"GET /ws HTTP/1.1\r\nHost: {self.args.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            buf = b""
            while b"\r\n\r\n" not in buf:
                piece = s.recv(65536)
                if not piece:
                    raise Unexpected("WebSocket: closed before the 101")
                buf += piece
            head, buf = buf.split(b"\r\n\r\n", 1)
            accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode())
                                      .digest()).decode()
            if not head.startswith(b"HTTP/1.1 101") or accept.encode() not in head:
                raise Unexpected(f"WebSocket handshake: {head[:100]!r}")
            messages = [self.rng.randbytes(self.rng.randrange(1, 2000)) for _ in range(self.rng.randrange(1, 20))]
            for m in messages:
                s.sendall(ws_frame(0x2, m, self.rng))
            got = []
            partial = b""
            while len(got) < len(messages):
                while True:
                    frame, buf = ws_parse(buf)
                    if frame is None:
                        break
                    fin, opcode, payload = frame
                    if opcode >= 8:
                        continue
                    partial += payload
                    if fin:
                        got.append(partial)
                        partial = b""
                if len(got) >= len(messages):
                    break
                piece = s.recv(65536)
                if not piece:
                    raise Unexpected(f"WebSocket: closed after {len(got)} of {len(messages)} echoes")
                buf += piece
            if got != messages:
                raise Unexpected("WebSocket: echoes differ from the messages sent")
            s.sendall(ws_frame(0x8, struct.pack("!H", 1000), self.rng))
        finally:
            s.close()

    # ---- injected disconnects: counted apart ----

    def inject_after_request(self):
        s = self.raw()
        s.sendall(f"GET /download?size={16 << 20} HTTP/1.1\r\nHost: {self.args.host}\r\n\r\n".encode())
        self.abandon(s)

    def inject_mid_response(self):
        s = self.raw()
        target = self.rng.choice(["/download?size=33554432", "/download?size=33554432&chunked=1",
                                  "/sse?n=1000&interval_ms=5"])
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: {self.args.host}\r\n\r\n".encode())
        got = 0
        want = self.rng.randrange(1, 1 << 20)
        while got < want:
            piece = s.recv(65536)
            if not piece:
                s.close()
                raise Unexpected(f"GET {target}: closed by the server after {got} bytes")
            got += len(piece)
            if target.startswith("/sse"):
                break
        self.abandon(s)

    def inject_mid_upload(self):
        s = self.raw()
        part = pattern(self.rng.randrange(1, 1 << 20))
        if self.rng.random() < 0.5:
            s.sendall(f"POST /upload HTTP/1.1\r\nHost: {self.args.host}\r\nContent-Length: {4 << 20}\r\n\r\n"
                      .encode() + part)
        else:
            s.sendall(f"POST /echo HTTP/1.1\r\nHost: {self.args.host}\r\nTransfer-Encoding: chunked\r\n\r\n"
                      f"{len(part):x}\r\n".encode() + part + b"\r\n")
        self.abandon(s)

    def run(self, deadline):
        ops = [(30, "get", self.op_get), (20, "echo", self.op_echo), (10, "download", self.op_download),
               (8, "upload", self.op_upload), (8, "sse", self.op_sse), (6, "websocket", self.op_websocket),
               (6, "inject_after_request", self.inject_after_request),
               (6, "inject_mid_response", self.inject_mid_response),
               (6, "inject_mid_upload", self.inject_mid_upload)]
        weights = [w for w, _, _ in ops]
        while time.monotonic() < deadline:
            _, name, fn = self.rng.choices(ops, weights)[0]
            try:
                fn()
                self.stats.count("injected" if name.startswith("inject") else "ok", name)
            except Exception as e:  # noqa: BLE001 - every failure is reported
                self.stats.error(name, e)
                self.drop_http()
        self.drop_http()


def ws_frame(opcode, payload, rng):
    mask = rng.randbytes(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_parse(buf):
    """One unmasked server frame from buf: ((fin, opcode, payload), rest) or (None, buf)."""
    if len(buf) < 2:
        return None, buf
    fin = bool(buf[0] & 0x80)
    opcode = buf[0] & 0x0F
    n = buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None, buf
        n = struct.unpack("!H", buf[2:4])[0]
        pos = 4
    elif n == 127:
        if len(buf) < 10:
            return None, buf
        n = struct.unpack("!Q", buf[2:10])[0]
        pos = 10
    if len(buf) < pos + n:
        return None, buf
    return (fin, opcode, buf[pos:pos + n]), buf[pos + n:]


def wait_metric(api_port, name, value, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = scrape(api_port).get(name)
        except OSError:
            last = None
        if last == value or time.monotonic() >= deadline:
            return last
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--api-port", type=int, required=True)
    ap.add_argument("--host", required=True)
    ap.add_argument("--server-pid", type=int, required=True)
    ap.add_argument("--client-pid", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--sample-seconds", type=float, default=5)
    ap.add_argument("--csv", required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    pids = {"grok-server": args.server_pid, "grok": args.client_pid}
    idle_before = {name: (proc_rss_kib(pid), proc_fds(pid)) for name, pid in pids.items()}
    stats = Stats()
    start = time.monotonic()
    deadline = start + args.seconds
    workers = [Worker(args, stats, args.seed * 1000 + i) for i in range(args.threads)]
    threads = [threading.Thread(target=w.run, args=(deadline,), daemon=True) for w in workers]
    for t in threads:
        t.start()

    samples = []
    columns = ["seconds", "server_rss_kib", "server_fds", "client_rss_kib", "client_fds", "exchanges_in_flight",
               "public_connections", "requests_ok", "injected", "errors"]
    with open(args.csv, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        next_sample = start
        while any(t.is_alive() for t in threads):
            now = time.monotonic()
            if now >= next_sample:
                try:
                    m = scrape(args.api_port)
                except OSError:
                    m = {}
                ok, injected, errors = stats.totals()
                row = [round(now - start, 1), proc_rss_kib(args.server_pid), proc_fds(args.server_pid),
                       proc_rss_kib(args.client_pid), proc_fds(args.client_pid),
                       int(m.get("grok_exchanges_in_flight", -1)), int(m.get("grok_public_connections_active", -1)),
                       ok, injected, errors]
                out.writerow(row)
                f.flush()
                samples.append(dict(zip(columns, row)))
                next_sample += args.sample_seconds
                if not all(alive(pid) for pid in pids.values()):
                    break
            time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
        # Workers finish their operation in progress (bounded by OP_TIMEOUT).
        for t in threads:
            t.join(OP_TIMEOUT + 5)

    failures = []
    for name, pid in pids.items():
        if not alive(pid):
            failures.append(f"{name} (pid {pid}) died")
    in_flight = wait_metric(args.api_port, "grok_exchanges_in_flight", 0, 15)
    public = wait_metric(args.api_port, "grok_public_connections_active", 0, 15)
    if in_flight != 0:
        failures.append(f"exchanges in flight after the load: {in_flight}")
    if public != 0:
        failures.append(f"public connections open after the load: {public}")
    # Let idle keep-alive connections of grok's local pool settle before the fd check.
    time.sleep(1)
    idle_after = {name: (proc_rss_kib(pid), proc_fds(pid)) for name, pid in pids.items()}

    ok, injected, errors = stats.totals()
    elapsed = time.monotonic() - start
    print(f"soak: {elapsed:.0f} s, {args.threads} threads: {ok} requests answered and checked "
          f"({ok / max(elapsed, 1e-9):.0f}/s), {injected} disconnects injected, {errors} unexpected errors")
    print("  answered: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.ok.items())))
    print("  injected: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.injected.items())))
    if errors:
        print("  errors:   " + ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items())))
        for e in stats.first_errors:
            print(f"    {e}")
        failures.append(f"{errors} unexpected errors")
    if ok == 0:
        failures.append("no request was answered")

    # Growth: compare the end of the run with its middle, after a warm-up of
    # 20 % (at least one sample). RSS may rise by 10 % or 4 MiB, whichever is
    # larger (allocator arenas and pooled buffers move by a few MiB with the
    # mix in flight at the moment of a sample); fds by the connections that
    # can be open at once (2 per worker thread, plus slack).
    print(f"  {'':12}{'RSS KiB idle before':>20}{'first':>10}{'last':>10}{'idle after':>12}"
          f"{'fds idle before':>17}{'first':>7}{'last':>7}{'idle after':>12}")
    for name, key in (("grok-server", "server"), ("grok", "client")):
        rss = [s[f"{key}_rss_kib"] for s in samples]
        fds = [s[f"{key}_fds"] for s in samples]
        print(f"  {name:12}{idle_before[name][0]:>20}{rss[0] if rss else -1:>10}{rss[-1] if rss else -1:>10}"
              f"{idle_after[name][0]:>12}{idle_before[name][1]:>17}{fds[0] if fds else -1:>7}"
              f"{fds[-1] if fds else -1:>7}{idle_after[name][1]:>12}")
        if len(samples) >= 4:
            warm = max(1, len(samples) // 5)
            rest = samples[warm:]
            half = len(rest) // 2
            middle, end = rest[:max(1, half)], rest[max(1, half):] or rest[-1:]
            mid_rss = max(s[f"{key}_rss_kib"] for s in middle)
            end_rss = max(s[f"{key}_rss_kib"] for s in end)
            allowed = max(mid_rss // 10, 4096)
            if end_rss > mid_rss + allowed:
                failures.append(f"{name} RSS grew from {mid_rss} KiB (middle of the run) to {end_rss} KiB "
                                f"(end), more than {allowed} KiB")
        fd_slack = 2 * args.threads + 16
        if idle_after[name][1] > idle_before[name][1] + fd_slack:
            failures.append(f"{name} holds {idle_after[name][1]} fds idle after the run, "
                            f"{idle_before[name][1]} before it")
    print(f"  samples: {args.csv}")
    for f in failures:
        print(f"soak: FAIL: {f}")
    if not failures:
        print("soak: PASS")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
