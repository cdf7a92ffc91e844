"""The toolbox API at /toolbox/{id}/...: files, processes, sessions (CONTRACT sections 1.2, 3, 4, 6).

Each handler works in the sandbox's view (runtime.View): paths are resolved inside the sandbox,
so a symlink never leads out of it, and writes outside /home, /tmp, /var and /run fail with
EROFS like a read-only root would. The daemon's quirks are reproduced on purpose: fs errors are
bare status codes with empty bodies, process and session errors are JSON ErrorResponses, and the
session output format depends on X-Daytona-SDK-Version.
"""

import datetime
import errno
import json
import mimetypes
import os
import posixpath
import pwd
import grp
import re
import secrets
import shutil
import stat
import threading
import time

from . import multipart
from .httpcore import BadJSON, ClientGone
from .runtime import (HOME, STDERR_PREFIX, STDOUT_PREFIX, SessionError, go_string, os_error,
                      _go_errstr)

DAEMON_VERSION = "v0.190.0"
BULK_BOUNDARY = "DAYTONA-FILE-BOUNDARY"
SERVABLE_STATES = ("started", "snapshotting", "resizing")   # the container is running
ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CHUNK = 1 << 20
MAX_LINE = 64 * 1024            # bufio.Scanner's default maximum token size (find)
# find/search do not descend into the host's kernel filesystems (a container masks most of
# them; /proc/kcore alone would be "searched" for terabytes)
PSEUDO_FS = ("/proc", "/sys", "/dev")


# =============================================================================================
# errors


class Bare(Exception):
    """A bare status code with an empty body (the fs handlers' AbortWithError)."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


class JSONError(Exception):
    """A Go ErrorResponse: {"statusCode","message","code","timestamp","path","method"}."""

    CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
             408: "REQUEST_TIMEOUT", 409: "CONFLICT", 410: "GONE", 422: "UNPROCESSABLE_ENTITY",
             500: "INTERNAL_SERVER_ERROR"}

    def __init__(self, status, message, code=None):
        super().__init__(message)
        self.status, self.message = status, message
        self.code = code or self.CODES.get(status, "INTERNAL_SERVER_ERROR")


def fs_status(e):
    """The daemon's mapping: ENOENT 404, EACCES/EPERM 403, anything else 400."""
    if e.errno == errno.ENOENT:
        return 404
    if e.errno in (errno.EACCES, errno.EPERM):
        return 403
    return 400


def go_now():
    return go_rfc3339(time.time_ns())


def error_body(status, message, code, path, method):
    return {"statusCode": status, "message": message, "code": code, "timestamp": go_now(),
            "path": path, "method": method}


# =============================================================================================
# Go formatting: FileMode.String(), time.Time.String(), RFC 3339 nano


def go_mode_string(st_mode):
    bits = ""
    fmt = stat.S_IFMT(st_mode)
    # Go's order "dalTLDpSugct?": d, (a, l, T unused), L, D, p, S, u, g, c, t
    if fmt == stat.S_IFDIR:
        bits += "d"
    if fmt == stat.S_IFLNK:
        bits += "L"
    if fmt in (stat.S_IFBLK, stat.S_IFCHR):
        bits += "D"
    if fmt == stat.S_IFIFO:
        bits += "p"
    if fmt == stat.S_IFSOCK:
        bits += "S"
    if st_mode & stat.S_ISUID:
        bits += "u"
    if st_mode & stat.S_ISGID:
        bits += "g"
    if fmt == stat.S_IFCHR:
        bits += "c"
    if st_mode & stat.S_ISVTX:
        bits += "t"
    out = bits or "-"
    for i, c in enumerate("rwxrwxrwx"):
        out += c if st_mode & (1 << (8 - i)) else "-"
    return out


_EPOCH = datetime.datetime(1970, 1, 1)


def _split_ns(ns):
    sec, frac = divmod(ns, 1_000_000_000)
    return _EPOCH + datetime.timedelta(seconds=sec), frac


def _frac(frac):
    s = ("%09d" % frac).rstrip("0")
    return "." + s if s else ""


def go_time_string(ns):
    """Go time.Time.String() of a UTC time: '2026-06-23 13:33:38.5 +0000 UTC'."""
    dt, frac = _split_ns(ns)
    return dt.strftime("%Y-%m-%d %H:%M:%S") + _frac(frac) + " +0000 UTC"


def go_rfc3339(ns):
    """Go's time.Time JSON (RFC 3339 nano, trailing zeros trimmed): '2026-06-23T13:33:38.5Z'."""
    dt, frac = _split_ns(ns)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + _frac(frac) + "Z"


def go_basename(name):
    """Go's os.basename (the Name() of os.Stat(name))."""
    while len(name) > 1 and name.endswith("/"):
        name = name[:-1]
    i = name.rfind("/")
    return name[i + 1:] if i >= 0 and len(name) > 1 else name


def go_clean(p):
    """path.Clean: like normpath but a leading '//' becomes '/'."""
    if p == "":
        return "."
    c = posixpath.normpath(p)
    if c.startswith("//"):
        c = "/" + c.lstrip("/")
    return c


def file_info(name, st):
    return {"name": name, "size": st.st_size, "mode": go_mode_string(st.st_mode),
            "modTime": go_time_string(st.st_mtime_ns), "modifiedAt": go_rfc3339(st.st_mtime_ns),
            "isDir": stat.S_ISDIR(st.st_mode), "owner": str(st.st_uid),
            "group": str(st.st_gid), "permissions": "%04o" % (st.st_mode & 0o777)}


# =============================================================================================
# HTTP dates, Range, conditional requests (net/http ServeContent semantics)


def http_date(ts):
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(ts))


def parse_http_date(s):
    """Go's http.ParseTime: RFC 1123 (GMT), RFC 850, ANSI C. Returns epoch seconds or None."""
    s = s.strip()
    for fmt in ("%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %d %H:%M:%S %Y",
                "%a %b  %d %H:%M:%S %Y"):
        try:
            t = time.strptime(s, fmt)
        except ValueError:
            continue
        return int(datetime.datetime(*t[:6], tzinfo=datetime.timezone.utc).timestamp())
    return None


class RangeError(Exception):
    def __init__(self, no_overlap):
        super().__init__("invalid range: failed to overlap" if no_overlap else "invalid range")
        self.no_overlap = no_overlap


