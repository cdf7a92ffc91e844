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
import shlex
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

# kind -> provider -> the rule's matching keys, or a list of rules (a kind that is more than
# one route; each rule counts and injects on its own: count=1 may fault one request of each).
KINDS = {
    # a file's content sent by the mount (write-back, fsync, close, crash recovery). Vercel:
    # the command that carries small files, or fs/write of a large one (then copied into place)
    "upload": {"daytona": {"pattern": "/files/bulk-upload(\\?|$)", "method": "POST"},
               "vercel": [{"pattern": _VC_CMD, "method": "POST", "body_match": _VC_UPLOAD},
                          {"pattern": "/fs/write(\\?|$)", "method": "POST"}]},
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


def kind_rules(kind, view=None, **spec):
    """The POST /_local/faults rules for a kind of request on this provider, plus spec; with a
    view (SandboxView), for that sandbox's requests only."""
    rules = KINDS[kind][PROVIDER]
    out = []
    for r in rules if isinstance(rules, list) else [rules]:
        rule = dict(r)
        if view is not None:
            rule["pattern"] = (f"/sessions/{view.sid}" if PROVIDER == "vercel"
                               else f"/toolbox/{view.sid}") + rule["pattern"]
        rule.update(spec)
        out.append(rule)
    return out


class Faults:
    """Fault rules by kind of request. Use as a fixture (see conftest.faults): cleared before
    and after."""

    def __init__(self, server):
        self.server = server

    def add(self, kind, view=None, **spec):
        """Faults requests of a kind (KINDS), of one sandbox's with a view; spec is the rest of
        the rule (status, action, count, schedule, retry_after ...). Returns the rules' ids
        (for hits and injected)."""
        return tuple(self.server.local("POST", "/_local/faults", r)["id"]
                     for r in kind_rules(kind, view, **spec))

    def raw(self, rule):
        return self.server.local("POST", "/_local/faults", rule)["id"]

    def counter(self, kind, view=None):
        """A rule that only counts a kind's requests (its hits); added before any fault on the
        same kind (the first rule that injects hides a request from the rules after it)."""
        return self.add(kind, view, count=0)

    def _sum(self, key, rids):
        rules = self.server.local("GET", "/_local/faults")
        return sum(r[key] for r in rules if rids is None or r["id"] in rids)

    def hits(self, rids):
        """Requests the rules of one add (or counter) saw."""
        return self._sum("hits", rids)

    def injected(self, rids=None):
        """Requests the rules of one add faulted; all rules' without rids."""
        return self._sum("injected", rids)

    def clear(self):
        self.server.local("DELETE", "/_local/faults")

    def remove(self, rids):
        for rid in rids:
            self.server.local("DELETE", f"/_local/faults/{rid}")

    def lift(self):
        """Removes every fault, and keeps the counters."""
        self.remove([r["id"] for r in self.server.local("GET", "/_local/faults") if r["count"] != 0])

    def counted(self, kind):
        """The requests of a kind the counters of that kind (counter) saw since they were
        added (server.reset() does not zero them: take a difference, or add one after it)."""
        keys = {(r["pattern"], r.get("body_match")) for r in kind_rules(kind)}
        return sum(r["hits"] for r in self.server.local("GET", "/_local/faults")
                   if r["count"] == 0 and (r["pattern"], r["body_match"]) in keys)


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

    def sh(self, script, *args):
        """Runs sh -c script (arguments $1...) in the sandbox as another client, on either
        provider: (exit code, output). Daytona: the toolbox's process/execute, whose output
        is text (stdout and stderr merged)."""
        if PROVIDER == "vercel":
            return self.run(script, *args)
        command = " ".join(shlex.quote(a) for a in ["sh", "-c", script, "sh", *args])
        out = json.loads(self._daytona("POST", "/process/execute", {},
                                       json.dumps({"command": command, "timeout": 60}).encode(),
                                       {"Content-Type": "application/json"}))
        return out["exitCode"], out["result"].encode()

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

    # ---- the sandbox itself, through the control plane
    def _vapi(self, method, path, **query):
        q = urllib.parse.urlencode({"projectId": VERCEL_PROJECT, "teamId": VERCEL_TEAM, **query})
        return self.server.api(method, f"{path}?{q}")

    @property
    def id(self):
        """The sandbox's id as the mount names it (its error file, unsaved/ notes): Daytona's
        id, Vercel's name."""
        return self.sandbox if PROVIDER == "vercel" else self.sid

    def state(self):
        """"started", "stopped", "destroyed" (also when it is gone), or the provider's word."""
        try:
            if PROVIDER == "vercel":
                st = self._vapi("GET", f"/v2/sandboxes/{self.sandbox}")["sandbox"]["status"]
                return {"running": "started"}.get(st, st)
            return self.server.api("GET", f"/sandbox/{self.sid}")["state"]
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return "destroyed"
            raise

    def stop(self):
        if PROVIDER == "vercel":
            self._vapi("POST", f"/v2/sandboxes/sessions/{self.sid}/stop")
        else:
            self.server.api("POST", f"/sandbox/{self.sid}/stop")

    def start(self):
        if PROVIDER == "vercel":
            self.sid = self._vapi("GET", f"/v2/sandboxes/{self.sandbox}", resume="true")["session"]["id"]
        else:
            self.server.api("POST", f"/sandbox/{self.sid}/start")

    def delete(self):
        if PROVIDER == "vercel":
            self._vapi("DELETE", f"/v2/sandboxes/{self.sandbox}")
        else:
            self.server.api("DELETE", f"/sandbox/{self.sid}")

    def get_route(self):
        """The path regex of the control plane's GET of this sandbox (what the mount asks)."""
        if PROVIDER == "vercel":
            return f"/v2/sandboxes/{self.sandbox}(\\?|$)"
        return f"/sandbox/{self.sid}$"

    # Daytona's Toolbox names, for the tests that used it
    download = read
    upload = write
