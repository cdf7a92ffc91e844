"""HTTP/1.1 server machinery for daytona-local (standard library only).

Why not http.server: it re-parses headers with the email package on every request, has no
chunked request bodies, no sendfile, no WebSocket upgrade and no way to inject latency or
faults at the byte level. This module keeps one thread per connection (keep-alive, pipelining
tolerated), TCP_NODELAY, and exposes the small Request/Response interface the rest of the
server codes against (see /tmp/brief/server-common.md).
"""

import base64
import codecs
import io
import hashlib
import http.client
import os
import select
import socket
import struct
import threading
import time
import urllib.parse
from email.utils import formatdate

MAX_LINE = 65536          # request line / header line / chunk-size line
MAX_HEADERS = 200
DRAIN_LIMIT = 1 << 20     # unread request bodies up to this size are drained to keep the connection
IDLE_TIMEOUT = 300.0      # keep-alive idle connections are closed after this
IO_TIMEOUT = 300.0        # a stalled body read or write is abandoned after this

REASONS = {code: phrase for code, phrase in http.client.responses.items()}
REASONS.setdefault(429, "Too Many Requests")


# Go's JSON encoder writes each byte of invalid UTF-8 as U+FFFD
# (as bytes: the UTF-8 encoder takes no non-ASCII text from an error handler)
codecs.register_error("go_json_replace",
                      lambda e: ("\ufffd".encode() * (e.end - e.start), e.end))


class ClientGone(OSError):
    """The peer closed the connection (or it broke) while we were reading or writing."""


class BadJSON(ValueError):
    """Request body is not valid JSON. .message is a Node-style explanation."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message


class BadRequest(Exception):
    """Malformed HTTP framing: answered with a bare 400 and the connection is closed."""


class WebSocketError(Exception):
    pass


_date_cache = [0, ""]


def http_date():
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True)
    return _date_cache[1]


def node_json_error(text, err):
    """Mimic the message of Node's JSON.parse (what NestJS/body-parser put in the 400 body)."""
    pos = getattr(err, "pos", 0) or 0
    if pos >= len(text.rstrip()) or not text.strip():
        return "Unexpected end of JSON input"
    return "Unexpected token %s in JSON at position %d" % (text[pos], pos)


