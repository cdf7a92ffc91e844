"""Unit tests of daytona_local.httpcore: framing, keep-alive, bodies, faults, WebSocket."""

import base64
import os
import socket
import struct
import tempfile
import threading
import time

import pytest

from daytona_local import httpcore


class App:
    """A tiny application; handlers are looked up by path."""

    def __init__(self):
        self.routes = {}
        self.errors = []
        self.seen = []

    def __call__(self, req, resp):
        self.seen.append((req.method, req.path))
        fn = self.routes.get(req.path)
        try:
            if fn is None:
                resp.send(404, b"nope")
            else:
                fn(req, resp)
        except Exception as e:          # recorded for the test to inspect
            self.errors.append(e)
            if isinstance(e, httpcore.ClientGone):
                raise
            if not resp.sent:
                resp.send(500, repr(e).encode())


@pytest.fixture
def app():
    a = App()
    srv = httpcore.HTTPServer("127.0.0.1", 0, a, max_connections=32)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    a.port = srv.port
    yield a
    srv.shutdown()


def connect(app):
    s = socket.create_connection(("127.0.0.1", app.port), timeout=5)
    return s


def read_response(sock, buf=b"", is_head=False):
    """Parse one response from sock: (status, headers, body, leftover)."""
    while b"\r\n\r\n" not in buf:
        d = sock.recv(65536)
        if not d:
            raise EOFError(buf)
        buf += d
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if status in (100, 101, 204, 304) or is_head:
        return status, headers, b"", buf
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line, 16)
            while len(buf) < size + 2:
                buf += sock.recv(65536)
            body += buf[:size]
            buf = buf[size + 2:]
            if size == 0:
                return status, headers, body, buf
    n = int(headers.get("content-length", "0"))
    while len(buf) < n:
        d = sock.recv(65536)
        if not d:
            raise EOFError(buf)
        buf += d
    return status, headers, buf[:n], buf[n:]


def echo(req, resp):
    resp.send(200, req.read(), [("X-Path", req.path), ("X-Q", repr(req.query))])


