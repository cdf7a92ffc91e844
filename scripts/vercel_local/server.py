"""vercel-local: an offline Vercel Sandbox server for development and tests.

The HTTP machinery, the /_local knobs (stats, request log, latency, faults, timing), the request
accounting and the sandbox runtime are daytona-local's (imported, not copied): VercelServer is
daytona_local.server.Server with Vercel's authentication, error bodies and routes.
"""
import argparse
import os
import signal
import sys
import threading
import traceback

from daytona_local import httpcore
from daytona_local.server import Router, Server, public_base_url

from .api import Api, send_error
from .runtime import VercelRuntime
from .store import Store

DEFAULT_PORT = 3987
DEFAULT_TOKEN = "local-dev-token"
DEFAULT_TEAM = "team_local"
DEFAULT_PROJECT = "prj_local"


class VercelServer(Server):
    def __init__(self, args, http, store, runtime):
        super().__init__(args, http, store, runtime)
        # the base class registers Daytona's socket.io event stream; Vercel has none
        self.router = Router()
        self.team_id = args.team

    def _auth(self, req, toolbox=False):
        """None if authorised, else (status, code, message, extra error fields)."""
        h = req.headers.get("Authorization") or ""
        token = h[7:].strip() if h[:7].lower() == "bearer " else None
        if not token:
            return 401, "unauthorized", "The request is missing an authentication token", \
                {"missingToken": True}
        if token != self.api_key:
            return 403, "forbidden", "Not authorized", {"invalidToken": True}
        team = req.q("teamId")
        if team is not None and team != self.team_id:
            return 403, "forbidden", "Not authorized", {}
        return None

    def _serve(self, req, resp, route, path):
        if route is None:
            send_error(resp, 404, "not_found", "The requested path was not found: %s %s"
                       % (req.method, req.path))
            return
        denied = self._auth(req)
        if denied:
            send_error(resp, denied[0], denied[1], denied[2], extra=denied[3])
            return
        route.handler(req, resp)

    def _internal_error(self, req, resp, path):
        send_error(resp, 500, "internal_server_error", "An unexpected error occurred.")

    def _apply_fault(self, fault, req, resp, route, path):
        """A status fault without its own body answers with Vercel's error body; the other
        actions are the base class's."""
        if fault.action != "status" or fault.body is not None:
            return super()._apply_fault(fault, req, resp, route, path)
        headers = []
        if fault.retry_after is not None:
            ra = fault.retry_after
            headers.append(("Retry-After", str(int(ra)) if ra == int(ra) else str(ra)))
        status = fault.status
        if status == 429:
            send_error(resp, 429, "rate_limited", "Rate limit exceeded", headers)
        else:
            code = {400: "bad_request", 401: "unauthorized", 403: "forbidden",
                    404: "not_found", 410: "sandbox_stopped", 422: "sandbox_stopping"}.get(
                status, "internal_server_error" if status >= 500 else "error")
            send_error(resp, status, code, "injected fault: %s"
                       % httpcore.REASONS.get(status, "error").lower(), headers)
        return False


def parse_args(argv):
    p = argparse.ArgumentParser(prog="vercel-local",
                                description="Local Vercel Sandbox server (API v2/v3).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--data", default=os.path.expanduser("~/.local/share/vercel-local"))
    p.add_argument("--token", default=os.environ.get("VERCEL_LOCAL_TOKEN") or DEFAULT_TOKEN,
                   help="the accepted Bearer token")
    p.add_argument("--team", default=DEFAULT_TEAM, help="the team id (teamId query)")
    p.add_argument("--project", default=DEFAULT_PROJECT, help="the project id")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--transition-ms", type=float, default=300,
                   help="how long a session stays stopping/snapshotting")
    p.add_argument("--minute-ms", type=float, default=60000,
                   help="length of a 'minute' for session timeouts (tests shorten it)")
    p.add_argument("--threads", type=int, default=256, help="max concurrent connections")
    p.add_argument("--no-bwrap", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--log-file")
    p.add_argument("--public-url", help="base URL clients use to reach this server "
                                        "(default http://HOST:PORT)")
    args = p.parse_args(argv)
    # what the shared Server base reads
    args.api_key, args.jwt, args.no_auth = args.token, None, False
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    data_dir = os.path.abspath(args.data)
    os.makedirs(data_dir, exist_ok=True)
    http = httpcore.HTTPServer(args.host, args.port, None, max_connections=args.threads)
    base = public_base_url(args, http)
    rt = VercelRuntime(data_dir, False if args.no_bwrap else None)
    if rt.warning:
        sys.stderr.write("vercel-local: WARNING: %s\n" % rt.warning)
    store = Store(data_dir, rt, args.project, args.team, transition_ms=args.transition_ms,
                  minute_ms=args.minute_ms)
    server = VercelServer(args, http, store, rt)
    http.handle = server.handle
    Api(server, store, rt).register()
    store.start_background()

    def stop(signum, frame):
        threading.Thread(target=http.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.set_wakeup_fd(http.wakeup_fd)
    sys.stdout.write(base + "/api\n")
    sys.stdout.flush()
    if not args.quiet:
        sys.stderr.write("vercel-local: serving %s/api (token %s, team %s, project %s), "
                         "data in %s\n" % (base, args.token, args.team, args.project, data_dir))
    try:
        http.serve_forever()
    finally:
        store.close()
        try:
            rt.shutdown()
        except Exception:
            traceback.print_exc()
    return 0