class Request:
    def __init__(self, conn, method, raw_path, version, headers):
        self.conn = conn
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.headers = headers
        self.params = {}
        self.route = None            # the matched pattern, set by the router
        path, _, qs = raw_path.partition("?")
        self.raw_path_only = path
        self.path = urllib.parse.unquote(path)
        # Go keeps the bytes of a query value: %FF stays the byte 0xFF (a surrogate escape
        # here, which os functions turn back into that byte), never U+FFFD
        self.query = urllib.parse.parse_qs(qs, keep_blank_values=True,
                                           errors="surrogateescape") if qs else {}
        self.bytes_in = 0
        self._chunked = False
        self._remaining = 0          # Content-Length bytes not yet read
        self._chunk_left = 0         # bytes left in the current chunk
        self._done = False
        te = headers.get("Transfer-Encoding")
        cl = headers.get("Content-Length")
        if te is not None:
            if te.strip().lower().split(",")[-1].strip() != "chunked":
                raise BadRequest("unsupported transfer-encoding")
            self._chunked = True
        elif cl is not None:
            cl = cl.strip()
            if not cl.isdigit():
                raise BadRequest("bad content-length")
            self._remaining = int(cl)
            self._done = self._remaining == 0
        else:
            self._done = True
        self.expect_continue = (headers.get("Expect") or "").strip().lower() == "100-continue"
        self._continue_sent = False
        self._src = None             # a buffer to read the body from, once rewound
        self._replay = None          # the whole body, kept by make_replayable()

    def q(self, name, default=None):
        v = self.query.get(name)
        return v[0] if v else default

    @property
    def body_done(self):
        return self._done

    def _send_continue(self):
        if self.expect_continue and not self._continue_sent and not self.conn.response_started:
            self._continue_sent = True
            self.conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

    def make_replayable(self, limit):
        """Read and keep the whole body, as the proxy's retryTransport does, so that rewind()
        can serve it again. Only a body with a Content-Length of at most limit qualifies
        (chunked bodies are never replayed); False if this one does not."""
        if self._chunked or self._remaining > limit:
            return False
        self._replay = self.read()
        self.rewind()
        return True

    def rewind(self):
        """Serve the body kept by make_replayable() again from its start."""
        self._src = io.BytesIO(self._replay)
        self._remaining = len(self._replay)
        self._done = self._remaining == 0
        self.bytes_in = 0

    def _raw(self, n):
        data = (self._src or self.conn.rfile).read(n)
        if len(data) < n:
            raise ClientGone("client closed the connection mid-body")
        return data

    def _line(self):
        line = self.conn.rfile.readline(MAX_LINE + 1)
        if not line:
            raise ClientGone("client closed the connection mid-body")
        if len(line) > MAX_LINE:
            raise BadRequest("chunk line too long")
        return line

    def _next_chunk(self):
        size_text = self._line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise BadRequest("bad chunk size")
        if size < 0:
            raise BadRequest("bad chunk size")
        if size == 0:
            while self._line() not in (b"\r\n", b"\n"):   # trailers are read and ignored
                pass
            self._done = True
        self._chunk_left = size

    def read(self, n=-1):
        """Read up to n bytes of body (all of it for n < 0); fewer only at the end of the body."""
        if self._done or n == 0:
            return b""
        self._send_continue()
        try:
            if not self._chunked:
                k = self._remaining if n < 0 else min(n, self._remaining)
                data = self._raw(k)
                self._remaining -= k
                if self._remaining == 0:
                    self._done = True
                self.bytes_in += len(data)
                return data
            parts = []
            want = n
            while not self._done and (want < 0 or want > 0):
                if self._chunk_left == 0:
                    self._next_chunk()
                    continue
                k = self._chunk_left if want < 0 else min(want, self._chunk_left)
                parts.append(self._raw(k))
                self._chunk_left -= k
                if want > 0:
                    want -= k
                if self._chunk_left == 0 and self._raw(2) not in (b"\r\n",):
                    raise BadRequest("bad chunk terminator")
            data = b"".join(parts)
            self.bytes_in += len(data)
            return data
        except (OSError, ValueError) as e:
            if isinstance(e, ClientGone):
                raise
            raise ClientGone(str(e))

    def json(self):
        import json
        raw = self.read()
        text = raw.decode("utf-8", "replace")
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as e:
            raise BadJSON(node_json_error(text, e))

    def drain(self, limit=DRAIN_LIMIT):
        """Discard the rest of the body; False if it is larger than limit (then close)."""
        total = 0
        while not self._done:
            data = self.read(65536)
            total += len(data)
            if total > limit:
                return False
        return True