def test_keepalive_and_pipelining(app):
    app.routes["/e"] = echo
    s = connect(app)
    s.sendall(b"GET /e?a=1&b=x+y HTTP/1.1\r\nHost: x\r\n\r\n"
              b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
    st, h, body, rest = read_response(s)
    assert st == 200 and h["connection"] == "keep-alive"
    assert h["x-q"] == repr({"a": ["1"], "b": ["x y"]})      # '+' decodes to a space
    st, h, body, rest = read_response(s, rest)
    assert (st, body) == (200, b"hello")
    s.close()


def test_percent_decoded_path_and_raw_path(app):
    app.routes["/a b/c"] = lambda req, resp: resp.send(200, req.raw_path.encode())
    s = connect(app)
    s.sendall(b"GET /a%20b/c?x=%2F HTTP/1.1\r\n\r\n")
    st, h, body, _ = read_response(s)
    assert st == 200 and body == b"/a%20b/c?x=%2F"


def test_chunked_request_body(app):
    def h(req, resp):
        parts = []
        while True:
            d = req.read(3)           # exact-size reads across chunk boundaries
            if not d:
                break
            parts.append(d)
        assert all(len(p) == 3 for p in parts[:-1])
        resp.send(200, b"".join(parts))
    app.routes["/c"] = h
    s = connect(app)
    s.sendall(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"4;ext=1\r\nabcd\r\n1\r\ne\r\nA\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n"
              b"GET /c HTTP/1.1\r\n\r\n")
    st, _, body, rest = read_response(s)
    assert (st, body) == (200, b"abcde0123456789")
    st, _, body, _ = read_response(s, rest)            # connection still usable
    assert (st, body) == (200, b"")
    assert not app.errors


def test_json_and_badjson(app):
    def h(req, resp):
        try:
            resp.send(200, repr(req.json()).encode())
        except httpcore.BadJSON as e:
            resp.send(400, e.message.encode())
    app.routes["/j"] = h
    s = connect(app)
    for body, want in ((b'{"a": [1, 2]}', (200, b"{'a': [1, 2]}")),
                       (b'{"a": }', (400, b"Unexpected token } in JSON at position 6")),
                       (b'{"a": 1', (400, b"Unexpected end of JSON input"))):
        s.sendall(b"POST /j HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        st, _, got, _ = read_response(s)
        assert (st, got) == want


def test_expect_continue_sent_on_read(app):
    app.routes["/e"] = echo
    s = connect(app)
    s.sendall(b"POST /e HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n")
    st, _, _, rest = read_response(s)
    assert st == 100
    s.sendall(b"abc")
    st, _, body, _ = read_response(s, rest)
    assert (st, body) == (200, b"abc")


def test_unread_body_small_is_drained_large_closes(app):
    app.routes["/n"] = lambda req, resp: resp.send(401, b"no")
    s = connect(app)
    s.sendall(b"POST /n HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789GET /n HTTP/1.1\r\n\r\n")
    st, h, _, rest = read_response(s)
    assert st == 401 and h["connection"] == "keep-alive"
    st, _, _, _ = read_response(s, rest)
    assert st == 401
    # waiting for 100-continue and never read: the server must close instead of draining
    s.sendall(b"POST /n HTTP/1.1\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n")
    st, h, _, _ = read_response(s)
    assert st == 401 and h["connection"] == "close"
    assert s.recv(10) == b""


def test_chunked_response_and_head(app):
    def h(req, resp):
        resp.start(200, [("Content-Type", "text/plain")], None)
        resp.write(b"hello ")
        resp.write(memoryview(b"world"))
        resp.end()
    app.routes["/s"] = h
    app.routes["/fixed"] = lambda req, resp: resp.send(200, b"12345")
    s = connect(app)
    s.sendall(b"GET /s HTTP/1.1\r\n\r\n")
    st, hd, body, _ = read_response(s)
    assert hd["transfer-encoding"] == "chunked" and body == b"hello world"
    s.sendall(b"HEAD /fixed HTTP/1.1\r\n\r\nGET /fixed HTTP/1.1\r\n\r\n")
    st, hd, _, rest = read_response(s, is_head=True)
    assert hd["content-length"] == "5"
    assert rest == b"" or rest.startswith(b"HTTP/1.1")          # no body bytes after HEAD
    st, hd, body, _ = read_response(s, rest)
    assert body == b"12345"


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"GET / HTTP/1.1\r\nbad header\r\n\r\n",
    b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
])
def test_malformed_requests_get_400_and_server_survives(app, raw):
    app.routes["/ok"] = lambda req, resp: resp.send(200, b"ok")
    s = connect(app)
    s.sendall(raw)
    st, h, _, _ = read_response(s)
    assert st == 400 and h["connection"] == "close"
    s2 = connect(app)
    s2.sendall(b"GET /ok HTTP/1.1\r\n\r\n")
    assert read_response(s2)[0] == 200


