"""More of the sandbox's surface (issue 16): volumes, build logs, signed preview URLs and the
preview proxy on the control plane; /system/metrics and /env on the toolbox.

Routes (under /api, shapes from openapi.yaml and the 0.218 toolbox client):
    GET    /volumes?includeDeleted=bool          [VolumeDto]
    POST   /volumes {name}                       VolumeDto (pending_create)
    GET    /volumes/{volumeId}                   VolumeDto
    GET    /volumes/by-name/{name}               VolumeDto
    DELETE /volumes/{volumeId}                   200 empty (pending_delete)
    GET    /sandbox/{idOrName}/build-logs?follow=bool      text, chunked while following
    GET    /sandbox/{idOrName}/build-logs-url              {url}
    GET    /snapshots/{id}/build-logs?follow=bool          text
    GET    /snapshots/{id}/build-logs-url                  {url}
    GET    /sandbox/{idOrName}/ports/{port}/signed-preview-url?expiresInSeconds=N
                                                 {sandboxId, port, token, url}
    POST   /sandbox/{idOrName}/ports/{port}/signed-preview-url/{token}/expire   200 empty
    GET    /preview/{sandboxId}/public, /preview/{sandboxId}/validate/{authToken},
           /preview/{sandboxId}/access           true, or 404 (what the proxy asks)
    GET    /preview/{signedPreviewToken}/{port}/sandbox-id    the ID as text, or 403
Toolbox (under /toolbox/{id}):
    GET    /system/metrics                       SystemMetrics
    POST   /env {set?, unset?, unsetValuePrefix?}   {"message"}
Preview proxy: a request whose Host is "{port}-{sandboxId or signed token}.<anything>" goes to
127.0.0.1:{port}, where the sandbox's processes listen (they share the host's network).
"""

import hashlib
import http.client
import ipaddress
import re
import secrets
import threading
import time

from .httpcore import ClientGone
from .store import ApiError

# controlplane.py imports this module (for the network check and preview URLs), so its helpers
# are imported inside the functions that use them.

MAX_NETWORK_ALLOW_LIST = 10
BUILD_FOLLOW_LIMIT_S = 600        # a followed build log never stays open longer than this
FOLLOW_POLL_S = 0.05
SIGNED_PREVIEW_DEFAULT_S = 60
SIGNED_PREVIEW_MAX_S = 24 * 3600
PROXY_TIMEOUT_S = 30
PROXY_BODY_LIMIT = 64 << 20
HOP_HEADERS = ("connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
               "te", "trailer", "content-length", "host")
TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"   # nanoid's, lower-cased, no - or _
PREVIEW_HOST = re.compile(r"^(\d{1,5})-([A-Za-z0-9-]+)\.")


# ------------------------------------------------------------------------ network settings
def validate_network_allow_list(value):
    """The API's check of networkAllowList (a comma-separated list of IPv4 CIDRs, at most 10);
    raises ApiError 400 with its message."""
    nets = [n.strip() for n in value.split(",")]
    for net in nets:
        if not net:
            continue
        addr, _, prefix = net.partition("/")
        try:
            ipaddress.IPv4Address(addr)
        except ValueError:
            raise ApiError(400, 'Invalid IP address: "%s" in network "%s". Must be a valid '
                                'IPv4 address' % (addr, net))
        if not prefix:
            raise ApiError(400, 'Invalid network format: "%s". Missing CIDR prefix length '
                                '(e.g., /24)' % net)
        if not prefix.isdigit() or int(prefix) > 32:
            raise ApiError(400, "Invalid CIDR prefix length: %s. Prefix must be between 0 and "
                                "32" % net)
    if len(nets) > MAX_NETWORK_ALLOW_LIST:
        raise ApiError(400, "Network allow list cannot contain more than %d networks"
                       % MAX_NETWORK_ALLOW_LIST)


