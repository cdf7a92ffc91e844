"""daytona-local: an offline Daytona server (control plane + toolbox) for development.

This module is the glue: command line, routing table, authentication, the /_local knobs used
by tests and benchmarks (stats, request log, latency, faults, timing), and start-up/shut-down.
"""

import argparse
import collections
import os
import signal
import sys
import threading
import time
import traceback
import urllib.parse

from . import controlplane, httpcore, surface
from .faults import FaultSet, FaultSpecError
from .httpcore import ClientGone, BadJSON
from .socketio import SocketIOHub
from .store import ApiError, Store, DEFAULT_SNAPSHOT

DEFAULT_PORT = 3986
LOG_RING = 10000
REPLAY_BODY_LIMIT = 256 << 10     # retryTransport's maxRetryBodySize
THROTTLED_AUTH = ("unauthorized: authentication failed: Bearer token validation error: "
                  "ThrottlerException: Too Many Requests")


def go_timestamp():
    """RFC 3339 with trimmed nanoseconds, like Go's time.Time JSON (toolbox error bodies)."""
    t = time.time()
    frac = ("%.9f" % (t % 1))[2:].rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ("." + frac if frac else "") + "Z"


def toolbox_error(req, resp, status, message, code):
    resp.send_json(status, {"statusCode": status, "message": message, "code": code,
                            "timestamp": go_timestamp(), "path": req.path,
                            "method": req.method})


# ------------------------------------------------------------------------------ routing
class Route:
    __slots__ = ("method", "pattern", "segs", "handler", "auth", "key", "rest", "rank")

    def __init__(self, method, pattern, handler, auth):
        self.method = method
        self.pattern = pattern
        self.handler = handler
        self.auth = auth
        self.key = "%s %s" % (method, pattern)
        self.segs = []
        self.rest = None
        parts = pattern.lstrip("/").split("/")
        for i, p in enumerate(parts):
            if p.startswith("{") and p.endswith("}"):
                name = p[1:-1]
                if name.endswith(":path"):
                    if i != len(parts) - 1:
                        raise ValueError("{x:path} must be last: " + pattern)
                    self.rest = name[:-5]
                else:
                    self.segs.append((True, name))
            else:
                self.segs.append((False, p))
        # literal segments beat parameters, parameters beat a trailing {rest:path}
        self.rank = tuple(1 if is_param else 0 for is_param, _ in self.segs) + \
            ((2,) if self.rest else ())

    def match(self, parts):
        """parts: raw (still percent-encoded) path segments."""
        n = len(self.segs)
        if self.rest is None and len(parts) != n:
            return None
        if self.rest is not None and len(parts) < n + 1:
            return None
        params = {}
        for (is_param, name), raw in zip(self.segs, parts):
            if is_param:
                if not raw:
                    return None
                params[name] = urllib.parse.unquote(raw)
            elif name != raw and name != urllib.parse.unquote(raw):
                return None
        if self.rest is not None:
            params[self.rest] = urllib.parse.unquote("/".join(parts[n:]))
        return params


class Router:
    def __init__(self):
        self._by_method = collections.defaultdict(list)

    def add(self, method, pattern, handler, auth=True):
        route = Route(method.upper(), pattern, handler, auth)
        lst = self._by_method[route.method]
        lst.append(route)
        lst.sort(key=lambda r: r.rank)
        return route

    def match(self, method, raw_path):
        parts = raw_path.lstrip("/").split("/")
        for route in self._by_method.get(method, ()):
            params = route.match(parts)
            if params is not None:
                return route, params
        return None, None


