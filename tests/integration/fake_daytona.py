# SPDX-License-Identifier: Apache-2.0
"""A small stand-in for the Daytona API and toolbox on 127.0.0.1, for what the
local server cannot do (yet): hostile list cursors, HTML answers, daemons older
than v0.156.0, empty toolboxProxyUrl, paused sandboxes, a list that misses a
sandbox. Runs in a thread of the test; every request is recorded in `requests`
("METHOD path?query") for assertions on counts. Loopback only."""
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeDaytona:
    def __init__(self):
        self.lock = threading.Lock()
        self.sandboxes = {}          # id -> dict (the Sandbox DTO)
        self.hidden_from_list = set()  # ids the list leaves out (eventual consistency)
        self.list_mode = "pages"     # pages | cursorcycle | html | wrongshape
        self.page_size = 200
        self.cycle = 3               # cursorcycle: c0 -> c1 -> ... -> c{cycle-1} -> c0
        self.big_body = None         # bytes: the list's only page, when set
        self.requests = []
        self.commands = []           # /process/execute commands received
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, body, ctype="application/json"):
                if not isinstance(body, bytes):
                    body = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _any(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                with fake.lock:
                    fake.requests.append(f"{self.command} {self.path}")
                try:
                    status, body, ctype = fake.answer(self.command, self.path, raw)
                except Exception as e:    # a bug in the fake: say so, loudly
                    status, body, ctype = 500, {"message": f"fake: {e!r}"}, "application/json"
                self._send(status, body, ctype)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.api_url = self.base + "/api"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # ---- state ---------------------------------------------------------------
    def add(self, sid, name, state="started", **extra):
        d = {"id": sid, "name": name, "state": state, "desiredState": state, "user": "daytona",
             "toolboxProxyUrl": self.base + "/toolbox", "snapshot": "s", "labels": {}, "env": {},
             "createdAt": "2026-01-01T00:00:%02dZ" % (len(self.sandboxes) % 60),
             "updatedAt": "2026-01-01T00:00:00Z", "organizationId": "o", "target": "us",
             "cpu": 1, "memory": 1, "disk": 1}
        d.update(extra)
        with self.lock:
            self.sandboxes[sid] = d
        return d

    def count(self, prefix):
        with self.lock:
            return sum(1 for r in self.requests if r.startswith(prefix))

    def reset(self):
        with self.lock:
            self.requests.clear()
            self.commands.clear()

    # ---- answers -------------------------------------------------------------
    def answer(self, method, path, raw):
        u = urllib.parse.urlsplit(path)
        q = urllib.parse.parse_qs(u.query)
        parts = [urllib.parse.unquote(p) for p in u.path.split("/") if p]
        if parts[:2] == ["api", "sandbox"] and len(parts) == 2 and method == "GET":
            return self.list_page(q)
        if parts[:2] == ["api", "sandbox"] and len(parts) >= 3:
            with self.lock:
                sb = self.sandboxes.get(parts[2])
                if sb is None:   # by name, as the API: id first, then name
                    sb = next((s for s in self.sandboxes.values() if s["name"] == parts[2]), None)
                if sb is None:
                    return 404, {"statusCode": 404, "message": "Sandbox not found"}, "application/json"
                rest = parts[3:]
                if not rest and method == "GET":
                    return 200, sb, "application/json"
                if rest == ["toolbox-proxy-url"]:
                    return 200, {"url": self.base + "/toolbox"}, "application/json"
                if rest == ["start"] and method == "POST":
                    if sb["state"] not in ("stopped", "archived", "paused", "started"):
                        return 400, {"message": "Sandbox is not in valid state"}, "application/json"
                    sb["state"] = sb["desiredState"] = "started"
                    return 200, sb, "application/json"
                if rest == ["stop"] and method == "POST":
                    sb["state"] = sb["desiredState"] = "stopped"
                    return 200, sb, "application/json"
            return 404, {"message": "not found"}, "application/json"
        if parts[:1] == ["toolbox"] and len(parts) >= 3:
            return self.toolbox(method, parts[1], "/" + "/".join(parts[2:]), q, raw)
        if parts[:2] == ["api", "snapshots"]:
            return 200, {"items": [], "total": 0, "page": 1, "totalPages": 0}, "application/json"
        return 404, {"message": "not found"}, "application/json"

    def list_page(self, q):
        if self.list_mode == "html":
            return 200, b"<html><body>Welcome</body></html>", "text/html"
        if self.list_mode == "wrongshape":
            return 200, {"hello": "world"}, "application/json"
        if self.big_body is not None:
            return 200, self.big_body, "application/json"
        cursor = (q.get("cursor") or [None])[0]
        with self.lock:
            items = [s for s in self.sandboxes.values() if s["id"] not in self.hidden_from_list]
        if self.list_mode == "cursorcycle":
            # one item a page, the cursors c0, c1, ... c{cycle-1}, then c0 again
            k = 0 if cursor is None else (int(cursor[1:]) + 1) % self.cycle
            return 200, {"items": items[:1], "nextCursor": f"c{k}"}, "application/json"
        limit = int((q.get("limit") or ["200"])[0])
        start = int(cursor) if cursor else 0
        page = items[start:start + min(limit, self.page_size)]
        nxt = str(start + len(page)) if start + len(page) < len(items) else None
        return 200, {"items": page, "nextCursor": nxt}, "application/json"

    def toolbox(self, method, sid, endpoint, q, raw):
        with self.lock:
            sb = self.sandboxes.get(sid)
        if sb is None:
            return 401, {"message": "Bearer token is invalid"}, "application/json"
        if sb["state"] != "started":
            return 400, {"message": "bad request: no IP address found. Is the Sandbox started?"}, \
                "application/json"
        if endpoint == "/process/execute":
            cmd = json.loads(raw or b"{}").get("command", "")
            with self.lock:
                self.commands.append(cmd)
            return 200, {"exitCode": 127, "result": "fake: no shell here"}, "application/json"
        if endpoint == "/files":
            return 200, [], "application/json"
        if endpoint == "/files/info":
            return 200, {"name": "/", "isDir": True, "size": 4096, "mode": "drwxr-xr-x",
                         "permissions": "0755", "owner": "1000", "group": "1000",
                         "modTime": "2026-01-01T00:00:00Z"}, "application/json"
        if endpoint in ("/work-dir", "/user-home-dir"):
            return 200, {"dir": "/home/daytona"}, "application/json"
        return 404, b"", "application/json"