def test_bad_chunk_size_is_client_error(app):
    app.routes["/e"] = echo
    s = connect(app)
    s.sendall(b"POST /e HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    time.sleep(0.2)
    s.close()
    s2 = connect(app)
    s2.sendall(b"GET /e HTTP/1.1\r\n\r\n")
    assert read_response(s2)[0] == 200


def test_client_disconnect_mid_body_is_harmless(app):
    got = threading.Event()

    def h(req, resp):
        try:
            req.read()
        except httpcore.ClientGone:
            got.set()
            raise
    app.routes["/up"] = h
    app.routes["/ok"] = lambda req, resp: resp.send(200, b"ok")
    s = connect(app)
    s.sendall(b"POST /up HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
    s.close()
    assert got.wait(5)
    s2 = connect(app)
    s2.sendall(b"GET /ok HTTP/1.1\r\n\r\n")
    assert read_response(s2)[0] == 200


def test_write_to_gone_client_raises_clientgone(app):
    outcome = []
    done = threading.Event()

    def h(req, resp):
        resp.start(200, [], None)
        try:
            for _ in range(2000):
                resp.write(b"x" * 65536)
            outcome.append("finished")
        except httpcore.ClientGone:
            outcome.append("gone")
        finally:
            done.set()
    app.routes["/big"] = h
    s = connect(app)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.sendall(b"GET /big HTTP/1.1\r\n\r\n")
    s.recv(1000)
    s.close()
    assert done.wait(10)
    assert outcome == ["gone"]


def test_http10_closes(app):
    app.routes["/ok"] = lambda req, resp: resp.send(200, b"ok")
    s = connect(app)
    s.sendall(b"GET /ok HTTP/1.0\r\n\r\n")
    st, h, body, _ = read_response(s)
    assert h["connection"] == "close" and body == b"ok"
    assert s.recv(10) == b""


def test_sendfile_fd_fileobj_and_chunked(app):
    data = os.urandom(300000)
    f = tempfile.NamedTemporaryFile(delete=False)
    f.write(data)
    f.close()

    def fixed(req, resp):
        with open(f.name, "rb") as fh:
            resp.start(200, [], 1000)
            resp.sendfile(fh.fileno(), 5, 1000)          # raw fd
            resp.end()

    def chunked(req, resp):
        with open(f.name, "rb") as fh:
            resp.start(200, [], None)
            resp.sendfile(fh, 0, len(data))            # file object, one chunk
            resp.write(b"tail")
            resp.end()

    app.routes["/fixed"] = fixed
    app.routes["/chunked"] = chunked
    s = connect(app)
    s.sendall(b"GET /fixed HTTP/1.1\r\n\r\nGET /chunked HTTP/1.1\r\n\r\n")
    st, _, body, rest = read_response(s)
    assert body == data[5:1005]
    st, _, body, _ = read_response(s, rest)
    assert body == data + b"tail"
    os.unlink(f.name)


def test_throttle_and_cut(app):
    def slow(req, resp):
        resp.throttle = 20000
        resp.send(200, b"x" * 10000)

    def cut(req, resp):
        resp.cut_at = "half"
        resp.send(200, b"y" * 1000)

    app.routes["/slow"] = slow
    app.routes["/cut"] = cut
    s = connect(app)
    t0 = time.monotonic()
    s.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
    st, _, body, _ = read_response(s)
    assert len(body) == 10000 and time.monotonic() - t0 >= 0.4
    s = connect(app)
    s.sendall(b"GET /cut HTTP/1.1\r\n\r\n")
    with pytest.raises(EOFError) as ei:
        read_response(s)
    assert ei.value.args[0] == b"y" * 500            # half the declared body, then EOF


def ws_frame(opcode, payload, mask=b"abcd", fin=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def ws_read(sock, buf):
    while len(buf) < 2:
        buf += sock.recv(65536)
    n = buf[1] & 0x7F
    off = 2
    if n == 126:
        while len(buf) < 4:
            buf += sock.recv(65536)
        n = struct.unpack("!H", buf[2:4])[0]
        off = 4
    elif n == 127:
        while len(buf) < 10:
            buf += sock.recv(65536)
        n = struct.unpack("!Q", buf[2:10])[0]
        off = 10
    while len(buf) < off + n:
        buf += sock.recv(65536)
    return buf[0] & 0x0F, buf[off:off + n], buf[off + n:]


def test_websocket_echo_ping_close(app):
    def h(req, resp):
        ws = resp.upgrade_websocket()
        while True:
            m = ws.recv()
            if m is None:
                break
            op, data = m
            if op == 1:
                ws.send_text(data.decode()[::-1])
            else:
                ws.send_binary(data)
    app.routes["/ws"] = h
    s = connect(app)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Protocol: X-Daytona-SDK-Version~0.190.0\r\n\r\n" % key).encode())
    st, h, _, buf = read_response(s)
    assert st == 101
    assert h["sec-websocket-protocol"] == "X-Daytona-SDK-Version~0.190.0"
    s.sendall(ws_frame(1, b"hello"))
    op, data, buf = ws_read(s, buf)
    assert (op, data) == (1, b"olleh")
    big = os.urandom(70000)
    # fragmented binary message with a ping in between
    s.sendall(ws_frame(2, big[:30000], fin=False))
    s.sendall(ws_frame(9, b"p"))
    op, data, buf = ws_read(s, buf)
    assert (op, data) == (10, b"p")
    s.sendall(ws_frame(0, big[30000:]))                                  # FIN=1 continuation
    op, data, buf = ws_read(s, buf)
    assert (op, data) == (2, big)
    s.sendall(ws_frame(8, struct.pack("!H", 1000)))
    op, data, buf = ws_read(s, buf)
    assert op == 8


def test_websocket_upgrade_rejected_without_key(app):
    def h(req, resp):
        try:
            resp.upgrade_websocket()
        except httpcore.WebSocketError:
            resp.send(400, b"no")
    app.routes["/ws"] = h
    s = connect(app)
    s.sendall(b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    assert read_response(s)[0] == 400


def test_before_send_hook_runs_once(app):
    calls = []

    def h(req, resp):
        resp.before_send = lambda r: calls.append(r.req.path)
        resp.start(200, [], None)
        resp.write(b"a")
        resp.end()
    app.routes["/h"] = h
    s = connect(app)
    s.sendall(b"GET /h HTTP/1.1\r\n\r\n")
    assert read_response(s)[2] == b"a"
    assert calls == ["/h"]