# ------------------------------------------------------------------------------ stats
class Stats:
    """Counters and the request log. A request is recorded after its response
    is sent (its size and status are known then), so a client that reads the
    stats right after a response could miss that request: readers wait for
    what has been answered to be recorded (see settled). The log keeps the
    order in which requests arrived: an entry takes its place at begin."""

    SETTLE_LIMIT_S = 1.0   # a streaming response counts as answered for its whole life

    def __init__(self):
        self._lock = threading.Lock()
        self._recorded = threading.Condition(self._lock)
        self._open = {}    # id(resp) -> (resp, its log entry), for requests not recorded yet
        self.reset()

    def begin(self, resp):
        with self._lock:
            entry = {}
            self.log.append(entry)
            self._open[id(resp)] = (resp, entry)

    def settled(self):
        """Waits (bounded) until every request whose response was sent is recorded."""
        deadline = time.monotonic() + self.SETTLE_LIMIT_S
        with self._lock:
            while any(r.sent for r, _ in self._open.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._recorded.wait(left)

    def reset(self):
        # What was answered before the reset belongs to the counts it ends, not to the next
        # ones (scripts/bench and the tests reset right after a setup request's answer).
        if hasattr(self, "log"):
            self.settled()
        with self._lock:
            self.requests = 0
            self.bytes_in = 0
            self.bytes_out = 0
            self.routes = collections.Counter()
            self.log = collections.deque(maxlen=LOG_RING)

    def record(self, entry, resp=None):
        with self._lock:
            opened = self._open.pop(id(resp), None) if resp is not None else None
            self._recorded.notify_all()
            self.requests += 1
            self.bytes_in += entry["bytes_in"]
            self.bytes_out += entry["bytes_out"]
            self.routes[entry["route"]] += 1
            if opened is not None:
                opened[1].update(entry)   # its place in the log, taken at begin
            else:
                self.log.append(entry)

    def snapshot(self):
        self.settled()
        with self._lock:
            return {"requests": self.requests, "bytes_in": self.bytes_in,
                    "bytes_out": self.bytes_out, "routes": dict(self.routes)}

    def tail(self, limit):
        self.settled()
        with self._lock:
            items = [e for e in self.log if e]   # not those still unanswered
        return items[-limit:] if limit else items


# ------------------------------------------------------------------------------ server
class Server:
    def __init__(self, args, http, store, runtime=None):
        self.args = args
        self.http = http
        self.store = store
        self.runtime = runtime
        self.api_key = args.api_key
        self.jwt = args.jwt
        self.no_auth = args.no_auth
        self.router = Router()
        self.local = Router()
        self.stats = Stats()
        self.faults = FaultSet()
        self.latency_ms = float(args.latency_ms or 0)
        self.access_log = None
        if args.log_file:
            self.access_log = open(args.log_file, "a", buffering=1)
        elif not args.quiet:
            self.access_log = sys.stderr
        self.preview = None       # surface.Surface, which proxies preview hosts
        self.socketio = SocketIOHub(self.check_token)
        store.add_listener(self.socketio.broadcast)
        for path in ("/api/socket.io/", "/api/socket.io"):
            self.route("GET", path, self.socketio.handle, auth=False)
            self.route("POST", path, self.socketio.handle, auth=False)
        self._register_local()

    # -- public API used by controlplane.py / toolbox.py ---------------------------------
    def route(self, method, pattern, handler, auth=True):
        self.router.add(method, pattern, handler, auth)

    # -- authentication ------------------------------------------------------------------
    def check_token(self, token, query=None, org_header=None):
        """True if token is an accepted credential (API key, or the JWT with our org)."""
        if self.no_auth:
            return True
        if not token:
            return False
        if token == self.api_key:
            return True
        if self.jwt and token == self.jwt:
            org = org_header if org_header is not None else (query or {}).get("organizationId")
            return org == self.store.org_id
        return False

    def _auth(self, req, toolbox):
        """None if authorised, else (status, message)."""
        if self.no_auth:
            return None
        h = req.headers.get("Authorization") or ""
        token = h[7:].strip() if h[:7].lower() == "bearer " else None
        if toolbox and not token:
            token = req.headers.get("X-Daytona-Preview-Token") or req.q("DAYTONA_SANDBOX_AUTH_KEY")
        if token and token == self.api_key:
            return None
        if token and self.jwt and token == self.jwt:
            if req.headers.get("X-Daytona-Organization-ID") == self.store.org_id:
                return None
            return 403, "Invalid authentication context"
        return 401, "Invalid credentials"

    # -- dispatch ------------------------------------------------------------------------
    def handle(self, req, resp):
        path = req.raw_path_only
        if path == "/_local" or path.startswith("/_local/"):
            self._handle_local(req, resp)
            return
        t0 = time.monotonic()
        self.stats.begin(resp)
        target = self.preview.preview_target(req.headers.get("Host")) if self.preview else None
        if target is not None:
            self._serve_preview(req, resp, target, t0)
            return
        route, params = self.router.match(req.method, path)
        if route is None and req.method == "HEAD" and not path.startswith("/toolbox/"):
            route, params = self.router.match("GET", path)   # Express answers HEAD via GET
        key = "%s %s" % (req.method, route.pattern) if route else "%s <unmatched>" % req.method
        if route:
            req.params = params
            req.route = route.pattern
        if self.latency_ms > 0:
            resp.before_send = self._delay
        try:
            fault = self.faults.pick(req.method, req.raw_path, lambda: _peek_body(req))
            if fault is None or self._apply_fault(fault, req, resp, route, path):
                self._serve(req, resp, route, path)
        except ClientGone:
            resp.conn.closing = True
        except Exception:
            traceback.print_exc()
            if not resp.sent:
                try:
                    self._internal_error(req, resp, path)
                except ClientGone:
                    pass
            resp.conn.closing = True        # a response may be half-sent: drop the line
        finally:
            if not resp.sent and not resp.conn.closing:
                # a handler that forgot to answer is a bug; never leave the client hanging
                try:
                    self._internal_error(req, resp, path)
                except ClientGone:
                    pass
            self._record(req, resp, key, t0)

    def _serve_preview(self, req, resp, target, t0):
        """A request to a preview URL: forwarded to the sandbox's port (surface.py)."""
        try:
            self.preview.proxy(req, resp, target, self.check_token)
        except ClientGone:
            resp.conn.closing = True
        except Exception:
            traceback.print_exc()
            if not resp.sent:
                try:
                    resp.send(502, b"preview proxy error\n", [("Content-Type", "text/plain")])
                except ClientGone:
                    pass
            resp.conn.closing = True
        finally:
            self._record(req, resp, "%s <preview>" % req.method, t0)

    def _serve(self, req, resp, route, path):
        toolbox = path.startswith("/toolbox/")
        if route is None:
            if toolbox:
                denied = self._auth(req, True)
                if denied:
                    toolbox_error(req, resp, 401, "unauthorized: authentication failed: "
                                  "Bearer token is invalid", "UNAUTHORIZED")
                else:
                    resp.send(404, b"404 page not found", [("Content-Type", "text/plain")])
            else:
                controlplane.send_error(req, resp, 404, "Cannot %s %s" % (req.method, req.path))
            return
        if route.auth:
            denied = self._auth(req, toolbox)
            if denied:
                if toolbox:
                    toolbox_error(req, resp, 401, "unauthorized: authentication failed: "
                                  "Bearer token is invalid", "UNAUTHORIZED")
                else:
                    controlplane.send_error(req, resp, denied[0], denied[1])
                return
        try:
            route.handler(req, resp)
        except ApiError as e:
            if resp.sent:
                raise
            controlplane.send_error(req, resp, e.status, e.message)
        except BadJSON as e:
            if resp.sent:
                raise
            controlplane.send_error(req, resp, 400, e.message)

    def _internal_error(self, req, resp, path):
        if path.startswith("/toolbox/"):
            resp.send(500, b"")                 # a Go panic: 500 with an empty body
        else:
            controlplane.send_error(req, resp, 500, "An unexpected error occurred.")

    def _delay(self, resp):
        time.sleep(self.latency_ms / 1000.0)

    def _replay_first_run(self, req, resp, route, path):
        """The first of the two runs of a replayed request; its answer is lost, as when the
        proxy's upstream connection broke after the daemon had acted (FIDELITY 2.1, D7).
        Requests the proxy cannot replay (chunked or > 256 KiB bodies, upgrades) run once."""
        if req.headers.get("Upgrade") or not req.make_replayable(REPLAY_BODY_LIMIT):
            return
        lost = httpcore.DiscardedResponse(resp.conn, req)
        try:
            self._serve(req, lost, route, path)
        except ClientGone:
            pass                # only the lost answer's "connection" went away
        except Exception:
            traceback.print_exc()
        req.rewind()

    def _apply_fault(self, fault, req, resp, route, path):
        """Returns True if the request should still be served normally."""
        if fault.action == "drop":
            resp.conn.abort()
            return False
        if fault.action == "slow":
            resp.throttle = fault.bytes_per_sec
            return True
        if fault.action == "reset_mid_body":
            resp.cut_at = "half"
            return True
        if fault.action == "hold":
            time.sleep(fault.seconds)
            return True
        if fault.action == "throttle_401":
            # the proxy's auth check hit the API's rate limit: a non-retryable validation
            # error, answered as an invalid credential (FIDELITY 2.1, D5)
            toolbox_error(req, resp, 401, THROTTLED_AUTH, "UNAUTHORIZED")
            return False
        if fault.action == "replay":
            self._replay_first_run(req, resp, route, path)
            return True
        status = fault.status
        headers = []
        if fault.retry_after is not None:
            ra = str(int(fault.retry_after)) if fault.retry_after == int(fault.retry_after) \
                else str(fault.retry_after)
            headers = [("Retry-After", ra), ("Retry-After-authenticated", ra)]
        if isinstance(fault.body, str):
            resp.send(status, fault.body.encode(), headers + [("Content-Type", "text/plain")])
        elif fault.body is not None:
            resp.send_json(status, fault.body, headers)
        elif req.raw_path_only.startswith("/toolbox/"):
            if status == 502:
                resp.send(502, b"", headers)       # a proxy hop failed before any byte
            else:
                code = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN",
                        404: "NOT_FOUND", 408: "REQUEST_TIMEOUT", 409: "CONFLICT",
                        410: "GONE", 422: "UNPROCESSABLE_ENTITY"}.get(status,
                                                                      "INTERNAL_SERVER_ERROR")
                resp.send_json(status, {"statusCode": status,
                                        "message": "injected fault: %s" % httpcore.REASONS.get(
                                            status, "error").lower(),
                                        "code": code, "timestamp": go_timestamp(),
                                        "path": req.path, "method": req.method}, headers)
        else:
            msg = "ThrottlerException: Too Many Requests" if status == 429 else \
                httpcore.REASONS.get(status, "Error")
            controlplane.send_error(req, resp, status, msg, headers)
        return False

    def _record(self, req, resp, key, t0):
        ms = (time.monotonic() - t0) * 1000.0
        entry = {"t": time.time(), "method": req.method, "path": req.raw_path, "route": key,
                 "status": resp.status or 0, "bytes_in": req.bytes_in,
                 "bytes_out": resp.bytes_out, "ms": round(ms, 3)}
        self.stats.record(entry, resp)
        if self.access_log is not None:
            try:
                self.access_log.write("%s %s %s %d %dB %.1fms\n" % (
                    time.strftime("%H:%M:%S"), req.method, req.raw_path, entry["status"],
                    entry["bytes_out"], ms))
            except (OSError, ValueError):
                pass

    # -- /_local ---------------------------------------------------------------------------
    def _register_local(self):
        L = self.local.add
        L("GET", "/_local/health", lambda req, resp: resp.send_json(200, {"ok": True}))
        L("GET", "/_local/stats", lambda req, resp: resp.send_json(200, self.stats.snapshot()))
        L("POST", "/_local/stats/reset", self._local_stats_reset)
        L("GET", "/_local/log", self._local_log)
        L("PUT", "/_local/latency", self._local_latency)
        L("GET", "/_local/latency",
          lambda req, resp: resp.send_json(200, {"ms": self.latency_ms}))
        L("POST", "/_local/faults", self._local_faults_add)
        L("GET", "/_local/faults", lambda req, resp: resp.send_json(200, self.faults.list()))
        L("DELETE", "/_local/faults", self._local_faults_clear)
        L("DELETE", "/_local/faults/{id}", self._local_faults_remove)
        L("PUT", "/_local/timing", self._local_timing)
        L("GET", "/_local/timing", lambda req, resp: resp.send_json(200, {
            "transition_ms": self.store.transition_ms, "minute_ms": self.store.minute_ms,
            "list_lag_ms": self.store.list_lag_ms, "build_ms": self.store.build_ms}))
        L("POST", "/_local/sandbox/{id}/error", self._local_sandbox_error)
        L("POST", "/_local/sandbox/{id}/runner-cache", self._local_runner_cache)
        L("POST", "/_local/sandbox/{id}/state", self._local_sandbox_state)
        L("POST", "/_local/sandbox/{id}/daemon", lambda req, resp: resp.send_json(
            200, self.store.set_daemon_version(req.params["id"],
                                               str(self._json_object(req).get("version")))))
        L("POST", "/_local/reconcile", lambda req, resp: resp.send_json(
            200, {"actions": self.store.reconcile_once()}))

    def _handle_local(self, req, resp):
        route, params = self.local.match(req.method, req.raw_path_only)
        if route is None and req.method == "HEAD":
            route, params = self.local.match("GET", req.raw_path_only)
        if route is None:
            resp.send_json(404, {"error": "no such /_local endpoint"})
            return
        req.params = params
        try:
            route.handler(req, resp)
        except (BadJSON, ValueError, FaultSpecError) as e:
            if not resp.sent:
                resp.send_json(400, {"error": getattr(e, "message", None) or str(e)})
        except ApiError as e:
            if not resp.sent:
                resp.send_json(e.status, {"error": e.message})
        except ClientGone:
            resp.conn.closing = True
        except Exception as e:
            traceback.print_exc()
            if not resp.sent:
                resp.send_json(500, {"error": repr(e)})

    @staticmethod
    def _json_object(req):
        obj = req.json()
        if not isinstance(obj, dict):
            raise ValueError("body must be a JSON object")
        return obj

    def _local_stats_reset(self, req, resp):
        self.stats.reset()
        resp.send(204)

    def _local_log(self, req, resp):
        limit = req.q("limit")
        try:
            n = int(limit) if limit not in (None, "") else 0
        except ValueError:
            raise ValueError("limit must be an integer")
        resp.send_json(200, self.stats.tail(max(n, 0)))

    def _local_latency(self, req, resp):
        ms = self._json_object(req).get("ms")
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 0:
            raise ValueError("ms must be a non-negative number")
        self.latency_ms = float(ms)
        resp.send(204)

    def _local_faults_add(self, req, resp):
        rule = self.faults.add(self._json_object(req))
        resp.send_json(201, {"id": rule.id})

    def _local_faults_clear(self, req, resp):
        self.faults.clear()
        resp.send(204)

    def _local_faults_remove(self, req, resp):
        if not self.faults.remove(req.params["id"]):
            resp.send_json(404, {"error": "no such fault"})
            return
        resp.send(204)

    def _local_timing(self, req, resp):
        obj = self._json_object(req)
        vals = {}
        for k in ("transition_ms", "minute_ms", "list_lag_ms", "build_ms"):
            if obj.get(k) is not None:
                vals[k] = self._ms(obj, k)
        if not vals:
            raise ValueError("expected transition_ms, minute_ms, list_lag_ms and/or build_ms")
        if "list_lag_ms" in vals:
            self.store.list_lag_ms = vals.pop("list_lag_ms")
        if "build_ms" in vals:
            self.store.build_ms = vals.pop("build_ms")
        if vals:
            self.store.set_timing(**vals)
        resp.send(204)

    def _local_sandbox_error(self, req, resp):
        obj = req.json() or {}
        resp.send_json(200, self.store.set_error(req.params["id"],
                                                 str(obj.get("reason") or "injected error"),
                                                 bool(obj.get("recoverable", False))))

    @staticmethod
    def _ms(obj, key="ms"):
        v = obj.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ValueError("%s must be a non-negative number" % key)
        return v

    def _local_sandbox_state(self, req, resp):
        obj = self._json_object(req)
        resp.send_json(200, self.store.force_state(req.params["id"], obj.get("state"),
                                                   obj.get("sandboxClass")))

    def _local_runner_cache(self, req, resp):
        self.store.open_runner_cache(req.params["id"], self._ms(self._json_object(req)))
        resp.send(204)


