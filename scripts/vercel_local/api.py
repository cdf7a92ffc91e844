"""The Vercel Sandbox REST routes (v2 + POST /v3/sandboxes), each under /v2|v3 and /api/v2|v3.

Shapes, status codes and error codes follow /work/shared/vercel-api/CONTRACT.md; the module
docstring of each handler names the endpoint. Handlers raise store.VercelError for API errors.
"""
import errno
import json
import mmap
import os
import posixpath
import signal
import stat
import subprocess
import tempfile
import urllib.parse

from daytona_local.httpcore import BadJSON
from daytona_local.runtime import DEFAULT_PATH

from . import tarball
from .commands import NDJSON, Command, ndjson_line
from .store import VercelError, bad_request, not_found

JSON_TYPE = "application/json"
MAX_UPLOAD = 32 << 30           # the sandbox's disk: no limit is documented for fs/write
STREAM_STOPPED = {"stream": "error", "data": {"code": "sandbox_stopped",
                                              "message": "Sandbox has stopped"}}


def send_json(resp, status, obj, headers=None):
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    resp.send(status, body, [("Content-Type", JSON_TYPE)] + list(headers or []))


def send_error(resp, status, code, message, headers=None, extra=None):
    err = {"code": code, "message": message}
    err.update(extra or {})
    send_json(resp, status, {"error": err}, headers)


def _find_program(view, name, cwd, path_env):
    """Whether `name` is an executable file in the sandbox: a path (relative to cwd) as given, a
    bare name through PATH, as execvp looks it up."""
    if "/" in name:
        candidates = [posixpath.join(cwd, name)]
    else:
        # an empty entry is the current directory; an absolute one discards cwd
        candidates = [posixpath.join(cwd, d or ".", name) for d in path_env.split(":")]
    for c in candidates:
        try:
            r = view.resolve(c)
            if stat.S_ISREG(os.stat(r.host).st_mode) and os.access(r.host, os.X_OK):
                return True
        except OSError:
            continue
    return False


