# SPDX-License-Identifier: Apache-2.0
"""The sandbox as another client sees it, and faults on the mount's kinds of request, for
either provider.

SandboxView reads, writes, stats, lists, moves and removes files in a sandbox straight through
the provider's own API, not through the mount: Daytona's toolbox file API; on Vercel fs/read,
fs/write (a tar.gz of one file) and a command for what Vercel has no file call for (stat,
list, move, remove). A test that checks "what the sandbox holds" or changes a file "from
another client" uses it and runs on both providers.

Faults maps the kinds of request the mount makes (KINDS) to each provider's routes for
POST /_local/faults. On Vercel every command is POST .../cmd, the mount's uploads included
(one command carries the files: vercel_bulk.c): the kinds tell them apart by the command's
body (body_match, scripts/daytona_local/faults.py). Faults.hits counts a kind's requests with
a rule that never injects (count 0), since a request log has no bodies.
"""
import base64
import io
import json
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import uuid

from conftest import API_KEY, PROVIDER, VERCEL_PROJECT, VERCEL_TEAM

# Markers of the Vercel provider's commands (src/provider/vercel/vercel_bulk.c): the upload of
# one or more files ends each file's here-document with UP_EOF; the bulk read makes its tar
# under a "bulk." temporary name.
_VC_UPLOAD = "DAYTONAFS_UP_EOF"
_VC_BULK = "/tmp/\\.daytonafs/out/bulk\\."
_VC_CMD = "/cmd(\\?|$)"

# kind -> provider -> the rule's matching keys. Daytona's paths end before the query ("?").
KINDS = {
    # a file's content sent by the mount (write-back, fsync, close)
    "upload": {"daytona": {"pattern": "/files/bulk-upload(\\?|$)", "method": "POST"},
               "vercel": {"pattern": _VC_CMD, "method": "POST", "body_match": _VC_UPLOAD}},
    # one file's content read
    "download": {"daytona": {"pattern": "/files/download\\?", "method": "GET"},
                 "vercel": {"pattern": "/fs/read(\\?|$)", "method": "POST"}},
    # many files read in one request
    "bulk_download": {"daytona": {"pattern": "/files/bulk-download(\\?|$)", "method": "POST"},
                      "vercel": {"pattern": _VC_CMD, "method": "POST", "body_match": _VC_BULK}},
    # a batch of deferred changes (deletes, times, modes: src/remote/writeback.c), each change
    # marked by a printf '@MARK N'. Daytona: every command (its stat is the file API's).
    "batch": {"daytona": {"pattern": "/process/execute(\\?|$)", "method": "POST"},
              "vercel": {"pattern": _VC_CMD, "method": "POST", "body_match": "printf '@"}},
    # a command: listings, renames, deletes, exec (not an upload nor a bulk read)
    "execute": {"daytona": {"pattern": "/process/execute(\\?|$)", "method": "POST"},
                "vercel": {"pattern": _VC_CMD, "method": "POST",
                           "body_match": "^(?![\\s\\S]*(%s|%s))" % (_VC_UPLOAD, _VC_BULK)}},
}


def kind_rule(kind, view=None, **spec):
    """The POST /_local/faults rule for a kind of request on this provider, plus spec; with a
    view (SandboxView), for that sandbox's requests only."""
    rule = dict(KINDS[kind][PROVIDER])
    if view is not None:
        rule["pattern"] = (f"/sessions/{view.sid}" if PROVIDER == "vercel"
                           else f"/toolbox/{view.sid}") + rule["pattern"]
    rule.update(spec)
    return rule


class Faults:
    """Fault rules by kind of request. Use as a fixture (see conftest.faults): cleared before
    and after."""

    def __init__(self, server):
        self.server = server

    def add(self, kind, view=None, **spec):
        """Faults requests of a kind (KINDS), of one sandbox's with a view; spec is the rest of
        the rule (status, action, count, schedule, retry_after ...). Returns the rule's id."""
        return self.server.local("POST", "/_local/faults", kind_rule(kind, view, **spec))["id"]

    def raw(self, rule):
        return self.server.local("POST", "/_local/faults", rule)["id"]

    def counter(self, kind, view=None):
        """A rule that only counts a kind's requests (its hits); added before any fault on the
        same kind (the first rule that injects hides a request from the rules after it)."""
        return self.add(kind, view, count=0)

    def rule(self, rid):
        return next(r for r in self.server.local("GET", "/_local/faults") if r["id"] == rid)

    def hits(self, rid):
        return self.rule(rid)["hits"]

    def injected(self, rid=None):
        rules = self.server.local("GET", "/_local/faults")
        return sum(r["injected"] for r in rules if rid is None or r["id"] == rid)

    def clear(self):
        self.server.local("DELETE", "/_local/faults")