def parse_range(header, size):
    """Go's net/http parseRange: a list of (start, length); [] for no usable range;
    RangeError for a malformed header or when no range overlaps the content."""
    if not header:
        return []
    if not header.startswith("bytes="):
        raise RangeError(False)
    ranges, no_overlap = [], False
    for ra in header[6:].split(","):
        ra = ra.strip(" \t")
        if not ra:
            continue
        start, sep, end = ra.partition("-")
        if not sep:
            raise RangeError(False)
        start, end = start.strip(" \t"), end.strip(" \t")
        if start == "":
            # suffix range: the last `end` bytes
            if end == "" or end[0] == "-" or not end.isdigit():
                raise RangeError(False)
            n = min(int(end), size)
            ranges.append((size - n, n))
            continue
        if not start.isdigit():
            raise RangeError(False)
        i = int(start)
        if i >= size:
            no_overlap = True       # this range starts past the end: ignore it
            continue
        if end == "":
            ranges.append((i, size - i))
            continue
        if not end.isdigit():
            raise RangeError(False)
        j = int(end)
        if i > j:
            raise RangeError(False)
        j = min(j, size - 1)
        ranges.append((i, j - i + 1))
    if no_overlap and not ranges:
        raise RangeError(True)
    return ranges


def _etag_list_has_star(value):
    return any(v.strip() == "*" for v in value.split(","))


def check_preconditions(get, method, mtime):
    """net/http checkPreconditions without ETags. Returns (status or None, range header)."""
    im = get("If-Match")
    if im is not None and im.strip():
        cond = _etag_list_has_star(im)          # we never send an ETag: only "*" matches
    else:
        cond = None
        ius = get("If-Unmodified-Since")
        if ius and mtime:
            t = parse_http_date(ius)
            if t is not None:
                cond = int(mtime) <= t
    if cond is False:
        return 412, ""
    inm = get("If-None-Match")
    if inm is not None and inm.strip():
        if _etag_list_has_star(inm):
            return (304 if method in ("GET", "HEAD") else 412), ""
    else:
        ims = get("If-Modified-Since")
        if ims and mtime and method in ("GET", "HEAD"):
            t = parse_http_date(ims)
            if t is not None and int(mtime) <= t:
                return 304, ""
    rng = get("Range") or ""
    if rng and method in ("GET", "HEAD"):
        ir = get("If-Range")
        if ir:
            irs = ir.strip()
            if irs.startswith('"') or irs.startswith("W/"):
                rng = ""                         # an ETag: never ours
            else:
                t = parse_http_date(irs)
                if t is None or not mtime or t != int(mtime):
                    rng = ""
    return None, rng


# =============================================================================================
# content types (Go's mime.TypeByExtension: built-in table first)

_GO_MIME = {
    ".avif": "image/avif", ".css": "text/css; charset=utf-8", ".gif": "image/gif",
    ".htm": "text/html; charset=utf-8", ".html": "text/html; charset=utf-8",
    ".jpeg": "image/jpeg", ".jpg": "image/jpeg", ".js": "text/javascript; charset=utf-8",
    ".json": "application/json", ".mjs": "text/javascript; charset=utf-8",
    ".pdf": "application/pdf", ".png": "image/png", ".svg": "image/svg+xml",
    ".wasm": "application/wasm", ".webp": "image/webp", ".xml": "text/xml; charset=utf-8",
}


def mime_by_ext(path):
    ext = posixpath.splitext(path)[1]
    if not ext:
        return "application/octet-stream"
    t = _GO_MIME.get(ext.lower())
    if t:
        return t
    t = mimetypes.types_map.get(ext) or mimetypes.types_map.get(ext.lower())
    if not t:
        return "application/octet-stream"
    if t.startswith("text/") and "charset" not in t:
        t += "; charset=utf-8"
    return t


# =============================================================================================
# Go's filepath.Match


def go_match_regex(pattern):
    """Translate a Go filepath.Match pattern to a regex; ValueError for a bad pattern."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "\\":
            i += 1
            if i >= n:
                raise ValueError("bad pattern")
            out.append(re.escape(pattern[i]))
        elif c == "[":
            i += 1
            neg = i < n and pattern[i] == "^"
            if neg:
                i += 1
            items, first = [], True
            while True:
                if i >= n:
                    raise ValueError("bad pattern")
                if pattern[i] == "]" and not first:
                    break
                first = False
                lo = pattern[i]
                if lo == "\\":
                    i += 1
                    if i >= n:
                        raise ValueError("bad pattern")
                    lo = pattern[i]
                elif lo in "-]":
                    raise ValueError("bad pattern")
                i += 1
                hi = lo
                if i < n and pattern[i] == "-":
                    i += 1
                    if i >= n or pattern[i] == "]":
                        raise ValueError("bad pattern")
                    hi = pattern[i]
                    if hi == "\\":
                        i += 1
                        if i >= n:
                            raise ValueError("bad pattern")
                        hi = pattern[i]
                    i += 1
                items.append(re.escape(lo) + ("-" + re.escape(hi) if hi != lo else ""))
            out.append(("[^/" if neg else "[") + "".join(items) + "]")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z", re.S)


# =============================================================================================
# session output formats (CONTRACT 4.3)


def _version_tuple(v):
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", v.strip())
    return tuple(int(x) for x in m.groups()) if m else None


def output_mode(version, split_header):
    """'combined' (markers stripped), 'raw' (markers kept, text) or 'json' (markers kept,
    plus demultiplexed stdout/stderr)."""
    if not version:
        return "raw" if (split_header or "").strip() == "true" else "combined"
    if "dev" in version:
        return "json"
    t = _version_tuple(version)
    if t is None:
        return "raw"
    if t < (0, 27, 0):
        return "combined"
    if t < (0, 167, 0):
        return "raw"
    return "json"


def strip_markers(data):
    return data.replace(STDOUT_PREFIX, b"").replace(STDERR_PREFIX, b"")


def demux(data):
    """Split a labelled log into (stdout, stderr): bytes after a marker belong to its stream."""
    out, err = bytearray(), bytearray()
    cur = out
    i, n = 0, len(data)
    while i < n:
        j1 = data.find(STDOUT_PREFIX, i)
        j2 = data.find(STDERR_PREFIX, i)
        js = [j for j in (j1, j2) if j >= 0]
        if not js:
            cur += data[i:]
            break
        j = min(js)
        cur += data[i:j]
        cur = out if j == j1 else err
        i = j + 3
    return bytes(out), bytes(err)


class MarkerStripper:
    """Strips markers from a stream whose chunks may split a marker, scanning left to right
    with a carry-over like the daemon's processLogChunkWithPrefixFiltering."""

    def __init__(self):
        self.carry = b""

    def feed(self, chunk):
        buf = self.carry + bytes(chunk)
        self.carry = b""
        out = bytearray()
        i, n = 0, len(buf)
        while i < n:
            cands = [j for j in (buf.find(b"\x01", i), buf.find(b"\x02", i)) if j >= 0]
            if not cands:
                out += buf[i:]
                break
            j = min(cands)
            out += buf[i:j]
            i = j
            if n - i < 3:
                rest = buf[i:]
                if STDOUT_PREFIX.startswith(rest) or STDERR_PREFIX.startswith(rest):
                    self.carry = rest          # maybe the start of a marker: decide later
                else:
                    out += rest
                break
            if buf[i:i + 3] in (STDOUT_PREFIX, STDERR_PREFIX):
                i += 3
            else:
                out.append(buf[i])
                i += 1
        return bytes(out)

    def flush(self):
        c, self.carry = self.carry, b""
        return c