def _disposition(name):
    """Content-Disposition for a file name (RFC 6266: an ASCII fallback, then UTF-8)."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return "attachment; filename=\"%s\"; filename*=UTF-8''%s" % (
        ascii_name, urllib.parse.quote(name.encode("utf-8", "surrogateescape"), safe=""))


def _body(req):
    obj = req.json()
    return {} if obj is None else obj


def _object(req):
    obj = _body(req)
    if not isinstance(obj, dict):
        raise bad_request("Invalid request: body must be a JSON object.")
    return obj


def _query(req):
    return {k: v[0] for k, v in req.query.items() if v}


class Api:
    def __init__(self, server, store, runtime):
        self.server = server
        self.store = store
        self.runtime = runtime

    def register(self):
        R = self._route
        R("POST", "/v3/sandboxes", lambda req, resp: self.create(req, resp, legacy=False))
        R("POST", "/v2/sandboxes", lambda req, resp: self.create(req, resp, legacy=True))
        R("GET", "/v2/sandboxes", self.list_sandboxes)
        R("GET", "/v2/sandboxes/sessions", self.list_sessions)
        R("GET", "/v2/sandboxes/snapshots", self.list_snapshots)
        R("GET", "/v2/sandboxes/{name}", self.get_sandbox)
        R("PATCH", "/v2/sandboxes/{name}", self.update_sandbox)
        R("DELETE", "/v2/sandboxes/{name}", self.delete_sandbox)
        S = "/v2/sandboxes/sessions/{sid}"
        R("GET", S, self.get_session)
        R("POST", S + "/stop", self.stop)
        R("POST", S + "/extend-timeout", self.extend)
        R("POST", S + "/network-policy", self.network_policy)
        R("POST", S + "/snapshot", self.snapshot)
        R("POST", "/v3/sandboxes/sessions/{sid}/snapshot", self.snapshot)
        R("POST", S + "/cmd", self.run_command)
        R("GET", S + "/cmd", self.list_commands)
        R("GET", S + "/cmd/{cmd}", self.get_command)
        R("POST", S + "/cmd/{cmd}/kill", self.kill_command)
        R("GET", S + "/cmd/{cmd}/logs", self.command_logs)
        R("POST", S + "/fs/read", self.fs_read)
        R("POST", S + "/fs/write", self.fs_write)
        R("POST", S + "/fs/mkdir", self.fs_mkdir)
        R("GET", "/v2/sandboxes/snapshots/tree", self.snapshot_tree)
        R("GET", "/v2/sandboxes/snapshots/{snap}", self.get_snapshot)
        R("DELETE", "/v2/sandboxes/snapshots/{snap}", self.delete_snapshot)

    def _route(self, method, pattern, fn):
        def handler(req, resp):
            try:
                fn(req, resp)
            except VercelError as e:
                if resp.sent:
                    raise
                send_error(resp, e.status, e.code, e.message, e.headers)
            except BadJSON as e:
                if resp.sent:
                    raise
                send_error(resp, 400, "bad_request", "Invalid JSON: " + e.message)
        handler.__name__ = getattr(fn, "__name__", "handler")
        # the SDK's base URL is https://vercel.com/api, the REST docs' https://api.vercel.com
        for prefix in ("/api", ""):
            self.server.route(method, prefix + pattern, handler)

    # -- sandboxes
    def _sandbox_and_session(self, sb, s, resumed=None):
        out = {"sandbox": self.store.sandbox_json(sb), "session": self.store.session_json(s),
               "routes": self.store.routes(sb)}
        if resumed is not None:
            out["resumed"] = resumed
        return out

    def create(self, req, resp, legacy):
        sb, s = self.store.create(_object(req), legacy)
        send_json(resp, 200, self._sandbox_and_session(sb, s, False))

    def get_sandbox(self, req, resp):
        self.store.check_project(req.q("projectId"))
        resume = req.q("resume")
        if resume not in (None, "true", "false"):
            raise bad_request("Invalid request: `resume` must be true or false.")
        sb, s, resumed = self.store.get(req.params["name"], resume == "true")
        if s is None:
            raise not_found("Session not found")
        send_json(resp, 200, self._sandbox_and_session(sb, s, resumed))

    def update_sandbox(self, req, resp):
        self.store.check_project(req.q("projectId"))
        sb = self.store.update(req.params["name"], _object(req))
        send_json(resp, 200, {"sandbox": self.store.sandbox_json(sb),
                              "routes": self.store.routes(sb)})

    def delete_sandbox(self, req, resp):
        self.store.check_project(req.q("projectId"))
        sb = self.store.delete(req.params["name"], req.q("deleteOrphanSnapshots") == "true")
        send_json(resp, 200, {"sandbox": self.store.sandbox_json(sb),
                              "routes": self.store.routes(sb)})

    def list_sandboxes(self, req, resp):
        page, pagination = self.store.list_sandboxes(_query(req))
        send_json(resp, 200, {"sandboxes": [self.store.sandbox_json(s) for s in page],
                              "pagination": pagination})

    # -- sessions
    def list_sessions(self, req, resp):
        page, pagination = self.store.list_sessions(_query(req))
        send_json(resp, 200, {"sessions": [self.store.session_json(s) for s in page],
                              "pagination": pagination})

    def get_session(self, req, resp):
        s = self.store.session(req.params["sid"])
        sb = self.store.sandboxes.get(s["sourceSandboxName"], {"ports": []})
        send_json(resp, 200, {"session": self.store.session_json(s),
                              "routes": self.store.routes(sb) if "name" in sb else []})

    def stop(self, req, resp):
        req.drain()
        s, sb = self.store.stop(req.params["sid"])
        out = {"session": self.store.session_json(s)}
        if sb is not None:
            out["sandbox"] = self.store.sandbox_json(sb)
        send_json(resp, 200, out)

    def extend(self, req, resp):
        s = self.store.extend(req.params["sid"], _object(req).get("duration"))
        send_json(resp, 200, {"session": self.store.session_json(s)})

    def network_policy(self, req, resp):
        s = self.store.set_network_policy(req.params["sid"], _object(req))
        send_json(resp, 200, {"session": self.store.session_json(s)})

    def snapshot(self, req, resp):
        snap, s = self.store.snapshot(req.params["sid"], _body(req))
        send_json(resp, 200, {"snapshot": self.store.snapshot_json(snap),
                              "session": self.store.session_json(s)})

    # -- snapshots
    def list_snapshots(self, req, resp):
        page, pagination = self.store.list_snapshots(_query(req))
        send_json(resp, 200, {"snapshots": [self.store.snapshot_json(s) for s in page],
                              "pagination": pagination})

    def snapshot_tree(self, req, resp):
        send_json(resp, 200, self.store.snapshot_tree(_query(req)))

    def get_snapshot(self, req, resp):
        snap = self.store.get_snapshot(req.params["snap"])
        send_json(resp, 200, {"snapshot": self.store.snapshot_json(snap)})

    def delete_snapshot(self, req, resp):
        snap = self.store.delete_snapshot(req.params["snap"])
        send_json(resp, 200, {"snapshot": self.store.snapshot_json(snap)})

    # -- commands
    def run_command(self, req, resp):
        sid = req.params["sid"]
        body = _object(req)
        session = self.store.running_session(sid)
        name = body.get("command")
        if not isinstance(name, str) or not name:
            raise bad_request("Invalid request: `command` should be a non-empty string.")
        args = body.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise bad_request("Invalid request: `args` should be an array of strings.")
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise bad_request("Invalid request: `env` should be an object of strings.")
        timeout = body.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                    or timeout < 100):
            raise bad_request("Invalid request: `timeout` should be an integer >= 100.")
        sudo = bool(body.get("sudo"))
        cwd = self._command_cwd(session, body.get("cwd"))
        sb = self.store.sandbox(session["sourceSandboxName"])
        cmd = Command(sid, name, args, cwd)
        self.store.add_command(sid, cmd)
        path_env = env.get("PATH") or (sb.get("env") or {}).get("PATH") or DEFAULT_PATH
        if not _find_program(self.runtime.view(sb["name"]), name, cwd, path_env):
            # one answer whoever would have reported it (bwrap, setpriv): a shell's 127
            cmd.fail_to_start("%s: command not found" % name)
        else:
            self._spawn(cmd, sb, name, args, cwd, env, sudo, timeout)
        if not body.get("wait"):
            send_json(resp, 200, {"command": cmd.to_json()})
            return
        self._stream_command(resp, sid, cmd, bool(body.get("logs")))

    def _spawn(self, cmd, sb, name, args, cwd, env, sudo, timeout):
        try:
            proc = self.runtime.spawn_command(sb["name"], sb.get("env"), [name] + args, cwd,
                                              env, sudo, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            cmd.fail_to_start("%s: %s" % (name, os.strerror(e.errno or errno.EIO)))
        else:
            cmd.start(proc, timeout)

    def _command_cwd(self, session, cwd):
        if cwd is not None and not isinstance(cwd, str):
            raise bad_request("Invalid request: `cwd` should be a string.")
        path = posixpath.normpath(posixpath.join(session["cwd"], cwd or "."))
        view = self.runtime.view(session["sourceSandboxName"])
        try:
            r = view.resolve(path)
            if not stat.S_ISDIR(os.stat(r.host).st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        except OSError as e:
            raise bad_request("Invalid request: `cwd` %s: %s" % (path, os.strerror(e.errno)))
        return path

    def _stream_command(self, resp, sid, cmd, logs):
        """POST .../cmd with wait:true: the command line, its log lines, the finished line."""
        resp.start(200, [("Content-Type", NDJSON), ("Cache-Control", "no-cache")], None)
        # The command as it started, whatever it has done since: Vercel's first line always
        # has exitCode null (the SDK reads it so), even for a command that has already ended
        # or could not start at all.
        started = cmd.to_json()
        started["exitCode"] = None
        started.pop("durationMs", None)
        resp.write(ndjson_line({"command": started}))
        if logs:
            for stream, text in cmd.log.follow():
                resp.write(ndjson_line({"stream": stream, "data": text}))
        while not cmd.wait(0.5):
            pass
        if cmd.killed_by_stop:
            resp.write(ndjson_line(STREAM_STOPPED))
        else:
            resp.write(ndjson_line({"command": cmd.to_json()}))
        resp.end()

    def list_commands(self, req, resp):
        cmds = self.store.list_commands(req.params["sid"])
        send_json(resp, 200, {"commands": [c.to_json() for c in cmds]})

    def get_command(self, req, resp):
        sid = req.params["sid"]
        cmd = self.store.command(sid, req.params["cmd"])
        wait = req.q("wait")
        if wait == "true":
            while not cmd.wait(0.5):
                pass
            if cmd.killed_by_stop:
                self.store.running_session(sid)      # 410 / 422: the session went away
        send_json(resp, 200, {"command": cmd.to_json()})

    def kill_command(self, req, resp):
        cmd = self.store.command(req.params["sid"], req.params["cmd"])
        sig = _object(req).get("signal", signal.SIGTERM)
        if isinstance(sig, bool) or not isinstance(sig, int) or not 1 <= sig <= 64:
            raise bad_request("Invalid request: `signal` should be a signal number.")
        # a command that has already exited: nothing to signal; answered with its state
        cmd.kill(sig)
        send_json(resp, 200, {"command": cmd.to_json()})

    def command_logs(self, req, resp):
        """The whole output so far, then more as it comes, until the command has exited."""
        cmd = self.store.command(req.params["sid"], req.params["cmd"])
        resp.start(200, [("Content-Type", NDJSON), ("Cache-Control", "no-cache")], None)
        for stream, text in cmd.log.follow():
            resp.write(ndjson_line({"stream": stream, "data": text}))
        cmd.wait()
        if cmd.killed_by_stop:
            resp.write(ndjson_line(STREAM_STOPPED))
        resp.end()

    # -- files
    # The file API runs as the sandbox's default user (CONTRACT.md §6, §7), not as the server's
    # root: its permission bits are checked as the kernel would check them for that user.
    def _may(self, st, want):
        uid, gid = self.runtime.default_ids()
        if uid == 0:
            return True
        if st.st_uid == uid:
            bits = st.st_mode >> 6
        elif st.st_gid == gid:
            bits = st.st_mode >> 3
        else:
            bits = st.st_mode
        return bits & want == want

    def _denied(self, view, r, what, path, create):
        """Whether the default user may not reach r (search on every directory above it), and,
        with create, not make or replace it: write on the directory it goes in (or the deepest
        one that exists, when the rest is made), and, in a sticky directory, own it or the
        directory. Else may read it (a file that exists)."""
        parts = [c for c in r.view.split("/") if c]
        deepest = None
        for i in range(len(parts)):
            host = view.to_host("/" + "/".join(parts[:i]))[0]
            try:
                st = os.stat(host)
            except OSError:
                break                      # the rest is made below it
            deepest = st
            if not self._may(st, 1):
                return True
        if deepest is None:
            return False
        try:
            target = os.lstat(r.host)
        except OSError:
            target = None
        if not create:
            return target is not None and not self._may(target, 4)
        if not self._may(deepest, 3):
            return True
        uid = self.runtime.default_ids()[0]
        if target is not None and deepest.st_mode & stat.S_ISVTX and \
                uid not in (target.st_uid, deepest.st_uid):
            return True
        return False

    def _forbid(self, what, path):
        raise VercelError(403, "forbidden", "Cannot %s %s: %s" % (what, path, os.strerror(errno.EACCES)))

    def _session_view(self, sid):
        s = self.store.running_session(sid)
        return s, self.runtime.view(s["sourceSandboxName"])

    def _path(self, session, body):
        path = body.get("path")
        if not isinstance(path, str) or not path:
            raise bad_request("Invalid request: `path` should be a non-empty string.")
        cwd = body.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise bad_request("Invalid request: `cwd` should be a string.")
        return posixpath.join(cwd or session["cwd"], path)

    def fs_read(self, req, resp):
        body = _object(req)
        s, view = self._session_view(req.params["sid"])
        path = self._path(s, body)
        try:
            r = view.resolve(path)
            if self._denied(view, r, "read", path, False):
                self._forbid("read", path)
            # O_NONBLOCK: opening a fifo must not wait for a writer (it is refused below)
            f = os.fdopen(os.open(r.host, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb")
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                raise not_found("File not found: %s" % path)
            raise bad_request("Cannot read %s: %s" % (path, os.strerror(e.errno)))
        with f:
            st = os.fstat(f.fileno())
            if stat.S_ISDIR(st.st_mode):
                raise bad_request("Cannot read %s: it is a directory" % path)
            if not stat.S_ISREG(st.st_mode):
                # a fifo or device could block or never end: only regular files are served
                raise bad_request("Cannot read %s: not a regular file" % path)
            size = st.st_size
            headers = [("Content-Type", "application/octet-stream"),
                       ("Content-Disposition", _disposition(posixpath.basename(path)))]
            resp.start(200, headers, size)
            resp.sendfile(f, 0, size)
            resp.end()

    def fs_write(self, req, resp):
        sid = req.params["sid"]
        s, view = self._session_view(sid)
        length = req.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) > MAX_UPLOAD:
            raise VercelError(413, "payload_too_large", "The archive is too large.")
        xcwd = req.headers.get("x-cwd") or s["cwd"]
        if not xcwd.startswith("/"):
            xcwd = posixpath.join(s["cwd"], xcwd)
        # Decompressed to a file and mapped, not held in memory: no size limit is documented
        # (CONTRACT.md §6), and a file of gigabytes must go through as on Vercel.
        with tempfile.TemporaryFile(dir=self.runtime.data_dir, prefix=".fs-write-") as spool:
            try:
                size = tarball.gunzip_to(req.read, spool)
            except tarball.TarError as e:
                raise bad_request("Invalid request: %s" % e)
            if size == 0:
                self._extract(view, xcwd, memoryview(b""))
            else:
                spool.flush()
                with mmap.mmap(spool.fileno(), size, access=mmap.ACCESS_READ) as m:
                    raw = memoryview(m)
                    try:
                        self._extract(view, xcwd, raw)
                    finally:
                        raw.release()
        send_json(resp, 200, {})

    def _extract(self, view, xcwd, raw):
        entries, why = [], None
        try:
            entries = tarball.parse_tar(raw)
            targets = [(tarball.target_path(xcwd, e.name), e) for e in entries]
        except tarball.TarError as e:
            why = str(e)
        if why is not None:
            # raised here, not in the handler: its traceback would keep parse_tar's views of
            # the mapping alive, and the mapping could not close
            raise bad_request("Invalid request: %s" % why)
        try:
            self._extract_entries(view, targets)
        finally:
            for e in entries:               # views of the mapping: released before it closes
                if isinstance(e.data, memoryview):
                    e.data.release()

    def _extract_entries(self, view, targets):
        # every target is checked before anything is written: a bad entry writes nothing
        plan = []
        for path, e in targets:
            try:
                r = view.resolve(path, follow=False, missing="any")
            except OSError as err:
                raise bad_request("Cannot write %s: %s" % (path, os.strerror(err.errno)))
            if not r.writable or r.mount_root:
                raise VercelError(403, "forbidden", "Cannot write %s: read-only file system"
                                  % path)
            if self._denied(view, r, "write", path, True):
                self._forbid("write", path)
            plan.append((r.host, path, e))
        for host, path, e in plan:
            try:
                self._write_entry(host, e)
            except OSError as err:
                raise bad_request("Cannot write %s: %s" % (path, os.strerror(err.errno)))

    def _makedirs(self, host_dir):
        """mkdir -p, the new directories owned by the default user."""
        missing = []
        d = host_dir
        while not os.path.lexists(d):
            missing.append(d)
            d = os.path.dirname(d)
        for d in reversed(missing):
            os.mkdir(d, 0o755)
            self.runtime.chown_default(d)

    def _write_entry(self, host, e):
        self._makedirs(os.path.dirname(host))
        if e.kind == "dir":
            if not os.path.isdir(host):
                os.mkdir(host, e.mode or 0o755)
                self.runtime.chown_default(host)
            return
        # whole-file replace: the new content under a temporary name, then one rename
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(host), prefix=".vercel-local-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(e.data)
            os.chmod(tmp, e.mode)
            self.runtime.chown_default(tmp)
            if os.path.isdir(host) and not os.path.islink(host):
                raise OSError(errno.EISDIR, os.strerror(errno.EISDIR))
            os.rename(tmp, host)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def fs_mkdir(self, req, resp):
        body = _object(req)
        s, view = self._session_view(req.params["sid"])
        path = self._path(s, body)
        recursive = body.get("recursive", False)
        if not isinstance(recursive, bool):
            raise bad_request("Invalid request: `recursive` should be boolean.")
        try:
            r = view.resolve(path, follow=False, missing="any" if recursive else "last")
            if not r.writable:
                raise OSError(errno.EROFS, os.strerror(errno.EROFS))
            if not os.path.lexists(r.host) and self._denied(view, r, "create directory", path, True):
                self._forbid("create directory", path)
            if os.path.lexists(r.host):
                if recursive and os.path.isdir(r.host):
                    send_json(resp, 200, {})
                    return
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
            if recursive:
                self._makedirs(r.host)
            else:
                os.mkdir(r.host, 0o755)
                self.runtime.chown_default(r.host)
        except OSError as e:
            raise bad_request("Cannot create directory %s: %s" % (path, os.strerror(e.errno)))
        send_json(resp, 200, {})

