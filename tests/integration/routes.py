# SPDX-License-Identifier: Apache-2.0
"""Kinds of request to a sandbox, and each provider's route for them in the
local servers' request log (/_local/log, /_local/stats), so that a test can
count what the mount's generic code asks for on either provider.

Daytona's toolbox has a route per kind (scripts/daytona_local/toolbox.py).
Vercel's API (scripts/vercel_local/api.py, ../shared/vercel-api/CONTRACT.md)
has fs/read (one whole file), fs/write (a tar), fs/mkdir and commands: the
rest the mount does with one command each (src/provider/vercel/vercel_bulk.c
for many files either way, src/remote's find for listings and stats). So on
Vercel several kinds share one route, POST /cmd: a count of "exec" there
counts every command, whatever it was for.
"""
from conftest import PROVIDER
from sandbox_view import _VC_BULK, _VC_UPLOAD

# The body that tells a Vercel command of a kind from the others (vercel_bulk.c).
_VC_BODY = {"upload_many": _VC_UPLOAD, "download_many": _VC_BULK}

ROUTES = {
    "daytona": {
        "exec": ("POST", "/process/execute"),
        "download": ("GET", "/files/download"),
        "download_many": ("POST", "/files/bulk-download"),
        "upload": ("POST", "/files/upload"),
        "upload_many": ("POST", "/files/bulk-upload"),
        "stat": ("GET", "/files/info"),
        "list": ("GET", "/files"),
        "mkdir": ("POST", "/files/folder"),
    },
    "vercel": {
        "exec": ("POST", "/cmd"),
        "download": ("POST", "/fs/read"),
        "download_many": ("POST", "/cmd"),   # one command prints a tar of them
        "upload": ("POST", "/fs/write"),
        "upload_many": ("POST", "/cmd"),     # one command carries their bytes and copies them into place
        "stat": ("POST", "/cmd"),            # find -printf
        "list": ("POST", "/cmd"),
        "mkdir": ("POST", "/fs/mkdir"),
    },
}

# What a sandbox's requests have in their path, before the sandbox's own route.
SANDBOX_CALL = {"daytona": "/toolbox/", "vercel": "/sessions/"}


def route(kind, provider=PROVIDER):
    """(method, route) of a kind of request on a provider."""
    return ROUTES[provider][kind]


def sandbox_requests(server, sandbox_id=None):
    """(method, route) of the requests to sandboxes since the last reset, in
    order: the route after the sandbox's (Daytona) or session's (Vercel) id,
    without the query. The control plane's requests are left out. With
    sandbox_id (Daytona's id; on Vercel a session id), one sandbox's only."""
    mark = SANDBOX_CALL[server.provider]
    out = []
    for e in server.local("GET", "/_local/log?limit=100000"):
        path = e["path"].split("?")[0]
        if mark not in path:
            continue
        ident, _, rest = path.split(mark, 1)[1].partition("/")
        if not rest or (sandbox_id is not None and ident != sandbox_id):
            continue
        out.append((e["method"], "/" + rest))
    return out


def count(server, kind, sandbox_id=None):
    """How many requests of a kind (see ROUTES) went to sandboxes since the last reset."""
    want = route(kind, server.provider)
    return sum(1 for r in sandbox_requests(server, sandbox_id) if r == want)


def total(server, sandbox_id=None):
    """Every request to sandboxes since the last reset."""
    return len(sandbox_requests(server, sandbox_id))


def by_kind(server, sandbox_id=None):
    """{kind: count} of the requests to sandboxes since the last reset, named by
    the first kind whose route each has (on Vercel every command is "exec"),
    and {"other ROUTE": n} for the rest; kinds with none are left out."""
    names = {}
    for kind, r in ROUTES[server.provider].items():
        names.setdefault(r, kind)
    out = {}
    for r in sandbox_requests(server, sandbox_id):
        k = names.get(r, "other %s %s" % r)
        out[k] = out.get(k, 0) + 1
    return out


def host_path(server, sandbox, path="/"):
    """Where the local server keeps a sandbox's path on this host (its tree),
    to make or read files as another client would, unseen by the mount.
    Daytona's tree is under the sandbox's id, Vercel's under its name."""
    import os
    if server.provider == "vercel":
        key = sandbox
    else:
        key = server.api("GET", f"/sandbox/{sandbox}")["id"]
    return os.path.join(server.data, "sandboxes", key, "fs", path.lstrip("/"))


def fault_rule(kind, provider=PROVIDER, **rule):
    """A /_local/faults rule that hits the requests of a kind. On Vercel the
    commands that carry many files (upload_many, download_many) are told from
    the others by their body (sandbox_view's markers), so a lookup's listing,
    a command too, is not faulted with them; the other command kinds (exec,
    stat, list) hit every command."""
    method, r = route(kind, provider)
    out = dict(rule, method=method, pattern=r"/(toolbox|sessions)/[^/]+%s(\?|$)" % r)
    if provider == "vercel" and kind in _VC_BODY:
        out.setdefault("body_match", _VC_BODY[kind])
    return out