# ------------------------------------------------------------------------------ start-up
def parse_args(argv):
    p = argparse.ArgumentParser(prog="daytona-local",
                                description="Local Daytona server (control plane + toolbox).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--data", default=os.path.expanduser("~/.local/share/daytona-local"))
    g = p.add_mutually_exclusive_group()
    g.add_argument("--api-key")
    g.add_argument("--api-key-file")
    g.add_argument("--no-auth", action="store_true")
    p.add_argument("--jwt", help="also accept this Bearer token together with "
                                 "X-Daytona-Organization-ID = the server's organization id")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--transition-ms", type=float, default=300)
    p.add_argument("--build-ms", type=float, default=None,
                   help="how long an image build lasts (a sandbox's building_snapshot, a "
                        "snapshot's building), over which its build log is written "
                        "(default: --transition-ms)")
    p.add_argument("--minute-ms", type=float, default=60000,
                   help="length of a 'minute' for auto-stop/archive/delete (tests shorten it)")
    p.add_argument("--threads", type=int, default=256, help="max concurrent connections")
    p.add_argument("--no-bwrap", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--log-file")
    p.add_argument("--target", default="us", help="default region of new sandboxes")
    p.add_argument("--default-snapshot", default=DEFAULT_SNAPSHOT)
    p.add_argument("--public-url", help="base URL clients use to reach this server "
                                        "(default http://HOST:PORT)")
    p.add_argument("--control-plane-only", action="store_true",
                   help="serve only /api (no toolbox, no sandbox filesystems)")
    p.add_argument("--runner-cache-ms", type=float, default=3000,
                   help="after a restore from archive or a recover, toolbox calls answer the "
                        "runner's 404 'sandbox container not found' for this long, as through "
                        "the real proxy's stale runner cache (0: never)")
    p.add_argument("--list-lag-ms", type=float, default=1000,
                   help="a sandbox created less than this long ago is not yet in GET "
                        "/api/sandbox (the real listing is eventually consistent; 0: at once)")
    p.add_argument("--empty-toolbox-url", action="store_true",
                   help="sandboxes carry toolboxProxyUrl \"\", as newer APIs may send it; "
                        "clients must ask GET /api/sandbox/{id}/toolbox-proxy-url")
    p.add_argument("--shell", choices=("zsh", "bash", "sh"),
                   help="the shell that runs /process/execute and sessions (default: zsh when "
                        "the host has it, as in Daytona's default image; else the daemon's "
                        "rule: bash if listed in /etc/shells, else sh)")
    p.add_argument("--multipart", choices=("go", "lenient"), default="go",
                   help="bulk-upload part names: 'go' finds them as the daemon's Go parser "
                        "does (a Content-Disposition it rejects leaves the part nameless, so "
                        "it is ignored); 'lenient' reads any header")
    args = p.parse_args(argv)
    if args.api_key_file:
        with open(args.api_key_file) as f:
            args.api_key = f.read().strip()
    elif not args.api_key and not args.no_auth:
        args.api_key = os.environ.get("DAYTONA_LOCAL_API_KEY") or "local-dev-key"
    return args


def _load_toolbox(args, data_dir):
    """The runtime and toolbox modules (TOOLBOX engineer's). A missing one is fatal unless
    --control-plane-only was given: silently serving no toolbox would hide a broken install."""
    if args.control_plane_only:
        return None, None
    try:
        from . import runtime as runtime_mod
        from . import toolbox as toolbox_mod
    except ImportError as e:
        sys.stderr.write("daytona-local: cannot load the toolbox (%s); use --control-plane-only "
                         "to run without it\n" % e)
        sys.exit(2)
    try:
        rt = runtime_mod.Runtime(data_dir, False if args.no_bwrap else None, args.shell)
    except RuntimeError as e:
        sys.stderr.write("daytona-local: %s\n" % e)
        sys.exit(2)
    if getattr(rt, "warning", None):
        sys.stderr.write("daytona-local: WARNING: %s\n" % rt.warning)
    return rt, toolbox_mod


BODY_MATCH_LIMIT = 1 << 20


def _peek_body(req):
    """The request body for a fault's body_match, read and kept so that the handler reads it
    again (None for a chunked body or one over BODY_MATCH_LIMIT: those are never matched)."""
    if req._replay is None and not req.make_replayable(BODY_MATCH_LIMIT):
        return None
    return req._replay


def public_base_url(args, http):
    """The base URL clients use: --public-url, else the address listened on
    (a wildcard address as loopback, an IPv6 one in brackets)."""
    host = args.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = "[%s]" % host
    return (args.public_url or "http://%s:%d" % (host, http.port)).rstrip("/")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    data_dir = os.path.abspath(args.data)
    os.makedirs(data_dir, exist_ok=True)
    http = httpcore.HTTPServer(args.host, args.port, None, max_connections=args.threads)
    base = public_base_url(args, http)
    rt, toolbox_mod = _load_toolbox(args, data_dir)
    store = Store(data_dir, runtime=rt, toolbox_url=base + "/toolbox",
                  transition_ms=args.transition_ms, target=args.target,
                  default_snapshot=args.default_snapshot, minute_ms=args.minute_ms)
    store.runner_cache_ms = args.runner_cache_ms
    store.list_lag_ms = args.list_lag_ms
    store.empty_toolbox_url = args.empty_toolbox_url
    store.build_ms = args.build_ms
    if rt is not None:
        rt.surface_of = store.sandbox_surface
    server = Server(args, http, store, rt)
    http.handle = server.handle
    controlplane.register(server, store)
    server.preview = surface.register(server, store, base)
    if toolbox_mod is not None:
        tb = toolbox_mod.register(server, store, rt)
        surface.register_toolbox(server, store, rt, tb)
    store.start_background()

    def stop(signum, frame):
        threading.Thread(target=http.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.set_wakeup_fd(http.wakeup_fd)
    sys.stdout.write(base + "/api\n")
    sys.stdout.flush()
    if not args.quiet:
        sys.stderr.write("daytona-local: serving %s/api (toolbox %s/toolbox), data in %s\n"
                         % (base, base, data_dir))
    try:
        http.serve_forever()
    finally:
        store.close()
        if rt is not None and hasattr(rt, "shutdown"):
            try:
                rt.shutdown()
            except Exception:
                traceback.print_exc()
    return 0