# ------------------------------------------------------------------------ build logs
def _instructions(dockerfile):
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in dockerfile.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1].strip() + " "
            continue
        out.append((cur + s).strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def build_log_lines(dockerfile):
    """Plausible classic `docker build` output for this Dockerfile (nothing is built)."""
    steps = _instructions(dockerfile)
    lines = ["Sending build context to Docker daemon  2.048kB"]
    layer = hashlib.sha256(dockerfile.encode("utf-8", "surrogateescape")).hexdigest()
    for i, ins in enumerate(steps, 1):
        lines.append("Step %d/%d : %s" % (i, len(steps), ins))
        layer = hashlib.sha256((layer + ins).encode("utf-8", "surrogateescape")).hexdigest()
        if ins.split(None, 1)[0].upper() == "RUN":
            lines.append(" ---> Running in %s" % layer[20:32])
            lines.append("Removing intermediate container %s" % layer[20:32])
        lines.append(" ---> %s" % layer[:12])
    lines.append("Successfully built %s" % layer[:12])
    lines.append("Successfully tagged daytona-local/%s:daytona" % layer[:16])
    return [ln + "\n" for ln in lines]


def visible_lines(lines, started_ms, now_ms, duration_ms, done):
    """How many of the lines the build has written by now: spread evenly over its duration."""
    if done:
        return len(lines)
    if started_ms is None:
        return 0
    if duration_ms <= 0:
        return len(lines)
    frac = max(0.0, (now_ms - started_ms) / float(duration_ms))
    return min(len(lines), int(len(lines) * frac))


# ------------------------------------------------------------------------ handlers
class Surface:
    def __init__(self, store, public_base):
        self.store = store
        self.public_base = public_base.rstrip("/")   # http://host:port
        self._signed = {}          # token -> (sandbox id, port, expiry on time.monotonic)
        self._lock = threading.Lock()

    # -- volumes
    def volumes_list(self, req, resp):
        v = req.q("includeDeleted")
        if v not in (None, "", "true", "false"):
            raise ApiError(400, "includeDeleted must be a boolean value")
        resp.send_json(200, self.store.volumes.list(v == "true"))

    def volumes_create(self, req, resp):
        from .controlplane import Fields, parse_body
        f = Fields(parse_body(req))
        f.string("name", required=True)
        p = f.done()
        resp.send_json(200, self.store.volumes.create(p["name"]))

    def volumes_get(self, req, resp):
        resp.send_json(200, self.store.volumes.get(req.params["volumeId"]))

    def volumes_by_name(self, req, resp):
        resp.send_json(200, self.store.volumes.by_name(req.params["name"]))

    def volumes_delete(self, req, resp):
        self.store.volumes.delete(req.params["volumeId"])
        resp.send(200, b"")

    # -- build logs
    def sandbox_build_logs(self, req, resp):
        self._build_logs(req, resp, "sandbox", req.params["idOrName"])

    def snapshot_build_logs(self, req, resp):
        self._build_logs(req, resp, "snapshot", req.params["id"])

    def sandbox_build_logs_url(self, req, resp):
        sid = self.store.dto(req.params["idOrName"])["id"]
        resp.send_json(200, {"url": "%s/api/sandbox/%s/build-logs" % (self.public_base, sid)})

    def snapshot_build_logs_url(self, req, resp):
        sid = self.store.get_snapshot(req.params["id"])["id"]
        resp.send_json(200, {"url": "%s/api/snapshots/%s/build-logs" % (self.public_base, sid)})

    def _build_logs(self, req, resp, kind, ref):
        follow = req.q("follow")
        if follow not in (None, "", "true", "false"):
            raise ApiError(400, "Validation failed (boolean string is expected)")
        dockerfile, started, done = self.store.build_of(kind, ref)
        lines = build_log_lines(dockerfile)
        duration = self.store.build_seconds() * 1000.0
        if follow != "true":
            n = visible_lines(lines, started, self.store.now(), duration, done)
            resp.send(200, "".join(lines[:n]).encode("utf-8", "surrogateescape"),
                      [("Content-Type", "text/plain; charset=utf-8")])
            return
        resp.start(200, [("Content-Type", "text/plain; charset=utf-8")], None)
        sent = 0
        deadline = time.monotonic() + BUILD_FOLLOW_LIMIT_S
        while True:
            try:
                dockerfile, started, done = self.store.build_of(kind, ref)
            except ApiError:
                break                                   # deleted while building
            n = visible_lines(lines, started, self.store.now(), duration, done)
            if n > sent:
                resp.write("".join(lines[sent:n]).encode("utf-8", "surrogateescape"))
                sent = n
            if done or time.monotonic() > deadline:
                break
            time.sleep(FOLLOW_POLL_S)
        resp.end()

    # -- signed preview URLs
    def _port(self, req):
        from .controlplane import _path_int
        port = _path_int(req.params["port"])
        if not 1 <= port <= 65535:
            raise ApiError(400, "Invalid port")
        return port


    def signed_preview_url(self, req, resp):
        port = self._port(req)
        secs = SIGNED_PREVIEW_DEFAULT_S
        raw = req.q("expiresInSeconds")
        if raw not in (None, ""):
            if not re.fullmatch(r"-?\d+", raw):
                raise ApiError(400, "Validation failed (numeric string is expected)")
            secs = int(raw)
            if not 1 <= secs <= SIGNED_PREVIEW_MAX_S:
                raise ApiError(400, "expiresInSeconds must be between 1 second and 24 hours")
        sid = self.store.dto(req.params["idOrName"])["id"]
        token = "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(16))
        with self._lock:
            now = time.monotonic()
            for t in [t for t, v in self._signed.items() if v[2] <= now]:
                del self._signed[t]
            self._signed[token] = (sid, port, now + secs)
        resp.send_json(200, {"sandboxId": sid, "port": port, "token": token,
                             "url": preview_url(self.public_base, port, token)})

    def expire_signed_preview_url(self, req, resp):
        port = self._port(req)
        self.store.dto(req.params["idOrName"])        # 404 for a missing sandbox
        with self._lock:
            # the API drops the (port, token) key whichever sandbox it was for
            v = self._signed.get(req.params["token"])
            if v is not None and v[1] == port:
                del self._signed[req.params["token"]]
        resp.send(200, b"")

    # -- /api/preview: what the real proxy asks the API (openapi tag "preview")
    def _preview_sandbox(self, sid):
        rec = self.store.get(sid)
        if rec is None or rec.get("id") != sid or rec.get("state") == "destroyed":
            raise ApiError(404, "Sandbox with ID %s not found" % sid)
        return rec

    def preview_public(self, req, resp):
        sid = req.params["sandboxId"]
        if not self._preview_sandbox(sid).get("public"):
            # a private sandbox answers as a missing one, so as not to reveal it
            raise ApiError(404, "Sandbox with ID %s not found" % sid)
        resp.send_json(200, True)

    def preview_validate(self, req, resp):
        sid = req.params["sandboxId"]
        self._preview_sandbox(sid)
        if req.params["authToken"] != self.store.preview_token(sid):
            raise ApiError(404, "Sandbox with ID %s not found" % sid)
        resp.send_json(200, True)

    def preview_access(self, req, resp):
        self._preview_sandbox(req.params["sandboxId"])     # one organization: all may
        resp.send_json(200, True)

    def preview_signed_sandbox_id(self, req, resp):
        port = req.params["port"]
        with self._lock:
            v = self._signed.get(req.params["signedPreviewToken"])
        if v is None or str(v[1]) != port or v[2] <= time.monotonic():
            raise ApiError(403, "Invalid or expired token")
        # NestJS sends a returned string as text/html
        resp.send(200, v[0].encode(), [("Content-Type", "text/html; charset=utf-8")])

    # -- the preview proxy
    def preview_target(self, host):
        """(sandbox id, port, signed) when Host names a preview, else None."""
        m = PREVIEW_HOST.match(host or "")
        if not m:
            return None
        port, label = int(m.group(1)), m.group(2)
        with self._lock:
            v = self._signed.get(label)
            if v is not None and v[1] == port and v[2] > time.monotonic():
                return v[0], port, True
        if len(label) == 36 and label.count("-") == 4:
            return label, port, False
        return None

    def proxy(self, req, resp, target, check_token):
        sid, port, signed = target
        rec = self.store.get(sid)
        if rec is None or rec.get("state") == "destroyed":
            resp.send(404, b"sandbox not found\n", [("Content-Type", "text/plain")])
            return
        if not signed and not rec.get("public"):
            token = req.headers.get("X-Daytona-Preview-Token") or ""
            auth = req.headers.get("Authorization") or ""
            bearer = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if token != self.store.preview_token(sid) and not (bearer and check_token(bearer)):
                resp.send(401, b"preview token required\n", [("Content-Type", "text/plain")])
                return
        if rec.get("state") != "started":
            resp.send(502, b"sandbox is not started\n", [("Content-Type", "text/plain")])
            return
        body = req.read(PROXY_BODY_LIMIT + 1)
        if len(body) > PROXY_BODY_LIMIT:
            resp.send(413, b"request body too large\n", [("Content-Type", "text/plain")])
            return
        headers = {k: v for k, v in req.headers.items() if k.lower() not in HOP_HEADERS}
        headers["Host"] = "127.0.0.1:%d" % port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROXY_TIMEOUT_S)
        try:
            try:
                conn.request(req.method, req.raw_path, body=body or None, headers=headers)
                up = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                resp.send(502, ("preview: cannot reach port %d in the sandbox: %s\n"
                                % (port, e)).encode(), [("Content-Type", "text/plain")])
                return
            out = [(k, v) for k, v in up.getheaders() if k.lower() not in HOP_HEADERS]
            length = up.getheader("Content-Length")
            resp.start(up.status, out, int(length) if length and length.isdigit() else None)
            while True:
                try:
                    chunk = up.read1(1 << 16) if req.method != "HEAD" else b""
                except (OSError, http.client.HTTPException):
                    resp.conn.closing = True     # the upstream broke mid-body: so does ours
                    raise ClientGone("preview upstream broke")
                if not chunk:
                    break
                resp.write(chunk)
            resp.end()
        finally:
            conn.close()


