"""Minimal Socket.IO v5 / Engine.IO v4 server for the SDK's event stream.

The official TypeScript SDK opens `io(origin, {path: "<apiUrl path>/socket.io/",
transports: ["websocket"], auth: {token}})` to receive `sandbox.state.updated` and
`sandbox.created` events; with a connected socket it polls only once a second, so the events are
what make its waits fast. Both transports are served:

* websocket: `GET /api/socket.io/?EIO=4&transport=websocket` + Upgrade;
* polling:   `GET /api/socket.io/?EIO=4&transport=polling` (handshake / long-poll) and POST.

Engine.IO packets: 0 open, 1 close, 2 ping, 3 pong, 4 message, 6 noop. Socket.IO packets inside
a message: 0 CONNECT ("40{auth}"), 1 DISCONNECT, 2 EVENT ("42[name,data]"), 4 CONNECT_ERROR.
Only the default namespace "/" exists. The connect packet's auth.token must be an accepted
credential (API key or JWT), otherwise the client gets CONNECT_ERROR.
"""

import json
import secrets
import threading
import time

PING_INTERVAL_MS = 25000
PING_TIMEOUT_MS = 20000
MAX_PAYLOAD = 1000000


def _open_packet(sid, upgrades):
    return "0" + json.dumps({"sid": sid, "upgrades": upgrades, "pingInterval": PING_INTERVAL_MS,
                             "pingTimeout": PING_TIMEOUT_MS, "maxPayload": MAX_PAYLOAD},
                            separators=(",", ":"))


class _Client:
    """One Engine.IO session; `send` is transport specific."""

    def __init__(self, sid):
        self.sid = sid
        self.connected = False        # Socket.IO namespace "/" joined
        self.closed = False
        self.last_seen = time.monotonic()


class _WsClient(_Client):
    def __init__(self, sid, ws):
        super().__init__(sid)
        self.ws = ws

    def send(self, packet):
        try:
            self.ws.send_text(packet)
        except OSError:
            self.closed = True

    def close(self):
        self.closed = True
        self.ws.close(1000)


class _PollClient(_Client):
    def __init__(self, sid):
        super().__init__(sid)
        self.queue = []
        self.cond = threading.Condition()

    def send(self, packet):
        with self.cond:
            self.queue.append(packet)
            self.cond.notify_all()

    def close(self):
        self.closed = True
        self.send("1")