class SandboxView:
    """A sandbox's files through the provider's API: what another client sees and does."""

    def __init__(self, server, sandbox):
        self.server = server
        self.sandbox = sandbox
        self.home = "/vercel/sandbox" if PROVIDER == "vercel" else "/home/daytona"
        self._where()

    def _where(self):
        if PROVIDER == "vercel":
            q = urllib.parse.urlencode({"projectId": VERCEL_PROJECT, "teamId": VERCEL_TEAM})
            out = self.server.api("GET", f"/v2/sandboxes/{self.sandbox}?{q}")
            self.sid = out["sandbox"]["currentSessionId"]
        else:
            self.sid = self.server.api("GET", f"/sandbox/{self.sandbox}")["id"]

    # ---- transport
    def _open(self, req, timeout=60):
        return urllib.request.urlopen(req, timeout=timeout)

    def _daytona(self, method, endpoint, query, data=None, headers=None):
        url = (f"{self.server.base}/toolbox/{self.sid}{endpoint}?"
               f"{urllib.parse.urlencode(query, quote_via=urllib.parse.quote)}")
        h = {"Authorization": "Bearer " + API_KEY}
        h.update(headers or {})
        with self._open(urllib.request.Request(url, data=data, method=method, headers=h)) as r:
            return r.read()

    def _vercel(self, endpoint, body, headers=None, raw=None):
        try:
            return self._vercel_once(endpoint, body, headers, raw)
        except urllib.error.HTTPError as e:
            if e.code != 410:
                raise
        self._where()                   # the session stopped, or another took its place
        return self._vercel_once(endpoint, body, headers, raw)

    def _vercel_once(self, endpoint, body, headers=None, raw=None):
        q = urllib.parse.urlencode({"teamId": VERCEL_TEAM, "projectId": VERCEL_PROJECT})
        url = f"{self.server.api_url}/v2/sandboxes/sessions/{self.sid}/{endpoint}?{q}"
        h = {"Content-Type": "application/json", "Authorization": "Bearer " + API_KEY}
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body).encode()
        with self._open(urllib.request.Request(url, data=data, method="POST", headers=h)) as r:
            return r.read()

    def run(self, script, *args):
        """Vercel: runs sh -c script in the sandbox; (exit code, stdout bytes). Output goes
        through base64: the log stream is UTF-8 text."""
        wrapped = 'o=$(mktemp); (%s) >"$o" 2>&1; r=$?; base64 -w0 <"$o"; rm -f "$o"; exit $r' % script
        body = {"command": "sh", "args": ["-c", wrapped, "sh", *args], "wait": True, "logs": True}
        out, code = "", None
        for line in self._vercel("cmd", body).splitlines():
            o = json.loads(line)
            if o.get("stream") == "stdout":
                out += o["data"]
            elif "command" in o and o["command"].get("exitCode") is not None:
                code = o["command"]["exitCode"]
        return code, base64.b64decode(out)

    def _check(self, script, *args):
        code, out = self.run(script, *args)
        if code != 0:
            raise OSError(f"{script!r} {args!r} exited {code}: {out[-300:]!r}")
        return out

    # ---- files
    def read(self, path):
        """The file's content, or None when it does not exist."""
        try:
            if PROVIDER == "vercel":
                return self._vercel("fs/read", {"path": path})
            return self._daytona("GET", "/files/download", {"path": path})
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def exists(self, path):
        return self.stat(path) is not None

    def write(self, path, data, mode=0o644):
        """Writes a whole file as another client does (a new file in place of the old one on
        Vercel, where fs/write extracts a tar; in place on Daytona)."""
        if PROVIDER == "vercel":
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                ti = tarfile.TarInfo(path.lstrip("/"))
                ti.size, ti.mode = len(data), mode
                tar.addfile(ti, io.BytesIO(data))
            self._vercel("fs/write", None, {"Content-Type": "application/gzip", "x-cwd": "/"},
                         raw=buf.getvalue())
            return
        boundary = "b" + uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
            f"\r\n--{boundary}--\r\n".encode()
        self._daytona("POST", "/files/upload", {"path": path}, body,
                      {"Content-Type": "multipart/form-data; boundary=" + boundary})

    def stat(self, path):
        """{"size", "mode" (permission bits), "dir"} of path (links followed), or None."""
        if PROVIDER == "vercel":
            code, out = self.run('stat -L -c "%s %a %F" -- "$1"', path)
            if code != 0:
                return None
            size, mode, kind = out.decode().split(" ", 2)
            return {"size": int(size), "mode": int(mode, 8), "dir": kind.strip() == "directory"}
        try:
            info = json.loads(self._daytona("GET", "/files/info", {"path": path}))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
        mode = info.get("mode")
        return {"size": info["size"], "dir": info["isDir"],
                "mode": int(info["permissions"], 8) if info.get("permissions") else mode}

    def list(self, path):
        """The sorted names in a directory."""
        if PROVIDER == "vercel":
            out = self._check("find \"$1\" -mindepth 1 -maxdepth 1 -printf '%f\\0'", path)
            return sorted(n.decode() for n in out.split(b"\0") if n)
        return sorted(e["name"] for e in json.loads(self._daytona("GET", "/files", {"path": path})))

    def remove(self, path):
        """Removes a file or a whole directory."""
        if PROVIDER == "vercel":
            self._check('rm -rf -- "$1"', path)
            return
        self._daytona("DELETE", "/files", {"path": path, "recursive": "true"})

    def move(self, src, dst):
        if PROVIDER == "vercel":
            self._check('mv -- "$1" "$2"', src, dst)
            return
        self._daytona("POST", "/files/move", {"source": src, "destination": dst})

    def mkdir(self, path):
        if PROVIDER == "vercel":
            self._vercel("fs/mkdir", {"path": path, "recursive": True})
            return
        self._daytona("POST", "/files/folder", {"path": path, "mode": "755"})

    # Daytona's Toolbox names, for the tests that used it
    download = read
    upload = write