def preview_url(public_base, port, label):
    """{scheme}://{port}-{label}.{proxy domain}, the real form. On loopback the domain is
    localhost (with the server's port), whose subdomains curl and browsers resolve to
    127.0.0.1; other clients connect to the server and send that Host."""
    scheme, _, host = public_base.partition("://")
    name, sep, port_part = host.rpartition(":")
    if sep and name in ("127.0.0.1", "localhost", "[::1]"):
        host = "localhost:" + port_part
    return "%s://%d-%s.%s" % (scheme, port, label, host)


# ------------------------------------------------------------------------ toolbox
class ToolboxSurface:
    def __init__(self, store, runtime):
        self.store = store
        self.rt = runtime

    def system_metrics(self, req, resp, ctx):
        """SystemMetrics of the 0.218 toolbox client. Limits are the sandbox's resources;
        usage is its live processes' (CPU over a 100 ms sample), and its tree's size."""
        from .runtime import find_marked_pids, process_usage, _tree_bytes
        rec = ctx.rec
        pids = find_marked_pids(self.rt.marker(ctx.sid))
        t0, u0 = time.monotonic(), process_usage(pids)["cpu_usec"]
        time.sleep(0.1)
        u1 = process_usage(pids)
        elapsed_us = (time.monotonic() - t0) * 1e6
        cpus = rec.get("cpu") or 1
        pct = max(0.0, (u1["cpu_usec"] - u0) / elapsed_us / cpus * 100.0)
        disk_total = int((rec.get("disk") or 3) * (1 << 30))
        disk_used = _tree_bytes(self.rt.tree(ctx.sid)) if self.rt.exists(ctx.sid) else 0
        now = time.time()
        resp.send_json(200, {
            "cpuCount": cpus, "cpuUsedPct": round(min(pct, 100.0), 2),
            "memTotal": int((rec.get("memory") or 1) * (1 << 30)), "memUsed": u1["rss"],
            "memCache": 0, "diskTotal": disk_total, "diskUsed": disk_used,
            "diskFree": max(0, disk_total - disk_used),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
            + ".%03dZ" % (int(now * 1000) % 1000),
            "timestampUnix": int(now)})

    def update_env(self, req, resp, ctx):
        from .toolbox import _json_body, JSONError
        body = _json_body(req)
        set_vars = body.get("set") or {}
        unset = body.get("unset") or []
        prefix = body.get("unsetValuePrefix") or ""
        if not isinstance(set_vars, dict) or \
                not all(isinstance(v, str) for v in set_vars.values()):
            raise JSONError(400, "bad request: invalid request body: set must map names to "
                                 "strings")
        if not isinstance(unset, list) or not all(isinstance(k, str) for k in unset):
            raise JSONError(400, "bad request: invalid request body: unset must be an array "
                                 "of strings")
        if not isinstance(prefix, str):
            raise JSONError(400, "bad request: invalid request body: unsetValuePrefix must be "
                                 "a string")
        for k in list(set_vars) + unset:
            if not k or "=" in k or "\0" in k:
                raise JSONError(400, "bad request: invalid environment variable name: %r" % k)
        if any("\0" in v for v in set_vars.values()):
            raise JSONError(400, "bad request: environment variable values cannot contain NUL")
        self.rt.update_daemon_env(ctx.sid, ctx.rec.get("env") or {}, set_vars, unset, prefix)
        resp.send_json(200, {"message": "Environment updated"})