class Response:
    def __init__(self, conn, req):
        self.conn = conn
        self.req = req
        self.sent = False
        self.status = None
        self.bytes_out = 0
        self.upgraded = False
        self.close_after = False     # the connection must close once this response is done
        self.before_send = None      # hook (latency); called once, just before the first byte
        self.throttle = None         # bytes/sec for the "slow" fault
        self.cut_at = None           # "reset_mid_body": int byte count or "half"
        self._head = req.method == "HEAD"
        self._chunked = False
        self._length = None
        self._ended = False
        self._cut_limit = None

    # -- header block ---------------------------------------------------------------------
    def _keep_alive(self):
        req = self.req
        conn_hdr = (req.headers.get("Connection") or "").lower()
        if self.conn.closing or "close" in conn_hdr:
            return False
        if req.version == "HTTP/1.0" and "keep-alive" not in conn_hdr:
            return False
        if not req.body_done:
            # An unread body either has to be drained after the response or the connection
            # closed. If the client waits for "100 Continue" it never sent the body: close.
            if req.expect_continue and not req._continue_sent:
                return False
            if req._chunked or req._remaining > DRAIN_LIMIT:
                return False
        return True

    def _header_block(self, status, headers, length):
        if self.before_send is not None:
            hook, self.before_send = self.before_send, None
            hook(self)
        self.status = status
        self.sent = True
        self.conn.response_started = True
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Unknown")),
                 "Date: " + http_date()]
        names = set()
        for k, v in headers or ():
            names.add(k.lower())
            lines.append("%s: %s" % (k, v))
        if length is None:
            if status >= 200 and status not in (204, 304):
                if self.req.version == "HTTP/1.0":
                    self.close_after = True      # close-delimited body
                else:
                    self._chunked = not self._head
                    lines.append("Transfer-Encoding: chunked")
        else:
            if "content-length" not in names and status not in (204, 304) and status >= 200:
                lines.append("Content-Length: %d" % length)
        if not self._keep_alive():
            self.close_after = True
        lines.append("Connection: close" if self.close_after else "Connection: keep-alive")
        self._length = length
        if self.cut_at is not None:
            if self.cut_at == "half":
                self._cut_limit = (length // 2) if length is not None else 65536
            else:
                self._cut_limit = int(self.cut_at)
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # -- body output ----------------------------------------------------------------------
    def _out(self, data, prefix=b"", suffix=b""):
        """Send body bytes (framing in prefix/suffix is not counted), applying slow/reset."""
        if not data:
            return
        if prefix:
            self._send_throttled(prefix, count=False)
        if self._cut_limit is not None:
            room = self._cut_limit - self.bytes_out
            if len(data) >= room:
                part = data[:max(room, 0)]
                if part:
                    self._send_throttled(part)
                self.conn.abort()
                raise ClientGone("connection reset by fault injection")
        self._send_throttled(data)
        if suffix:
            self._send_throttled(suffix, count=False)

    def _send_throttled(self, data, count=True):
        if not self.throttle:
            self.conn.sendall(data)
            if count:
                self.bytes_out += len(data)
            return
        rate = max(1, int(self.throttle))
        step = max(1, rate // 20)
        view = memoryview(data)
        for i in range(0, len(view), step):
            piece = view[i:i + step]
            self.conn.sendall(piece)
            if count:
                self.bytes_out += len(piece)
            time.sleep(len(piece) / rate)

    def send(self, status, body=b"", headers=None):
        if self.sent:
            raise RuntimeError("response already started")
        if isinstance(body, str):
            body = body.encode("utf-8")
        head = self._header_block(status, headers, len(body))
        if self._head or not body or status in (204, 304):
            self.conn.sendall(head)
        elif self._cut_limit is None and not self.throttle and len(body) <= 65536:
            self.conn.sendall(head + body)       # one syscall for small responses
            self.bytes_out += len(body)
        else:
            self.conn.sendall(head)
            self._out(body)
        self._ended = True
        if self._cut_limit is not None:        # reset_mid_body on a tiny body: still drop the line
            self.conn.abort()
            raise ClientGone("connection reset by fault injection")

    def send_json(self, status, obj, headers=None):
        import json
        # bytes that are no UTF-8 (surrogate escapes of paths) become U+FFFD, as Go's encoder
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "go_json_replace")
        hdrs = [("Content-Type", "application/json; charset=utf-8")]
        if headers:
            hdrs.extend(headers)
        self.send(status, body, hdrs)

    def start(self, status, headers, length):
        if self.sent:
            raise RuntimeError("response already started")
        self.conn.sendall(self._header_block(status, headers, length))

    def write(self, data):
        if not self.sent:
            raise RuntimeError("write() before start()")
        if self._head or not data:
            return
        if self._chunked:
            if self._cut_limit is not None or self.throttle:
                self._out(data, b"%x\r\n" % len(data), b"\r\n")
            elif len(data) <= 65536:
                self.conn.sendall(b"%x\r\n" % len(data) + bytes(data) + b"\r\n")
                self.bytes_out += len(data)
            else:
                self.conn.sendall(b"%x\r\n" % len(data))
                self.conn.sendall(data)
                self.conn.sendall(b"\r\n")
                self.bytes_out += len(data)
        else:
            if self._length is not None and self.bytes_out + len(data) > self._length:
                raise ValueError("write beyond Content-Length")
            self._out(data)

    def sendfile(self, f, offset, count):
        """Send count bytes of a file (an fd or a file object) from offset as body bytes,
        with sendfile(2) unless a fault needs to see the bytes. On a chunked response the
        range goes out as one chunk."""
        if not self.sent:
            raise RuntimeError("sendfile() before start()")
        if self._head or count <= 0:
            return
        fd = f if isinstance(f, int) else f.fileno()
        if not self._chunked and self._length is not None \
                and self.bytes_out + count > self._length:
            raise ValueError("write beyond Content-Length")
        if self.throttle or self._cut_limit is not None:
            pos, left = offset, count
            while left > 0:
                data = os.pread(fd, min(left, 1 << 20), pos)
                if not data:
                    raise ValueError("file shorter than expected")
                self.write(data)
                pos += len(data)
                left -= len(data)
            return
        if self._chunked:
            self.conn.sendall(b"%x\r\n" % count)
        self._sendfile_raw(fd, offset, count)
        if self._chunked:
            self.conn.sendall(b"\r\n")

    def _sendfile_raw(self, fd, offset, count):
        sock = self.conn.sock
        out = sock.fileno()
        timeout = sock.gettimeout()
        poller = None
        done = 0
        while done < count:
            try:
                n = os.sendfile(out, fd, offset + done, min(count - done, 1 << 30))
            except BlockingIOError:
                # sockets with a timeout are non-blocking underneath: wait for room
                if poller is None:
                    poller = select.poll()
                    poller.register(out, select.POLLOUT)
                if not poller.poll(None if timeout is None else timeout * 1000):
                    self.conn.closing = True
                    raise ClientGone("send timed out")
                continue
            except (BrokenPipeError, ConnectionError) as e:
                self.conn.closing = True
                raise ClientGone(str(e))
            if n == 0:
                self.close_after = True
                raise ValueError("file shorter than expected")
            done += n
            self.bytes_out += n

    def end(self):
        if self._ended:
            return
        self._ended = True
        if self._chunked:
            if self._cut_limit is not None:
                self.conn.abort()                # reset_mid_body never sends the last chunk
                raise ClientGone("connection reset by fault injection")
            self.conn.sendall(b"0\r\n\r\n")
        elif self._length is not None and self.bytes_out < self._length and not self._head:
            self.close_after = True              # short body: the connection is unusable

    # -- WebSocket ------------------------------------------------------------------------
    def upgrade_websocket(self):
        h = self.req.headers
        key = h.get("Sec-WebSocket-Key")
        if ("websocket" not in (h.get("Upgrade") or "").lower()
                or "upgrade" not in (h.get("Connection") or "").lower() or not key):
            raise WebSocketError("not a websocket upgrade request")
        if (h.get("Sec-WebSocket-Version") or "13").strip() != "13":
            raise WebSocketError("unsupported websocket version")
        accept = base64.b64encode(hashlib.sha1(
            key.strip().encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()).decode()
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Accept", accept)]
        proto = h.get("Sec-WebSocket-Protocol")
        if proto:
            headers.append(("Sec-WebSocket-Protocol", proto.split(",")[0].strip()))
        if self.before_send is not None:
            hook, self.before_send = self.before_send, None
            hook(self)
        self.sent = True
        self.status = 101
        self.upgraded = True
        self.close_after = True
        self.conn.response_started = True
        lines = ["HTTP/1.1 101 Switching Protocols"] + ["%s: %s" % kv for kv in headers]
        self.conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return WebSocket(self.conn)


class _DiscardConnection:
    """Stands for the client connection of an answer nobody receives (see DiscardedResponse)."""

    def __init__(self, conn):
        self.rfile = conn.rfile
        self.closing = False
        self.response_started = False

    def sendall(self, data):
        pass

    def abort(self, graceful=True):
        self.closing = True


class DiscardedResponse(Response):
    """A response that is produced in full and thrown away: the first of two runs of a
    replayed request (the proxy's retryTransport lost that answer)."""

    def __init__(self, conn, req):
        super().__init__(_DiscardConnection(conn), req)

    def _sendfile_raw(self, fd, offset, count):
        self.bytes_out += count

    def upgrade_websocket(self):
        raise WebSocketError("a replayed request cannot upgrade")


class WebSocket:
    """RFC 6455 server side. Thread-safe sends; recv() answers pings by itself."""

    MAX_MESSAGE = 16 << 20

    def __init__(self, conn):
        self.conn = conn
        self._lock = threading.Lock()
        self.closed = False
        self._close_sent = False

    def _send_frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        with self._lock:
            if self._close_sent:
                raise ClientGone("websocket closed")
            if opcode == 8:
                self._close_sent = True
            self.conn.sendall(head + bytes(payload))

    def send_text(self, text):
        self._send_frame(1, text.encode("utf-8"))

    def send_binary(self, data):
        self._send_frame(2, data)

    def close(self, code=1000, reason=""):
        if not self._close_sent:
            try:
                self._send_frame(8, struct.pack("!H", code) + reason.encode("utf-8")[:120])
            except OSError:
                pass
        self.closed = True
        self.conn.abort(graceful=True)

    def _read_frame(self):
        rfile = self.conn.rfile
        head = rfile.read(2)
        if len(head) < 2:
            raise ClientGone("websocket peer went away")
        b0, b1 = head
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", rfile.read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", rfile.read(8))[0]
        if n > self.MAX_MESSAGE:
            raise WebSocketError("frame too large")
        mask = rfile.read(4) if b1 & 0x80 else None
        data = rfile.read(n)
        if len(data) < n:
            raise ClientGone("websocket peer went away")
        if mask:
            # XOR with the 4-byte mask, fast via int arithmetic on the whole payload
            m = (mask * (n // 4 + 1))[:n]
            data = (int.from_bytes(data, "big") ^ int.from_bytes(m, "big")).to_bytes(n, "big")
        return bool(b0 & 0x80), b0 & 0x0F, data

    def recv(self):
        """Next complete text/binary message as (opcode, bytes), or None once closed."""
        if self.closed:
            return None
        msg_op, parts, size = None, [], 0
        try:
            while True:
                fin, op, data = self._read_frame()
                if op == 9:                       # ping -> pong
                    self._send_frame(10, data)
                    continue
                if op == 10:
                    continue
                if op == 8:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1000
                    if not self._close_sent:
                        try:
                            self._send_frame(8, struct.pack("!H", code))
                        except OSError:
                            pass
                    self.closed = True
                    return None
                if op in (1, 2):
                    msg_op, parts, size = op, [data], len(data)
                elif op == 0 and msg_op is not None:
                    parts.append(data)
                    size += len(data)
                else:
                    raise WebSocketError("protocol error")
                if size > self.MAX_MESSAGE:
                    raise WebSocketError("message too large")
                if fin:
                    return msg_op, b"".join(parts)
        except (OSError, WebSocketError, struct.error, ValueError):
            self.closed = True
            return None


class Connection:
    """One client connection: reads requests in a loop and hands them to the server."""

    def __init__(self, server, sock, addr):
        self.server = server
        self.sock = sock
        self.addr = addr
        self.rfile = None
        self.closing = False
        self.response_started = False

    def sendall(self, data):
        try:
            self.sock.sendall(data)
        except (OSError, ValueError) as e:
            self.closing = True
            raise ClientGone(str(e))

    def abort(self, graceful=True):
        """Close the connection now (faults, websocket end)."""
        self.closing = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _read_head(self):
        """Request line and headers, or None on a clean EOF/idle timeout."""
        rfile = self.rfile
        line = rfile.readline(MAX_LINE + 1)
        blank = 0
        while line in (b"\r\n", b"\n"):          # tolerate stray CRLF between requests
            blank += 1
            if blank > 4:
                raise BadRequest("garbage")
            line = rfile.readline(MAX_LINE + 1)
        if not line:
            return None
        if len(line) > MAX_LINE:
            raise BadRequest("request line too long")
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        except ValueError:
            raise BadRequest("bad request line")
        if not version.startswith("HTTP/1.") or not method.isalpha() or not target:
            raise BadRequest("bad request line")
        headers = http.client.HTTPMessage()
        last = None
        for _ in range(MAX_HEADERS + 1):
            h = rfile.readline(MAX_LINE + 1)
            if not h:
                return None
            if len(h) > MAX_LINE:
                raise BadRequest("header line too long")
            if h in (b"\r\n", b"\n"):
                break
            text = h.decode("latin-1").rstrip("\r\n")
            if text[:1] in (" ", "\t") and last is not None:    # obsolete line folding
                k, v = headers._headers[-1]
                headers._headers[-1] = (k, v + " " + text.strip())
                continue
            k, sep, v = text.partition(":")
            if not sep or not k or k != k.strip():
                raise BadRequest("bad header line")
            headers._headers.append((k, v.strip()))
            last = k
        else:
            raise BadRequest("too many headers")
        if target.startswith("http://") or target.startswith("https://"):
            target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
        if not target.startswith("/") and target != "*":
            raise BadRequest("bad request target")
        return method, target, version, headers

    def run(self):
        sock = self.sock
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.rfile = sock.makefile("rb", buffering=65536)
        try:
            while not self.closing and not self.server.stopping:
                sock.settimeout(IDLE_TIMEOUT)
                try:
                    head = self._read_head()
                except BadRequest:
                    self._bare_400()
                    break
                except (OSError, ValueError):
                    break
                if head is None:
                    break
                sock.settimeout(IO_TIMEOUT)
                self.response_started = False
                method, target, version, headers = head
                try:
                    req = Request(self, method, target, version, headers)
                except BadRequest:
                    self._bare_400()
                    break
                resp = Response(self, req)
                try:
                    self.server.handle(req, resp)
                except ClientGone:
                    break
                if resp.upgraded or resp.close_after or self.closing:
                    break
                if not req.body_done:
                    try:
                        if not req.drain():
                            break
                    except (ClientGone, BadRequest, OSError):
                        break
        finally:
            self.closing = True
            try:
                self.rfile.close()
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def _bare_400(self):
        try:
            self.sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                              b"Connection: close\r\n\r\n")
        except OSError:
            pass


class HTTPServer:
    """Accept loop plus one thread per connection.

    handle(req, resp) is the application's dispatcher; it must answer (or abort) the request.
    """

    def __init__(self, host, port, handle, max_connections=256):
        self.handle = handle
        self.stopping = False
        self._slots = threading.BoundedSemaphore(max_connections)
        self._conns = set()
        self._conns_lock = threading.Lock()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(512)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self._wake_r, self.wakeup_fd = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self.wakeup_fd, False)

    def serve_forever(self):
        # select() on the listening socket and a self-pipe: shutdown() and signals (through
        # signal.set_wakeup_fd(self.wakeup_fd)) wake the loop at once, whichever thread the
        # kernel delivered the signal to.
        self.sock.setblocking(False)
        while not self.stopping:
            try:
                ready, _, _ = select.select([self.sock, self._wake_r], [], [])
            except (OSError, ValueError):
                if self.stopping:
                    break
                continue
            if self._wake_r in ready:
                try:
                    os.read(self._wake_r, 4096)
                except OSError:
                    pass
                continue
            self._slots.acquire()
            try:
                csock, addr = self.sock.accept()
            except OSError:
                self._slots.release()
                continue
            csock.setblocking(True)
            conn = Connection(self, csock, addr)
            t = threading.Thread(target=self._run_conn, args=(conn,), daemon=True,
                                 name="conn-%s:%s" % addr[:2])
            t.start()

    def _run_conn(self, conn):
        with self._conns_lock:
            self._conns.add(conn)
        try:
            conn.run()
        except Exception:                         # never let one connection kill anything
            import traceback
            traceback.print_exc()
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            self._slots.release()

    def shutdown(self):
        self.stopping = True
        try:
            os.write(self.wakeup_fd, b"x")
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            c.abort()
