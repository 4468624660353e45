#!/usr/bin/env python3
"""Writes the seed corpus under corpus/<target>/ (run from anywhere).

Each seed is the target's input format (see the comment at the top of each
fuzz_<target>.cpp): a few control bytes, then the raw bytes. Regression
seeds found by fuzzing are kept as files named regress-*; this script
leaves them alone.
"""
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def u16(v):
    return struct.pack("<H", v & 0xFFFF)


# ---- request_head: [flags][max fields][n splits][splits u16...][raw] ----
def req(name, raw, flags=0, max_fields=0, splits=()):
    data = bytes([flags, max_fields, len(splits)]) + b"".join(u16(s) for s in splits) + raw
    write("request_head", name, data)


H = b"Host: app.localhost\r\n"
req("get", b"GET / HTTP/1.1\r\n" + H + b"\r\n")
req("get-split", b"GET /a?b=1 HTTP/1.1\r\n" + H + b"Accept: */*\r\n\r\n", splits=(1, 5, 17, 30))
req("post-cl", b"POST /upload HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello")
req("post-chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    splits=(3, 40))
req("smuggle-cl-te", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG")
req("smuggle-te-cl", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n")
req("te-gzip-chunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n")
req("te-chunked-gzip", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n")
req("te-xchunked", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n")
req("te-space", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:  chunked \r\n\r\n0\r\n\r\n")
req("te-tab", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n")
req("te-two-fields", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n")
req("te-two-fields-chunked-last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n")
req("te-http10", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
req("te-name-space", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n")
req("te-obs-fold", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: x\r\n chunked\r\n\r\n")
req("te-uppercase", b"POST / HTTP/1.1\r\n" + H + b"TRANSFER-ENCODING: CHUNKED\r\n\r\n0\r\n\r\n")
req("cl-duplicate-differ", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!")
req("cl-duplicate-same", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n")
req("cl-list", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello")
req("cl-plus", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello")
req("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n")
req("cl-huge", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 99999999999999999999999\r\n\r\n")
req("host-missing", b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n")
req("host-double", b"GET / HTTP/1.1\r\n" + H + b"Host: other.localhost\r\n\r\n")
req("host-empty", b"GET / HTTP/1.1\r\nHost:\r\n\r\n")
req("host-userinfo", b"GET / HTTP/1.1\r\nHost: evil@app.localhost\r\n\r\n")
req("host-ipv6", b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")
req("host-trailing-dot", b"GET / HTTP/1.1\r\nHost: App.LOCALHOST.:80\r\n\r\n")
req("host-bad-port", b"GET / HTTP/1.1\r\nHost: app.localhost:99999\r\n\r\n")
req("host-space", b"GET / HTTP/1.1\r\nHost: app.localhost other\r\n\r\n")
req("absolute-match", b"GET http://app.localhost:80/x?y HTTP/1.1\r\n" + H + b"\r\n")
req("absolute-mismatch", b"GET http://other.localhost/x HTTP/1.1\r\n" + H + b"\r\n")
req("absolute-userinfo", b"GET http://evil@app.localhost/ HTTP/1.1\r\n" + H + b"\r\n")
req("absolute-query-only", b"GET https://app.localhost?q=1 HTTP/1.1\r\n" + H + b"\r\n")
req("connect-authority", b"CONNECT app.localhost:443 HTTP/1.1\r\n" + H + b"\r\n")
req("options-star", b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n")
req("connection-named", b"GET / HTTP/1.1\r\n" + H + b"Connection: close, X-Secret, Cookie\r\nX-Secret: 1\r\nCookie: a=b\r\n\r\n")
req("connection-names-host", b"GET / HTTP/1.1\r\n" + H + b"Connection: close,host\r\n\r\n")
req("connection-two-fields", b"GET / HTTP/1.1\r\n" + H + b"Connection: close\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\n")
req("hop-by-hop", b"GET / HTTP/1.1\r\n" + H + b"Keep-Alive: 5\r\nTE: trailers\r\nTrailer: X\r\nProxy-Connection: keep-alive\r\n"
    b"Proxy-Authorization: Basic x\r\nProxy-Authenticate: y\r\nUpgrade: h2c\r\n\r\n")
req("upgrade-websocket", b"GET /ws HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
req("expect-continue", b"PUT /upload HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 3\r\n\r\n")
req("xff-untrusted", b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: https\r\n"
    b"X-Forwarded-Host: evil\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\r\n", flags=3 << 2)
req("xff-trusted", b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-For: 1.2.3.4, 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n"
    b"X-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n\r\n", flags=2)
req("xff-trusted-ipv6-peer", b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-For: 1.2.3.4\r\n\r\n", flags=2 | (2 << 2))
req("xff-trusted-empty", b"GET / HTTP/1.1\r\n" + H + b"X-Forwarded-For:\r\n\r\n", flags=2 | (1 << 2))
req("too-many-fields", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(6)) + b"\r\n",
    max_fields=5)
req("at-field-limit", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-%d: v\r\n" % i for i in range(4)) + b"\r\n",
    max_fields=5)
req("obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\r\n  b\r\n\r\n")
req("bare-lf", b"GET / HTTP/1.1\n" + H.replace(b"\r\n", b"\n") + b"X-A: 1\n\n")
req("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n")
req("cr-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n")
req("del-in-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x7fb\r\n\r\n")
req("obs-text-value", b"GET / HTTP/1.1\r\n" + H + b"X-A: caf\xc3\xa9\r\n\r\n")
req("pipelined", b"GET /1 HTTP/1.1\r\n" + H + b"\r\nGET /2 HTTP/1.1\r\n" + H + b"\r\n", splits=(10,))
req("http10-keepalive", b"GET / HTTP/1.0\r\n" + H + b"Connection: keep-alive\r\n\r\n", flags=1)
req("head", b"HEAD / HTTP/1.1\r\n" + H + b"\r\n")
req("space-in-target", b"GET /a b HTTP/1.1\r\n" + H + b"\r\n")
req("http2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
# Heads at server.max_header_bytes (16 KiB): just under it (90 fields, all
# forwarded), and just over it in one field, arriving in pieces.
req("head-near-limit", b"GET / HTTP/1.1\r\n" + H + b"".join(b"X-Filler-%02d: %s\r\n" % (i, b"v" * 160) for i in range(90)) + b"\r\n")
req("head-over-limit", b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 16500 + b"\r\n\r\n", splits=(100, 8000, 16000))

# ---- host: [domain choice][host] ----
for i, h in enumerate([b"app.localhost", b"APP.LocalHost:8080", b"app.localhost.", b"app.localhost..", b".app.localhost",
                       b"a.b.localhost", b"-app.localhost", b"app-.localhost", b"x" * 64 + b".localhost",
                       b"x" * 63 + b".localhost", b"[::1]", b"[::1]:80", b"[::1", b"[]", b"[::g]", b"user@app.localhost",
                       b"app.localhost:", b"app.localhost:0", b"app.localhost:65536", b"app.localhost:123456",
                       b"app_1.localhost", b"app.tunnel.example.com", b"App.Tunnel.Example.Com.:443",
                       b"app.example.com", b"app.a.example", b"localhost", b"", b":80", b"app..localhost",
                       b"\xc3\xa9.localhost", b"app.localhost\x00", b"1.2.3.4", b"1.2.3.4:80", b"[FE80::1]:443"]):
    write("host", "host-%02d" % i, bytes([i % 4]) + h)


# ---- exchange: [flags][window u16][send window u16] ops... ----
def ex(name, flags, window, send_window, ops):
    write("exchange", name, bytes([flags]) + u16(window) + u16(send_window) + b"".join(ops))


def head(status_code_byte=None, status=200, headers=(), cl=None, end=False, reason=None):
    # op 0; status: byte < 200 picks a common status, else next u16 is the status
    out = bytes([0])
    out += bytes([255]) + u16(status)
    out += bytes([1, len(reason)]) + reason if reason is not None else bytes([0])
    out += bytes([len(headers)])
    for name, value in headers:
        if isinstance(name, int):
            out += bytes([name])
        else:
            out += bytes([200, len(name)]) + name
        out += bytes([len(value)]) + value
    if cl is None:
        out += bytes([0])
    elif cl < 300:
        out += bytes([128]) + u16(cl)
    else:
        out += bytes([250]) + struct.pack("<I", cl)
    out += bytes([1 if end else 0])
    return out


def data(n, end=False):
    return bytes([1]) + u16(n) + bytes([1 if end else 0])


def window_update(inc):
    return bytes([2, 0]) + u16(inc)


def reset(code):
    return bytes([3, code, 0])


def write_some(k=4):
    return bytes([4, k - 1])


def spend(n):
    return bytes([5]) + u16(n)


def other_id(op, extra=b""):
    return bytes([6, op]) + extra


CT = (0, b"text/plain")  # name index 0 = Content-Type
ex("cl-body", 0, 65535, 65535, [head(status=200, headers=[CT], cl=10), data(4), write_some(), data(6, end=True), write_some()])
ex("chunked-body", 0, 65535, 65535, [head(status=200, headers=[CT]), data(100), write_some(), data(50), data(0, end=True), write_some()])
ex("http10-no-length", 1, 65535, 65535, [head(status=200), data(10), data(5, end=True), write_some()])
ex("head-request", 2, 65535, 65535, [head(status=200, cl=100, end=True), write_some()])
ex("no-body-204", 0, 65535, 65535, [head(status=204, cl=5), write_some(), data(1)])
ex("304-with-length", 0, 65535, 65535, [head(status=304, cl=42), write_some()])
ex("upgrade-101", 4, 65535, 1000, [head(status=101, headers=[(7, b"websocket")]), data(10), spend(500), window_update(500), write_some()])
ex("101-not-asked", 0, 65535, 65535, [head(status=101)])
ex("status-999", 0, 65535, 65535, [head(status=999)])
ex("status-100", 0, 65535, 65535, [head(status=100)])
ex("status-0", 0, 65535, 65535, [head(status=0)])
ex("bad-header-name", 0, 65535, 65535, [head(status=200, headers=[(6, b"v")])])
ex("header-crlf-injection", 0, 65535, 65535, [head(status=200, headers=[(b"X-A", b"a\r\nSet-Cookie: x=1")])])
ex("reason-crlf", 0, 65535, 65535, [head(status=200, reason=b"OK\r\nX: y", cl=0, end=True), write_some()])
ex("tunnel-sends-cl-te", 0, 65535, 65535, [head(status=200, headers=[(1, b"5"), (2, b"chunked")], cl=3), data(3, end=True), write_some()])
ex("duplicate-head", 0, 65535, 65535, [head(status=200, cl=0), head(status=200, cl=0)])
ex("data-before-head", 0, 65535, 65535, [data(5)])
ex("data-after-end", 0, 65535, 65535, [head(status=200, cl=2), data(2, end=True), data(1), write_some()])
ex("more-than-cl", 0, 65535, 65535, [head(status=200, cl=2), data(3)])
ex("short-of-cl", 0, 65535, 65535, [head(status=200, cl=20), data(3, end=True)])
ex("window-overrun", 0, 100, 65535, [head(status=200), data(60), data(60)])
ex("window-returned", 0, 400, 65535, [head(status=200), data(300), write_some(), data(300), write_some(), data(300), data(0, end=True), write_some()])
ex("window-update-overflow", 0, 65535, 65535, [bytes([2, 255]) + struct.pack("<I", 0x80000000)])
ex("credit-spend", 0, 65535, 100, [spend(50), spend(100), window_update(1000), spend(2000)])
ex("reset-refused", 0, 65535, 65535, [reset(1), data(1), head(status=200)])
ex("reset-after-head", 0, 65535, 65535, [head(status=200), data(10), reset(2), write_some()])
ex("other-ids", 0, 65535, 65535, [other_id(0, bytes([255]) + u16(200) + bytes([0, 0, 0, 0]) + bytes([3])),
                                  other_id(1, u16(5) + bytes([0, 9])), head(status=200, cl=0, end=True), write_some()])
ex("closed-then-frames", 0, 65535, 65535, [head(status=200), bytes([7]), data(10), window_update(5)])
ex("empty-frame", 0, 65535, 65535, [bytes([8]), head(status=200, cl=0, end=True), write_some()])
ex("big-data-frame", 0, 65535, 65535, [head(status=200), bytes([1]) + u16(0xF001) + bytes([0])])


# ---- client_response: [flags][n splits][splits u16...][max frame u16][window u16][raw] ----
def resp(name, raw, flags=0, splits=(), max_frame=1024, window=65536):
    data = (bytes([flags, len(splits)]) + b"".join(u16(s) for s in splits) + u16(max_frame - 1) +
            u16(window - 1024) + raw)
    write("client_response", name, data)


resp("ok-cl", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
resp("ok-cl-split", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", splits=(4, 20, 36, 38))
resp("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", splits=(50,))
resp("chunked-trailers", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n")
resp("chunked-ext", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\n\r\n")
resp("until-close", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until the connection closes")
resp("http10", b"HTTP/1.0 200 OK\r\n\r\nold style body")
resp("no-content", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
resp("not-modified", b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n")
resp("head-response", b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", flags=1)
resp("interim-100", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", splits=(25,))
resp("interim-103", b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
resp("switching", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nraw", flags=2)
resp("switching-unasked", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
resp("hop-by-hop", b"HTTP/1.1 200 OK\r\nConnection: X-Internal, keep-alive\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\n"
     b"Proxy-Authenticate: Basic\r\nContent-Length: 0\r\n\r\n")
resp("connection-two-fields", b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: X-Internal\r\n"
     b"X-Internal: secret\r\nContent-Length: 0\r\n\r\n")
resp("cl-and-te", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
resp("cl-duplicate", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
resp("status-999", b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n")
resp("status-000", b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n")
resp("status-600", b"HTTP/1.1 600 Over\r\nContent-Length: 0\r\n\r\n")
resp("reason-obs-text", b"HTTP/1.1 200 \xc3\x96K\r\nContent-Length: 0\r\n\r\n")
resp("value-del", b"HTTP/1.1 200 OK\r\nX-A: a\x7fb\r\nContent-Length: 0\r\n\r\n")
resp("value-obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n")
resp("bare-lf", b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
resp("short-body", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
resp("big-body-small-frames", b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"z" * 5000, max_frame=700)
resp("big-chunked-small-frames", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + b"q" * 5000 + b"\r\n0\r\n\r\n",
     splits=(100, 2000), max_frame=333)
resp("big-body-small-window", b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"w" * 5000, max_frame=700,
     window=1024)
resp("chunked-small-window", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1388\r\n" + b"c" * 5000 +
     b"\r\n0\r\n\r\n", splits=(70, 3000), max_frame=512, window=1500)
resp("until-close-small-window", b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"u" * 4000, window=1024)
resp("switching-with-raw-bytes", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
     + b"\x81\x05hello", flags=2, splits=(40,))
resp("response-splitting-attempt", b"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nX-Evil: 1\r\n\r\n")
resp("set-cookie-many", b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n")


# ---- proxy_protocol: [received bytes] ----
def proxy(name, raw):
    write("proxy_protocol", name, raw)


V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
HTTP = b"GET / HTTP/1.1\r\nHost: app.localhost\r\n\r\n"


def v2(ver_cmd, fam, body):
    return V2_SIG + bytes([ver_cmd, fam]) + struct.pack(">H", len(body)) + body


def tlv(t, value):
    return bytes([t]) + struct.pack(">H", len(value)) + value


TCP4 = bytes([192, 0, 2, 1, 198, 51, 100, 7]) + struct.pack(">HH", 56324, 443)
TCP6 = (bytes.fromhex("20010db8000000000000000000000001") + bytes.fromhex("20010db80000000000000000000000ff") +
        struct.pack(">HH", 1234, 80))
proxy("v1-tcp4", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" + HTTP)
proxy("v1-tcp6", b"PROXY TCP6 2001:db8::1 2001:db8::ff 1234 80\r\n" + HTTP)
proxy("v1-tcp6-mapped", b"PROXY TCP6 ::ffff:198.51.100.7 2001:DB8:0:0:0:0:0:2 40000 443\r\n")
proxy("v1-tcp6-longest", b"PROXY TCP6 " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n")
proxy("v1-ports-0-65535", b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n")
proxy("v1-unknown", b"PROXY UNKNOWN\r\n" + HTTP)
proxy("v1-unknown-107-bytes", b"PROXY UNKNOWN " + b"ffff:" * 7 + b"ffff " + b"ffff:" * 7 + b"ffff 65535 65535\r\n")
proxy("v1-unknown-108-bytes", b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n")
proxy("v1-no-crlf", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443" + b" " * 70)
proxy("v1-bare-lf", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n" + HTTP)
proxy("v1-bare-cr", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\rX")
proxy("v1-protocol-lower-case", b"PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n")
proxy("v1-missing-port", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n")
proxy("v1-extra-field", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 1\r\n")
proxy("v1-double-space", b"PROXY TCP4  192.168.0.1 192.168.0.11 56324 443\r\n")
proxy("v1-ipv4-leading-zero", b"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n")
proxy("v1-ipv6-in-tcp4", b"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n")
proxy("v1-ipv4-in-tcp6", b"PROXY TCP6 2001:db8::1 192.168.0.11 56324 443\r\n")
proxy("v1-ipv6-zone", b"PROXY TCP6 fe80::1%eth0 2001:db8::1 56324 443\r\n")
proxy("v1-port-65536", b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n")
proxy("v1-port-leading-zero", b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 0443\r\n")
proxy("v2-tcp4", v2(0x21, 0x11, TCP4) + HTTP)
proxy("v2-tcp6", v2(0x21, 0x21, TCP6) + HTTP)
proxy("v2-tcp4-tlvs", v2(0x21, 0x11, TCP4 + tlv(0x01, b"h2") + tlv(0x02, b"app.example.com") + tlv(0x05, b"u" * 128) +
                        tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3")) + tlv(0x04, b"")) + HTTP)
proxy("v2-at-size-limit", v2(0x21, 0x11, TCP4 + tlv(0x04, b"n" * (1024 - 12 - 3))))
proxy("v2-over-size-limit", V2_SIG + b"\x21\x11\x04\x01")
proxy("v2-local", v2(0x20, 0x00, b"") + HTTP)
proxy("v2-local-with-junk", v2(0x20, 0xFF, b"junk"))
proxy("v2-unspec", v2(0x21, 0x00, b""))
proxy("v2-udp4", v2(0x21, 0x12, TCP4))
proxy("v2-unix-stream", v2(0x21, 0x31, b"/run/app.sock".ljust(108, b"\x00") * 2))
proxy("v2-version-1", v2(0x11, 0x11, TCP4))
proxy("v2-version-3", v2(0x31, 0x11, TCP4))
proxy("v2-command-2", v2(0x22, 0x11, TCP4))
proxy("v2-family-0x13", v2(0x21, 0x13, TCP4))
proxy("v2-too-short-for-ipv6", v2(0x21, 0x21, TCP4))
proxy("v2-tlv-truncated", v2(0x21, 0x11, TCP4 + b"\x04\x00"))
proxy("v2-tlv-overrun", v2(0x21, 0x11, TCP4 + b"\x02\x00\x05app"))
proxy("v2-partial", v2(0x21, 0x21, TCP6)[:30])
proxy("http-get", HTTP)
proxy("tls-client-hello", bytes.fromhex("160301020001000200030367"))