class WSFramer:
    """Cuts the log stream into WebSocket frames of at most 1024 bytes, like the daemon. One
    deviation: a frame never ENDS with a complete marker (it is held back for the next frame),
    because the official TS SDK's demultiplexer (0.218) misroutes the next line in that case.
    Markers split across frames still happen and still need carry-over in clients."""

    SIZE = 1024

    def __init__(self):
        self.pending = b""

    def feed(self, data, final=False):
        buf = self.pending + bytes(data)
        frames = []
        while buf:
            frame = buf[:self.SIZE]
            if frame[-3:] in (STDOUT_PREFIX, STDERR_PREFIX) and not (final and
                                                                     len(buf) <= self.SIZE):
                if len(frame) == 3:
                    break                  # only a marker: wait for the line after it
                frame = frame[:-3]
            frames.append(frame)
            buf = buf[len(frame):]
        self.pending = buf
        return frames


# =============================================================================================
# the toolbox


class Toolbox:
    def __init__(self, store, runtime, multipart_mode="go"):
        self.store = store
        self.rt = runtime
        self.multipart_mode = multipart_mode     # "go": Go's header parsing; "lenient"

    # -- plumbing ----------------------------------------------------------------------------
    def wrap(self, fn):
        def handler(req, resp):
            sid = req.params.get("id", "")
            prefix = "/toolbox/" + sid
            dpath = req.path[len(prefix):] if req.path.startswith(prefix) else req.path
            dpath = dpath or "/"
            rec = self.store.get(sid) if sid else None
            if rec is None or rec.get("id") != sid or rec.get("state") == "destroyed":
                resp.send_json(401, error_body(
                    401, "unauthorized: authentication failed: Bearer token is invalid",
                    "UNAUTHORIZED", req.path, req.method))
                return
            if (req.headers.get("X-Daytona-Skip-Last-Activity-Update") or "").strip().lower() \
                    != "true":
                touch = getattr(self.store, "touch_activity", None) or \
                    getattr(self.store, "touch", None)
                if touch is not None:
                    touch(sid)
            state = rec.get("state")
            if state not in SERVABLE_STATES:
                if state == "archived":
                    msg = ("bad request: failed to get runner info: sandbox %s has no runner "
                           "assigned (state archived)" % sid)
                else:
                    msg = ("bad request: failed to resolve container IP after 3 attempts: no IP "
                           "address found. Is the Sandbox started?")
                resp.send_json(400, error_body(400, msg, "BAD_REQUEST", req.path, req.method))
                return
            if self.store.runner_cache_left(rec):
                # the runner's answer for a container it does not have (runner proxy.go)
                self._drain(req)
                resp.send_json(404, error_body(
                    404, "not found: sandbox container not found: Error response from daemon: "
                    "No such container: %s" % sid, "NOT_FOUND",
                    "/sandboxes/%s/toolbox%s" % (sid, dpath), req.method))
                return
            if not self.rt.exists(sid):
                self.rt.create(sid, rec.get("env") or {})
            ctx = Ctx(sid, rec, dpath, self.rt.view(sid))
            try:
                fn(req, resp, ctx)
            except Bare as e:
                self._bare(req, resp, e.status)
            except OSError as e:
                if isinstance(e, ClientGone):
                    raise
                self._bare(req, resp, fs_status(e))
            except JSONError as e:
                if resp.sent:
                    raise
                self._drain(req)
                resp.send_json(e.status, error_body(e.status, e.message, e.code, dpath,
                                                    req.method))
            except SessionError as e:
                if resp.sent:
                    raise
                resp.send_json(e.status, error_body(e.status, e.message,
                                                    JSONError.CODES.get(e.status), dpath,
                                                    req.method))
        return handler

    @staticmethod
    def _drain(req):
        try:
            if not req.body_done:
                req.drain()
        except Exception:
            pass

    def _bare(self, req, resp, status):
        if resp.sent:
            raise ClientGone("error after the response started")
        self._drain(req)
        resp.send(status, b"")

    def routes(self):
        r = [
            ("GET", "/files", self.list_files), ("GET", "/files/", self.list_files),
            ("DELETE", "/files", self.delete_file), ("DELETE", "/files/", self.delete_file),
            ("GET", "/files/info", self.file_info),
            ("GET", "/files/download", self.download),
            ("POST", "/files/bulk-download", self.bulk_download),
            ("POST", "/files/upload", self.upload),
            ("POST", "/files/bulk-upload", self.bulk_upload),
            ("POST", "/files/folder", self.create_folder),
            ("POST", "/files/move", self.move),
            ("POST", "/files/permissions", self.permissions),
            ("GET", "/files/find", self.find),
            ("GET", "/files/search", self.search),
            ("POST", "/files/replace", self.replace),
            ("POST", "/process/execute", self.execute),
            ("POST", "/process/session", self.session_create),
            ("GET", "/process/session", self.session_list),
            ("GET", "/process/session/{sessionId}", self.session_get),
            ("DELETE", "/process/session/{sessionId}", self.session_delete),
            ("POST", "/process/session/{sessionId}/exec", self.session_exec),
            ("GET", "/process/session/{sessionId}/command/{commandId}", self.command_get),
            ("GET", "/process/session/{sessionId}/command/{commandId}/logs", self.command_logs),
            ("POST", "/process/session/{sessionId}/command/{commandId}/input",
             self.command_input),
            ("GET", "/work-dir", self.work_dir), ("GET", "/user-home-dir", self.work_dir),
            ("GET", "/project-dir", self.work_dir), ("GET", "/version", self.version),
        ]
        return r

    # -- files ---------------------------------------------------------------------------------
    def list_files(self, req, resp, ctx):
        path = req.q("path") or "."
        r = ctx.view.resolve(path)
        host_b = os.fsencode(r.host)
        names = sorted(os.listdir(host_b))          # Go's os.ReadDir: sorted by name bytes
        out = []
        for nb in names:
            try:
                _, st = ctx.view.resolve_entry(r, os.fsdecode(nb))
            except (OSError, ValueError):
                continue                             # stat failed (dangling link...): omitted
            out.append(file_info(go_string(nb), st))
        resp.send_json(200, out)

    def file_info(self, req, resp, ctx):
        path = req.q("path") or ""
        if not path:
            raise Bare(400)
        r = ctx.view.resolve(path)
        st = os.stat(r.host)
        resp.send_json(200, file_info(go_string(os.fsencode(go_basename(path))), st))

    def download(self, req, resp, ctx):
        path = req.q("path") or ""
        if not path:
            raise Bare(400)
        r = ctx.view.resolve(go_clean(ctx.view.absolute(path)))
        st = os.stat(r.host)
        if stat.S_ISDIR(st.st_mode):
            raise Bare(400)
        fd = os.open(r.host, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        try:
            st = os.fstat(fd)
            headers = [("Content-Description", "File Transfer"),
                       ("Content-Type", "application/octet-stream"),
                       ("Content-Disposition",
                        multipart.content_disposition("attachment", go_string(os.fsencode(
                            posixpath.basename(go_clean(ctx.view.absolute(path))))))),
                       ("Content-Transfer-Encoding", "binary"), ("Expires", "0"),
                       ("Cache-Control", "must-revalidate"), ("Pragma", "public")]
            serve_content(req, resp, fd, st.st_size, st.st_mtime, headers)
        finally:
            os.close(fd)

    def bulk_download(self, req, resp, ctx):
        try:
            body = req.json()
        except (BadJSON, ValueError, ClientGone):
            body = None
        paths = body.get("paths") if isinstance(body, dict) else None
        if not isinstance(paths, list) or not paths or \
                not all(isinstance(p, str) for p in paths):
            resp.send_json(400, {"error": 'request body must be {"paths": [ ... ]} and non-empty'})
            return
        resp.start(200, [("Content-Type", "multipart/form-data; boundary=" + BULK_BOUNDARY)], None)
        first = True
        for p in paths:
            fd, err = None, None
            try:
                if p == "":
                    raise os_error(errno.EINVAL, p)
                r = ctx.view.resolve(p)
                fd = os.open(r.host, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise os_error(errno.EISDIR, p)
                if stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                    raise os_error(errno.EINVAL, p)   # would block forever in the daemon
            except OSError as e:
                if fd is not None:
                    os.close(fd)
                    fd = None
                err = e
            if err is not None:
                status, code, msg = _bulk_error(err, p)
                resp.write(multipart.part_header(BULK_BOUNDARY, [
                    ("Content-Disposition", multipart.content_disposition("form-data", p, "error")),
                    ("Content-Type", "application/json; charset=utf-8")], first))
                resp.write(json.dumps(error_body(status, msg, code, p, "POST"),
                                      separators=(",", ":")).encode())
                first = False
                continue
            try:
                size = st.st_size if stat.S_ISREG(st.st_mode) else None
                hdrs = [("Content-Disposition", multipart.content_disposition("form-data", p, "file")),
                        ("Content-Type", mime_by_ext(p))]
                if size is not None:
                    hdrs.append(("Content-Length", str(size)))
                resp.write(multipart.part_header(BULK_BOUNDARY, hdrs, first))
                first = False
                if size is not None:
                    try:
                        resp.sendfile(fd, 0, size)
                    except ValueError:
                        # the file shrank under us: abort without the closing boundary, as the
                        # daemon does on a mid-stream failure
                        resp.conn.abort()
                        raise ClientGone("file changed during bulk download")
                else:
                    while True:
                        data = os.read(fd, CHUNK)
                        if not data:
                            break
                        resp.write(data)
            finally:
                os.close(fd)
        resp.write(multipart.closing(BULK_BOUNDARY))
        resp.end()

    def _write_part_to(self, part, fd):
        n = 0
        for chunk in part.chunks():
            view = memoryview(chunk)
            while view:
                k = os.write(fd, view)
                view = view[k:]
                n += k
        return n

    def upload(self, req, resp, ctx):
        path = req.q("path") or ""
        boundary = multipart.boundary_from_content_type(req.headers.get("Content-Type"))
        if not path or boundary is None:
            raise Bare(400)
        # gin parses the whole form before it writes anything, so a broken upload leaves the
        # destination untouched. We get the same guarantee without a second copy of the data:
        # the file part streams into an unnamed temporary file next to the destination, which
        # replaces the destination only once the whole body has been read.
        staged = None
        try:
            reader = multipart.MultipartReader(req.read, boundary)
            try:
                while True:
                    part = reader.next_part()
                    if part is None:
                        break
                    if part.name == "file" and part.filename is not None and staged is None:
                        staged = StagedFile(ctx.view, path)
                        self._write_part_to(part, staged.fd)
                    else:
                        part.skip()
            except (multipart.MultipartError, ClientGone):
                raise Bare(400)
            if staged is None:
                raise Bare(400)
            staged.commit()
        finally:
            if staged is not None:
                staged.close()
        resp.send(200, b"")

    def bulk_upload(self, req, resp, ctx):
        boundary = multipart.boundary_from_content_type(req.headers.get("Content-Type"))
        if boundary is None:
            self._drain(req)
            resp.send_json(400, {"errors": ["invalid multipart form"]})
            return
        reader = multipart.MultipartReader(req.read, boundary)
        paths, files, errors = {}, [], []
        seen_part = False
        try:
            while True:
                part = reader.next_part()
                if part is None:
                    break
                seen_part = True
                # the daemon's loop (upload_files.go): parts are told apart by the suffix of
                # FormName(), which is empty where Go's mime parser rejects the header; a part
                # with any other name is skipped
                name = part.go_name if self.multipart_mode == "go" else (part.name or "")
                if name.endswith(".path"):
                    idx = _upload_index(name)
                    dest = go_trim_space(part.read_all().decode("utf-8", "surrogateescape"))
                    if not dest:
                        errors.append("path[%s]: empty path" % idx)
                    else:
                        paths[idx] = dest
                    continue
                if not name.endswith(".file"):
                    part.skip()
                    continue
                idx = _upload_index(name)
                dest = paths.get(idx)
                if dest is None:
                    errors.append("file[%s]: missing .path metadata" % idx)
                    part.skip()
                    continue
                n, err = self._bulk_store(ctx, part, dest)
                if err:
                    errors.append(err)
                    part.skip()
                else:
                    files.append({"path": dest, "bytes": n})
        except (multipart.MultipartError, ClientGone) as e:
            if not seen_part:
                self._drain(req)
                resp.send_json(400, {"errors": ["invalid multipart form"]})
                return
            errors.append("reading part: %s" % e)
        # Go's nil slice: no file stored answers "files": null
        if errors:
            self._drain(req)
            resp.send_json(400, {"errors": errors, "files": files or None})
        else:
            resp.send_json(200, {"files": files or None})

    def _bulk_store(self, ctx, part, dest):
        """Write one bulk-upload part to dest: (bytes, None) or (0, error text)."""
        view = ctx.view
        try:
            mkdir_all(view, posixpath.dirname(go_clean(view.absolute(dest))), 0o755)
        except OSError as e:
            return 0, "%s: mkdir: %s" % (dest, _go_err(e, "mkdir", dest))
        try:
            r = view.resolve(dest)
            if not r.writable:
                raise os_error(errno.EROFS, dest)
            fd = os.open(r.host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC |
                         os.O_NOFOLLOW, 0o644)
        except OSError as e:
            return 0, "%s: create: %s" % (dest, _go_err(e, "open", dest))
        try:
            n = self._write_part_to(part, fd)
        except OSError as e:
            return 0, "%s: write: %s" % (dest, _go_err(e, "write", dest))
        finally:
            try:
                os.close(fd)
            except OSError as e:
                return 0, "%s: close: %s" % (dest, _go_err(e, "close", dest))
        return n, None

    def create_folder(self, req, resp, ctx):
        path = req.q("path") or ""
        if not path:
            raise Bare(400)
        mode = 0o755
        m = req.q("mode")
        if m:
            try:
                mode = int(m, 8) & 0o777
            except ValueError:
                raise Bare(400)
        mkdir_all(ctx.view, path, mode)
        resp.send(201, b"")

    def delete_file(self, req, resp, ctx):
        path = req.q("path") or ""
        if not path:
            raise Bare(400)
        target = ctx.view.resolve(path)                  # os.Stat follows the link
        st = os.stat(target.host)
        r = ctx.view.resolve(path, follow=False)          # ...but the link itself is removed
        recursive = req.q("recursive") == "true"
        if stat.S_ISDIR(st.st_mode) and not recursive:
            raise Bare(400)
        check_removable(r, path)
        if recursive and stat.S_ISDIR(os.lstat(r.host).st_mode):
            shutil.rmtree(r.host)
        else:
            try:
                os.unlink(r.host)
            except IsADirectoryError:
                os.rmdir(r.host)
        resp.send(204, b"")

    def move(self, req, resp, ctx):
        src, dst = req.q("source") or "", req.q("destination") or ""
        if not src or not dst:
            raise Bare(400)
        view = ctx.view
        src_abs, dst_abs = go_clean(view.absolute(src)), go_clean(view.absolute(dst))
        os.stat(view.resolve(src_abs).host)             # 404 for a missing source
        s = view.resolve(src_abs, follow=False)
        try:
            os.stat(view.resolve(dst_abs).host)
            raise Bare(409)                               # it never replaces
        except FileNotFoundError:
            pass
        os.stat(view.resolve(posixpath.dirname(dst_abs)).host)   # 404 for a missing parent
        d = view.resolve(dst_abs, follow=False)
        check_removable(s, src)
        check_removable(d, dst)
        try:
            os.rename(s.host, d.host)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            if stat.S_ISDIR(os.lstat(s.host).st_mode):
                shutil.copytree(s.host, d.host, symlinks=True)
            else:
                shutil.copy2(s.host, d.host, follow_symlinks=False)
            try:
                shutil.rmtree(s.host) if os.path.isdir(s.host) else os.unlink(s.host)
            except OSError as e2:
                resp.send_json(200, {"message": "file copied successfully but source could "
                                                "not be deleted", "error": str(e2)})
                return
        resp.send(200, b"")

    def permissions(self, req, resp, ctx):
        path = req.q("path") or ""
        if not path:
            raise Bare(400)
        r = ctx.view.resolve(path)
        os.stat(r.host)                                  # 404 for a missing path
        mode, owner, group = req.q("mode"), req.q("owner"), req.q("group")
        uid = gid = -1
        try:
            if mode:
                mode_v = int(mode, 8) & 0o777
            if owner:
                uid = int(owner) if owner.isdigit() else pwd.getpwnam(owner).pw_uid
            if group:
                gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except (ValueError, KeyError):
            raise Bare(400)
        try:
            if not r.writable:
                raise os_error(errno.EROFS, path)
            if mode:
                os.chmod(r.host, mode_v)
            if uid != -1 or gid != -1:
                os.chown(r.host, uid, gid)
        except OSError:
            raise Bare(400)                              # chmod/chown failures are 400
        resp.send(200, b"")

    def find(self, req, resp, ctx):
        path, pattern = req.q("path") or "", req.q("pattern") or ""
        if not path or not pattern:
            raise Bare(400)
        needle = pattern.encode("utf-8", "surrogateescape")
        out = []
        for vpath, host, st in walk(ctx.view, path):
            if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
                continue
            try:
                with open(host, "rb") as f:
                    if b"\0" in f.read(512):
                        continue
                    f.seek(0)
                    lineno = 0
                    while True:
                        # bounded reads: one huge line must not end up in memory
                        line = f.readline(MAX_LINE + 1)
                        if not line or (len(line) > MAX_LINE and not line.endswith(b"\n")):
                            break                      # EOF, or bufio.Scanner: token too long
                        lineno += 1
                        line = line[:-1] if line.endswith(b"\n") else line
                        if line.endswith(b"\r"):
                            line = line[:-1]
                        if needle in line:
                            out.append({"file": vpath, "line": lineno,
                                        "content": go_string(line)})
            except OSError:
                continue
        resp.send_json(200, out)

    def search(self, req, resp, ctx):
        path, pattern = req.q("path") or "", req.q("pattern") or ""
        if not path or not pattern:
            raise Bare(400)
        try:
            rx = go_match_regex(pattern)
        except ValueError:
            raise Bare(400)
        files = [v for v, _, _ in walk(ctx.view, path) if rx.match(posixpath.basename(v) or v)]
        resp.send_json(200, {"files": files})

    def replace(self, req, resp, ctx):
        try:
            body = req.json()
        except (BadJSON, ClientGone):
            raise Bare(400)
        if not isinstance(body, dict) or not isinstance(body.get("files"), list) or \
                not isinstance(body.get("pattern"), str) or not body.get("pattern") or \
                not isinstance(body.get("newValue"), str) or \
                not all(isinstance(f, str) for f in body["files"]):
            raise Bare(400)
        old = body["pattern"].encode("utf-8", "surrogateescape")
        new = body["newValue"].encode("utf-8", "surrogateescape")
        results = []
        for f in body["files"]:
            try:
                r = ctx.view.resolve(f)
                with open(r.host, "rb") as fh:
                    data = fh.read()
                if not r.writable:
                    raise os_error(errno.EROFS, f)
                fd = os.open(r.host, os.O_WRONLY | os.O_TRUNC | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    view = memoryview(data.replace(old, new))
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                results.append({"file": f, "success": True})
            except OSError as e:
                results.append({"file": f, "success": False, "error": _go_err(e, "open", f)})
        resp.send_json(200, results)

    # -- processes ---------------------------------------------------------------------------
    def execute(self, req, resp, ctx):
        daemon = _version_tuple(ctx.rec.get("daemonVersion") or DAEMON_VERSION) or (0, 190, 0)
        if daemon < (0, 156, 0):
            self._execute_without_shell(req, resp, ctx, daemon)
            return
        body = _json_body(req)
        cmd = body.get("command")
        if not isinstance(cmd, str) or not cmd.strip():
            raise JSONError(400, "bad request: invalid request body: command cannot be empty or "
                                 "whitespace-only")
        cwd, envs, timeout = body.get("cwd"), body.get("envs"), body.get("timeout")
        if cwd is not None and not isinstance(cwd, str):
            raise JSONError(400, "bad request: invalid request body: cwd must be a string")
        if daemon < (0, 167, 0):
            envs = None                 # ExecuteRequest had no envs field before v0.167.0
        if envs is not None:
            if not isinstance(envs, dict) or not all(isinstance(v, str) for v in envs.values()):
                raise JSONError(400, "bad request: invalid request body: envs must be an object "
                                     "of strings")
            for k in envs:
                if not ENV_KEY.match(k):
                    raise JSONError(400, "bad request: invalid environment variable name: %r" % k)
        _check_timeout(timeout)
        res = self.rt.execute(ctx.sid, ctx.rec.get("env") or {}, cmd, cwd or None, envs, timeout)
        if res.timed_out:
            raise JSONError(408, "request timeout: command execution timeout")
        resp.send_json(200, {"exitCode": res.exit_code, "result": go_string(res.output)})

    def _execute_without_shell(self, req, resp, ctx, daemon):
        """/process/execute of daemons before v0.156.0 (66d6f6c38^ execute.go): no shell; the
        text is split into words (quotes group, nothing else is special) and the first word is
        exec'd. Before v0.155.0 a request without timeout gets 360 s and a timeout is a bare
        408; before v0.113.0 the exit code is in "code" (FIDELITY 2.4, D4)."""
        try:
            body = req.json()
        except BadJSON:
            body = None
        cmd = body.get("command") if isinstance(body, dict) else None
        if not isinstance(cmd, str) or not cmd:
            raise Bare(400)                         # "command is required", no body
        argv = split_command_words(cmd)
        if not argv:
            raise Bare(400)                         # "empty command"
        timeout = body.get("timeout")
        _check_timeout(timeout)
        if not timeout and daemon < (0, 155, 0):
            timeout = 360
        cwd = body.get("cwd") if isinstance(body.get("cwd"), str) else None
        res = self.rt.execute(ctx.sid, ctx.rec.get("env") or {}, None, cwd or None, None,
                              timeout, argv=argv)
        if res.timed_out:
            if daemon < (0, 155, 0):
                raise Bare(408)
            raise JSONError(408, "request timeout: command execution timeout")
        field = "code" if daemon < (0, 113, 0) else "exitCode"
        resp.send_json(200, {field: res.exit_code, "result": go_string(res.output)})

    # -- sessions ----------------------------------------------------------------------------
    def _session(self, ctx, sid_name):
        s = self.rt.get_session(ctx.sid, sid_name)
        if s is None:
            raise JSONError(404, "not found: session not found")
        return s

    def session_create(self, req, resp, ctx):
        body = _json_body(req)
        name = body.get("sessionId")
        if not isinstance(name, str) or not name:
            raise JSONError(400, "bad request: invalid request body: sessionId is required")
        if name == "entrypoint":
            raise JSONError(400, "bad request: session ID 'entrypoint' is reserved")
        version = req.headers.get("X-Daytona-SDK-Version") or ""
        t = _version_tuple(version) if version else None
        legacy = t is not None and t < (0, 103, 0) and "dev" not in version
        self.rt.create_session(ctx.sid, name, ctx.rec.get("env") or {}, legacy)
        resp.send(201, b"")

    def session_list(self, req, resp, ctx):
        resp.send_json(200, [s.to_json() for s in self.rt.list_sessions(ctx.sid)])

    def session_get(self, req, resp, ctx):
        resp.send_json(200, self._session(ctx, req.params["sessionId"]).to_json())

    def session_delete(self, req, resp, ctx):
        if not self.rt.delete_session(ctx.sid, req.params["sessionId"]):
            raise JSONError(404, "not found: session not found")
        resp.send(204, b"")

    def session_exec(self, req, resp, ctx):
        try:
            body = req.json()
        except (BadJSON, ClientGone):
            raise Bare(400)
        if not isinstance(body, dict) or not isinstance(body.get("command"), str) or \
                not body["command"].strip():
            raise Bare(400)
        s = self.rt.get_session(ctx.sid, req.params["sessionId"])
        if s is None:
            resp.send_json(500, {"statusCode": 500, "message": "failed to execute command: not "
                                 "found: session not found", "timestamp": "0001-01-01T00:00:00Z",
                                 "path": ""})
            return
        is_async = bool(body.get("runAsync") or body.get("async"))
        cmd = s.submit(body["command"], is_async, bool(body.get("suppressInputEcho")))
        if is_async:
            resp.send_json(202, {"cmdId": cmd.id, "output": None, "stdout": None,
                                 "stderr": None, "exitCode": None})
            return
        cmd.exited.wait()
        if cmd.cancelled:
            raise JSONError(400, "bad request: session cancelled")
        wait_drained(cmd, idle=0.25)
        log = read_log(cmd)
        mode = output_mode(req.headers.get("X-Daytona-SDK-Version"),
                           req.headers.get("X-Daytona-Split-Output"))
        out = {"cmdId": cmd.id, "output": None, "exitCode": cmd.exit_code,
               "stdout": None, "stderr": None}
        if mode == "combined":
            out["output"] = go_string(strip_markers(log))
        else:
            out["output"] = go_string(log)
            if mode == "json":
                so, se = demux(log)
                out["stdout"], out["stderr"] = go_string(so), go_string(se)
        resp.send_json(200, out)

    def _command(self, ctx, req):
        s = self._session(ctx, req.params["sessionId"])
        cmd = s.get(req.params["commandId"])
        if cmd is None:
            raise JSONError(404, "not found: command not found")
        return s, cmd

    def command_get(self, req, resp, ctx):
        _, cmd = self._command(ctx, req)
        resp.send_json(200, cmd.to_json())

    def command_input(self, req, resp, ctx):
        s, cmd = self._command(ctx, req)
        try:
            body = req.json()
        except (BadJSON, ClientGone):
            raise Bare(400)
        if not isinstance(body, dict) or not isinstance(body.get("data"), str):
            raise Bare(400)
        s.send_input(cmd, body["data"])
        resp.send(204, b"")

    def command_logs(self, req, resp, ctx):
        s, cmd = self._command(ctx, req)
        follow = req.q("follow") == "true"
        h = req.headers
        if "websocket" in (h.get("Upgrade") or "").lower():
            self._logs_websocket(req, resp, s, cmd, follow)
            return
        if follow:
            # the runner's conversion: a chunked octet-stream, always combined
            resp.start(200, [("Content-Type", "application/octet-stream")], None)
            strip = MarkerStripper()
            for chunk in follow_log(s, cmd):
                data = strip.feed(chunk)
                if data:
                    resp.write(data)
            tail = strip.flush()
            if tail:
                resp.write(tail)
            resp.end()
            return
        log = read_log(cmd)
        mode = output_mode(h.get("X-Daytona-SDK-Version"), h.get("X-Daytona-Split-Output"))
        if mode == "json":
            so, se = demux(log)
            resp.send_json(200, {"output": go_string(log), "stdout": go_string(so),
                                 "stderr": go_string(se)})
        else:
            body = strip_markers(log) if mode == "combined" else log
            resp.send(200, body, [("Content-Type", "text/plain; charset=utf-8")])

    def _logs_websocket(self, req, resp, s, cmd, follow):
        h = req.headers
        version = h.get("X-Daytona-SDK-Version") or ""
        if not version:
            for proto in (h.get("Sec-WebSocket-Protocol") or "").split(","):
                proto = proto.strip()
                if proto.startswith("X-Daytona-SDK-Version~"):
                    version = proto.split("~", 1)[1]
        combined = output_mode(version, h.get("X-Daytona-Split-Output")) == "combined"
        ws = resp.upgrade_websocket()
        gone = threading.Event()

        def reader():          # notices the client's close; pings are answered by ws.recv()
            try:
                while ws.recv() is not None:
                    pass
            except Exception:
                pass
            gone.set()
        threading.Thread(target=reader, daemon=True).start()
        strip = MarkerStripper() if combined else None
        frames = WSFramer()
        try:
            source = follow_log(s, cmd, gone) if follow else [read_log(cmd)]
            for chunk in source:
                if strip is not None:
                    chunk = strip.feed(chunk)
                for frame in frames.feed(chunk):
                    ws.send_binary(frame)
            tail = (strip.flush() if strip is not None else b"")
            for frame in frames.feed(tail, final=True):
                ws.send_binary(frame)
            ws.close(1000)
        except (OSError, ClientGone):
            pass

    # -- misc --------------------------------------------------------------------------------
    def work_dir(self, req, resp, ctx):
        resp.send_json(200, {"dir": HOME})

    def version(self, req, resp, ctx):
        resp.send_json(200, {"version": ctx.rec.get("daemonVersion") or DAEMON_VERSION})


class Ctx:
    __slots__ = ("sid", "rec", "path", "view")

    def __init__(self, sid, rec, path, view):
        self.sid, self.rec, self.path, self.view = sid, rec, path, view


# =============================================================================================
# helpers


def _json_body(req):
    try:
        body = req.json()
    except BadJSON as e:
        raise JSONError(400, "bad request: invalid request body: %s" % e)
    if not isinstance(body, dict):
        raise JSONError(400, "bad request: invalid request body: expected a JSON object")
    return body


def _check_timeout(timeout):
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int)
                                or timeout < 0):
        raise JSONError(400, "bad request: invalid request body: timeout must be a "
                             "non-negative integer")


def split_command_words(command):
    """parseCommand of the old daemons: spaces split words outside quotes; a quote of either
    kind groups until the same quote and is dropped; tabs, newlines and backslashes are plain
    characters."""
    words, cur, quote = [], [], None
    for c in command:
        if c in "\"'":
            if quote is None:
                quote = c
            elif quote == c:
                quote = None
            else:
                cur.append(c)
        elif c == " " and quote is None:
            if cur:
                words.append("".join(cur))
                cur = []
        else:
            cur.append(c)
    if cur:
        words.append("".join(cur))
    return words


def _upload_index(field_name):
    """upload_files.go extractIndex: "files[7].path" -> "7"."""
    s = field_name[len("files["):] if field_name.startswith("files[") else field_name
    for suffix in ("].path", "].file"):
        if s.endswith(suffix):
            s = s[:-len(suffix)]
    return s


# Go's unicode.IsSpace (strings.TrimSpace); Python's str.strip() also strips \x1c-\x1f
GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006" \
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def go_trim_space(s):
    return s.strip(GO_SPACE)


def _go_err(e, op, path):
    """Go's *PathError text: 'open /x: no such file or directory'."""
    return "%s %s: %s" % (op, path, _go_errstr(e))


def _bulk_error(e, path):
    if e.errno == errno.ENOENT:
        return 404, "FILE_NOT_FOUND", "file not found: %s" % path
    if e.errno in (errno.EACCES, errno.EPERM):
        return 403, "FILE_ACCESS_DENIED", "file access denied: %s" % path
    if e.errno in (errno.EISDIR, errno.EINVAL, errno.ENOTDIR, errno.ELOOP, errno.ENAMETOOLONG):
        return 400, "INVALID_FILE_PATH", "invalid file path: %s" % path
    return 500, "FILE_READ_FAILED", "file read failed: %s: %s" % (path, _go_errstr(e))


def mkdir_all(view, path, mode):
    """os.MkdirAll inside the view: existing directories are fine, an existing non-directory
    is ENOTDIR, anything new must be on a writable mount."""
    r = view.resolve(path, missing="any")
    try:
        st = os.stat(r.host)
        if stat.S_ISDIR(st.st_mode):
            return
        raise os_error(errno.ENOTDIR, path)
    except FileNotFoundError:
        pass
    if not r.writable:
        raise os_error(errno.EROFS, path)
    # only the missing tail is created (plain names, no symlinks); unlike os.makedirs, every
    # new directory gets `mode`, as with Go's MkdirAll
    missing, h = [], r.host
    while not os.path.lexists(h):
        missing.append(h)
        h = os.path.dirname(h)
    for d in reversed(missing):
        try:
            os.mkdir(d, mode)
        except FileExistsError:
            if not os.path.isdir(d):
                raise


def check_removable(r, path):
    """A name can be removed or renamed only on a writable mount, and never a mount point."""
    if not r.writable:
        raise os_error(errno.EROFS, path)
    if r.mount_root:
        raise os_error(errno.EBUSY, path)


class StagedFile:
    """An upload in progress: an unnamed file in the destination's directory (O_TMPFILE), or a
    hidden named one where the filesystem lacks O_TMPFILE. commit() puts it in place of the
    destination with rename(2), keeping an existing file's mode and owner; a destination with
    several hard links is rewritten in place instead, so that all its names see the data."""

    def __init__(self, view, path):
        mkdir_all(view, posixpath.dirname(go_clean(view.absolute(path))), 0o750)
        r = view.resolve(path)                       # follows a link at the destination
        if not r.writable:
            raise os_error(errno.EROFS, path)
        try:
            if stat.S_ISDIR(os.stat(r.host).st_mode):
                raise os_error(errno.EISDIR, path)
        except FileNotFoundError:
            pass
        self.host = r.host
        self.dir = os.path.dirname(r.host)
        self.name = None
        try:
            self.fd = os.open(self.dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o666)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                raise
            self.name = os.path.join(self.dir, ".daytona-upload-" + secrets.token_hex(8))
            self.fd = os.open(self.name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                              0o666)

    def commit(self):
        try:
            st = os.stat(self.host)
        except FileNotFoundError:
            st = None
        if st is not None and st.st_nlink > 1:
            out = os.open(self.host, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW)
            try:
                copy_fd(self.fd, out, os.lseek(self.fd, 0, os.SEEK_END))
            finally:
                os.close(out)
            return
        if st is not None:
            os.fchmod(self.fd, stat.S_IMODE(st.st_mode))
            try:
                os.fchown(self.fd, st.st_uid, st.st_gid)
            except OSError:
                pass
        if self.name is None:
            name = os.path.join(self.dir, ".daytona-upload-" + secrets.token_hex(8))
            # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names an O_TMPFILE file; passing a
            # dir fd makes Python use linkat() rather than link(), which would not follow
            dfd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.link("/proc/self/fd/%d" % self.fd, name, src_dir_fd=dfd,
                        follow_symlinks=True)
            finally:
                os.close(dfd)
            self.name = name
        os.rename(self.name, self.host)
        self.name = None

    def close(self):
        os.close(self.fd)
        if self.name is not None:
            try:
                os.unlink(self.name)
            except OSError:
                pass


def copy_fd(src, dst, size):
    off = 0
    while off < size:
        try:
            n = os.copy_file_range(src, dst, size - off, off, off)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                raise
            n = 0
        if n == 0:
            # fall back to read/write from the same offset
            while off < size:
                data = os.pread(src, min(CHUNK, size - off), off)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    view = view[os.write(dst, view):]
                off += len(data)
            return
        off += n


def walk(view, root):
    """filepath.Walk inside the view: lstat-based (links are not followed), lexical order,
    unreadable directories skipped. Yields (view path as the client wrote it, host, stat)."""
    try:
        r = view.resolve(root, follow=False)
        st = os.lstat(r.host)
    except OSError:
        return
    top = go_clean(root)
    stack = [(top, r.view, st)]
    while stack:
        shown, vpath, st = stack.pop()
        host = view.to_host(vpath)[0]
        yield shown, host, st
        if not stat.S_ISDIR(st.st_mode) or vpath in PSEUDO_FS:
            continue
        try:
            names = sorted(os.listdir(os.fsencode(host)))
        except OSError:
            continue
        children = []
        for nb in names:
            name = os.fsdecode(nb)
            cv = (vpath.rstrip("/") or "") + "/" + name
            try:
                cst = os.lstat(view.to_host(cv)[0])
            except OSError:
                continue
            children.append((go_clean(shown + "/" + name), cv, cst))
        stack.extend(reversed(children))


def read_log(cmd):
    try:
        with open(cmd.log_path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def wait_drained(cmd, idle):
    """After the exit code: wait for the output streams to be fully labelled, or until no new
    output for `idle` seconds (a background process may hold them open forever)."""
    with cmd.cond:
        while not cmd.drained.is_set():
            quiet = time.monotonic() - cmd.last_data
            if quiet >= idle:
                return
            cmd.cond.wait(idle - quiet)


def follow_log(session, cmd, gone=None):
    """Yield the log file's bytes as they are written; end once the command has ended and its
    output is complete (or ~1 s without data after the exit, as the daemon does), or when the
    session is deleted or the client went away."""
    try:
        f = open(cmd.log_path, "rb")
    except FileNotFoundError:
        return
    with f:
        while True:
            data = f.read(65536)
            if data:
                yield data
                continue
            if gone is not None and gone.is_set():
                return
            if cmd.drained.is_set() or session.deleted:
                rest = f.read()
                if rest:
                    yield rest
                return
            with cmd.cond:
                if cmd.exit_code is not None and time.monotonic() - cmd.last_data >= 1.0:
                    rest = f.read()
                    if rest:
                        yield rest
                    return
                cmd.cond.wait(0.1)


def serve_content(req, resp, fd, size, mtime, headers):
    """http.ServeContent for an open regular file: conditional requests, Range (single and
    multipart/byteranges), Last-Modified, Accept-Ranges, streamed with sendfile."""
    headers = list(headers)
    if mtime and int(mtime) != 0:
        headers.append(("Last-Modified", http_date(mtime)))
    status, rng = check_preconditions(req.headers.get, req.method, mtime)
    if status == 304:
        hdrs = [(k, v) for k, v in headers if k.lower() not in ("content-type", "content-length")]
        resp.send(304, b"", hdrs)
        return
    if status == 412:
        resp.send(412, b"", headers)
        return
    try:
        ranges = parse_range(rng, size)
    except RangeError as e:
        hdrs = [(k, v) for k, v in headers if k.lower() not in
                ("cache-control", "content-encoding", "etag", "last-modified", "content-type")]
        hdrs += [("Content-Type", "text/plain; charset=utf-8"), ("X-Content-Type-Options", "nosniff")]
        if e.no_overlap:
            hdrs.append(("Content-Range", "bytes */%d" % size))
        resp.send(416, (str(e) + "\n").encode(), hdrs)
        return
    if sum(n for _, n in ranges) > size:
        ranges = []                    # more bytes than the file: ignore the Range header
    headers.append(("Accept-Ranges", "bytes"))
    try:
        if len(ranges) == 1:
            start, n = ranges[0]
            headers.append(("Content-Range", "bytes %d-%d/%d" % (start, start + n - 1, size)))
            resp.start(206, headers, n)
            resp.sendfile(fd, start, n)
        elif len(ranges) > 1:
            boundary = secrets.token_hex(30)
            ctype = next((v for k, v in headers if k.lower() == "content-type"),
                         "application/octet-stream")
            parts = []
            for i, (start, n) in enumerate(ranges):
                parts.append(multipart.part_header(boundary, [
                    ("Content-Range", "bytes %d-%d/%d" % (start, start + n - 1, size)),
                    ("Content-Type", ctype)], i == 0))
            tail = multipart.closing(boundary)
            total = sum(len(p) for p in parts) + sum(n for _, n in ranges) + len(tail)
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", "multipart/byteranges; boundary=" + boundary))
            resp.start(206, headers, total)
            for p, (start, n) in zip(parts, ranges):
                resp.write(p)
                resp.sendfile(fd, start, n)
            resp.write(tail)
        else:
            resp.start(200, headers, size)
            resp.sendfile(fd, 0, size)
    except ValueError:
        # the file got shorter while we sent it: the response is short, the line unusable
        resp.conn.abort()
        raise ClientGone("file changed during download")
    resp.end()


def register(server, store, runtime):
    tb = Toolbox(store, runtime, getattr(server.args, "multipart", "go"))
    for method, path, fn in tb.routes():
        server.route(method, "/toolbox/{id}" + path, tb.wrap(fn))
    return tb