# ------------------------------------------------------------------------ registration
def register(server, store, public_base):
    from .controlplane import _wrap
    s = Surface(store, public_base)
    routes = [
        ("GET", "/api/volumes", s.volumes_list),
        ("POST", "/api/volumes", s.volumes_create),
        ("GET", "/api/volumes/by-name/{name}", s.volumes_by_name),
        ("GET", "/api/volumes/{volumeId}", s.volumes_get),
        ("DELETE", "/api/volumes/{volumeId}", s.volumes_delete),
        ("GET", "/api/sandbox/{idOrName}/build-logs", s.sandbox_build_logs),
        ("GET", "/api/sandbox/{idOrName}/build-logs-url", s.sandbox_build_logs_url),
        ("GET", "/api/snapshots/{id}/build-logs", s.snapshot_build_logs),
        ("GET", "/api/snapshots/{id}/build-logs-url", s.snapshot_build_logs_url),
        ("GET", "/api/sandbox/{idOrName}/ports/{port}/signed-preview-url",
         s.signed_preview_url),
        ("POST", "/api/sandbox/{idOrName}/ports/{port}/signed-preview-url/{token}/expire",
         s.expire_signed_preview_url),
        ("GET", "/api/preview/{sandboxId}/public", s.preview_public),
        ("GET", "/api/preview/{sandboxId}/validate/{authToken}", s.preview_validate),
        ("GET", "/api/preview/{sandboxId}/access", s.preview_access),
        ("GET", "/api/preview/{signedPreviewToken}/{port}/sandbox-id",
         s.preview_signed_sandbox_id),
    ]
    for method, pattern, fn in routes:
        server.route(method, pattern, _wrap(fn))
    return s


def register_toolbox(server, store, runtime, toolbox):
    t = ToolboxSurface(store, runtime)
    server.route("GET", "/toolbox/{id}/system/metrics", toolbox.wrap(t.system_metrics))
    server.route("POST", "/toolbox/{id}/env", toolbox.wrap(t.update_env))
    return t