class SocketIOHub:
    def __init__(self, check_token):
        self._check_token = check_token      # fn(token, query) -> bool
        self._clients = {}
        self._lock = threading.Lock()
        t = threading.Thread(target=self._pinger, name="socketio-ping", daemon=True)
        t.start()

    # ------------------------------------------------------------------ shared protocol
    def _on_packet(self, client, packet, query):
        if not packet:
            return
        kind = packet[0]
        if kind == "2":
            client.send("3" + packet[1:])
        elif kind == "3":
            pass
        elif kind == "1":
            self._drop(client)
        elif kind == "4":
            self._on_message(client, packet[1:], query)

    def _on_message(self, client, msg, query):
        if not msg:
            return
        kind, rest = msg[0], msg[1:]
        nsp = "/"
        if rest.startswith("/"):
            nsp, _, rest = rest.partition(",")
        if kind == "0":
            if nsp != "/":
                client.send("44%s,%s" % (nsp, json.dumps({"message": "Invalid namespace"})))
                return
            auth = {}
            try:
                auth = json.loads(rest) if rest else {}
            except ValueError:
                pass
            token = auth.get("token") if isinstance(auth, dict) else None
            if not self._check_token(token, query):
                client.send("44" + json.dumps({"message": "Unauthorized"}))
                return
            client.connected = True
            client.send("40" + json.dumps({"sid": secrets.token_urlsafe(15)}))
        elif kind == "1":
            client.connected = False
        # events (2) and acks (3) from clients are ignored: nothing in the SDK needs them

    def broadcast(self, event, payload):
        packet = "42" + json.dumps([event, payload], separators=(",", ":"))
        with self._lock:
            clients = [c for c in self._clients.values() if c.connected and not c.closed]
        for c in clients:
            c.send(packet)

    def _drop(self, client):
        client.closed = True
        with self._lock:
            self._clients.pop(client.sid, None)
        if isinstance(client, _PollClient):
            with client.cond:                   # end a pending long-poll now (with a noop)
                client.cond.notify_all()

    def _pinger(self):
        while True:
            time.sleep(PING_INTERVAL_MS / 1000.0)
            now = time.monotonic()
            with self._lock:
                clients = list(self._clients.values())
            for c in clients:
                if isinstance(c, _PollClient) and \
                        now - c.last_seen > (PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000.0:
                    self._drop(c)                 # a polling client that stopped polling
                    continue
                c.send("2")

    # ------------------------------------------------------------------ HTTP entry point
    def handle(self, req, resp):
        query = {k: v[0] for k, v in req.query.items()}
        if query.get("EIO") != "4":
            resp.send_json(400, {"code": 5, "message": "Unsupported protocol version"})
            return
        transport = query.get("transport")
        if transport == "websocket":
            if query.get("sid"):
                # we never offer upgrades, so there is nothing to upgrade from
                resp.send_json(400, {"code": 3, "message": "Bad request"})
                return
            self._serve_websocket(req, resp, query)
        elif transport == "polling":
            self._serve_polling(req, resp, query)
        else:
            resp.send_json(400, {"code": 0, "message": "Transport unknown"})

    def _serve_websocket(self, req, resp, query):
        from .httpcore import WebSocketError
        try:
            ws = resp.upgrade_websocket()
        except WebSocketError:
            resp.send_json(400, {"code": 3, "message": "Bad request"})
            return
        # Silence longer than ping interval + timeout means the peer is gone.
        resp.conn.sock.settimeout((PING_INTERVAL_MS + PING_TIMEOUT_MS) / 1000.0 + 5)
        client = _WsClient(secrets.token_urlsafe(15), ws)
        with self._lock:
            self._clients[client.sid] = client
        try:
            client.send(_open_packet(client.sid, []))
            while not client.closed:
                msg = ws.recv()
                if msg is None:
                    break
                opcode, data = msg
                if opcode == 1:
                    self._on_packet(client, data.decode("utf-8", "replace"), query)
        finally:
            self._drop(client)
            ws.close(1000)

    def _serve_polling(self, req, resp, query):
        hdrs = [("Content-Type", "text/plain; charset=UTF-8"), ("Cache-Control", "no-store")]
        sid = query.get("sid")
        if not sid:
            if req.method != "GET":
                resp.send_json(400, {"code": 3, "message": "Bad request"})
                return
            client = _PollClient(secrets.token_urlsafe(15))
            with self._lock:
                self._clients[client.sid] = client
            resp.send(200, _open_packet(client.sid, []).encode(), hdrs)
            return
        with self._lock:
            client = self._clients.get(sid)
        if not isinstance(client, _PollClient) or client.closed:
            resp.send_json(400, {"code": 1, "message": "Session ID unknown"})
            return
        client.last_seen = time.monotonic()
        if req.method == "POST":
            body = req.read(MAX_PAYLOAD + 1).decode("utf-8", "replace")
            for packet in body.split("\x1e"):
                self._on_packet(client, packet, query)
            resp.send(200, b"ok", hdrs)
            return
        # long-poll: wait for packets (the pinger guarantees one every ping interval)
        with client.cond:
            deadline = time.monotonic() + PING_INTERVAL_MS / 1000.0 + 1
            while not client.queue and not client.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                client.cond.wait(left)
            packets, client.queue = client.queue, []
        if not packets:
            packets = ["6"]                              # noop
        client.last_seen = time.monotonic()
        resp.send(200, "\x1e".join(packets).encode("utf-8"), hdrs)
