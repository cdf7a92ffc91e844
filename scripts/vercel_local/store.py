"""State of vercel-local: named sandboxes, their sessions, snapshots, and the lifecycle.

A sandbox's files live in the runtime's tree named after the sandbox; a session is one run of
it. Stopping a session kills its processes; a persistent sandbox keeps its tree for the next
session, a non-persistent one starts the next session from its source again (empty, or its
source snapshot). A session stops by itself when its timeout runs out (the background thread).

Timing knobs (PUT /_local/timing): transition_ms is how long a session stays `stopping` or
`snapshotting` (requests meanwhile get 422 sandbox_stopping / sandbox_snapshotting);
minute_ms scales session timeouts (a timeout of T ms lasts T * minute_ms / 60000 ms), so that
tests can see a timeout without waiting minutes.

Sandboxes and snapshots are saved in DATA/state.json; sessions too, but a session that was
running when the server went away is `stopped` at the next start (its processes are gone).
Commands live in memory only: once their session stops the API answers 410 for them anyway.
"""
import base64
import json
import os
import re
import threading
import time
import traceback

from .commands import new_id, now_ms

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
DEFAULT_TIMEOUT_MS = 300000
MAX_TIMEOUT_MS = 24 * 3600 * 1000          # Pro/Enterprise plans
DEFAULT_VCPUS = 2
MEMORY_PER_VCPU = 2048
DEFAULT_REGION = "iad1"
DEFAULT_IMAGE = "vercel/sandbox/universal"
DEFAULT_RUNTIME = "node24"
RUNTIMES = ("node26", "node24", "node22", "python3.13")
MAX_PORTS = 15
MAX_TAGS = 5
LIVE = "running"
STOPPED_STATES = ("stopped", "failed", "aborted")
SANDBOX_FIELDS = ("persistent", "region", "failoverRegions", "networkId", "vcpus", "memory",
                  "runtime", "image", "timeout", "networkPolicy", "tags", "snapshotExpiration",
                  "keepLastSnapshots", "mounts", "currentSnapshotId")


class VercelError(Exception):
    """An API error: HTTP status and the {"error": {"code", "message"}} body."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


def bad_request(message):
    return VercelError(400, "bad_request", message)


def not_found(message):
    return VercelError(404, "not_found", message)


def session_gone(session):
    """The error for a request to a session that is not running (None if it is)."""
    st = session["status"]
    if st == LIVE:
        return None
    if st == "stopping":
        return VercelError(422, "sandbox_stopping", "Sandbox is stopping and cannot accept "
                                                    "this request.")
    if st == "snapshotting":
        return VercelError(422, "sandbox_snapshotting", "Sandbox is being snapshotted and "
                                                        "cannot accept this request.")
    return VercelError(410, "sandbox_stopped", "Sandbox has stopped execution and is no longer "
                                               "available")


def encode_cursor(key):
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_cursor(text):
    try:
        return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError):
        raise bad_request("Invalid request: `cursor` is not a valid cursor.")


def sort_order(query):
    order = query.get("sortOrder") or "desc"
    if order not in ("asc", "desc"):
        raise bad_request("Invalid request: `sortOrder` must be one of asc, desc.")
    return order


def page_limit(query, default_limit=20, max_limit=100):
    limit = query.get("limit")
    if limit in (None, ""):
        return default_limit
    try:
        limit = int(limit)
    except ValueError:
        raise bad_request("Invalid request: `limit` must be a number.")
    if not 1 <= limit <= max_limit:
        raise bad_request("Invalid request: `limit` must be between 1 and %d." % max_limit)
    return limit


def paginate(items, key, query, default_limit=20, max_limit=100):
    """Keyset pagination: items sorted by key (then name/id), a page of `limit` after the
    cursor. Returns (page, {"count", "next"})."""
    order = sort_order(query)
    limit = page_limit(query, default_limit, max_limit)
    items = sorted(items, key=key, reverse=order == "desc")
    cursor = query.get("cursor")
    if cursor:
        after = decode_cursor(cursor)
        if order == "desc":
            items = [i for i in items if list(key(i)) < after]
        else:
            items = [i for i in items if list(key(i)) > after]
    page = items[:limit]
    nxt = encode_cursor(list(key(page[-1]))) if len(items) > limit else None
    return page, {"count": len(page), "next": nxt}


class Store:
    def __init__(self, data_dir, runtime, project_id, team_id, transition_ms=200,
                 minute_ms=60000):
        self.data_dir = data_dir
        self.runtime = runtime
        self.project_id = project_id
        self.team_id = team_id
        self.transition_ms = float(transition_ms)
        self.minute_ms = float(minute_ms)
        self.lock = threading.RLock()
        self._save_lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.sandboxes = {}         # name -> sandbox dict (API shape plus "env", "ports", ...)
        self.sessions = {}          # session id -> session dict (API shape)
        self.snapshots = {}         # snapshot id -> snapshot dict (API shape plus "sandbox")
        self.commands = {}          # session id -> {command id: Command}
        self._deadlines = {}        # session id -> monotonic time its timeout stops it
        self._errors = {}           # session id -> reason (set by /_local/sandbox/{id}/error)
        self._closing = False
        self._state_file = os.path.join(data_dir, "state.json")
        self._load()
        self._thread = None

    # -- persistence
    def _load(self):
        try:
            with open(self._state_file) as f:
                st = json.load(f)
        except (OSError, ValueError):
            return
        self.sandboxes = st.get("sandboxes", {})
        self.sessions = st.get("sessions", {})
        self.snapshots = st.get("snapshots", {})
        for s in self.sessions.values():
            if s["status"] not in STOPPED_STATES:
                self._mark_stopped(s, now_ms())
        for sb in self.sandboxes.values():
            self.runtime.set_user(sb["name"], sb.get("runtime") is not None)
            self._sync_status(sb)

    def save(self):
        """Write state.json whole (a temporary file, then a rename). Saves are serialised: two
        request threads must not write the temporary file at once."""
        with self._save_lock:
            with self.lock:
                text = json.dumps({"sandboxes": self.sandboxes, "sessions": self.sessions,
                                   "snapshots": self.snapshots})
            tmp = self._state_file + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self._state_file)

    def add_listener(self, fn):
        """The shared server base subscribes Daytona's event stream here; Vercel has none."""

    # -- knobs
    def set_timing(self, transition_ms=None, minute_ms=None):
        with self.lock:
            if transition_ms is not None:
                self.transition_ms = float(transition_ms)
            if minute_ms is not None:
                self.minute_ms = float(minute_ms)
                for sid in list(self._deadlines):
                    self._arm(self.sessions[sid])
            self.changed.notify_all()

    def _scaled(self, ms):
        return ms * self.minute_ms / 60000.0 / 1000.0

    def _arm(self, session):
        """(Re)compute when the session's timeout stops it, from its start and timeout."""
        left_ms = session["startedAt"] + session["timeout"] - now_ms()
        elapsed_ms = session["timeout"] - left_ms
        self._deadlines[session["id"]] = time.monotonic() + \
            self._scaled(session["timeout"]) - self._scaled(elapsed_ms)
        self.changed.notify_all()

    # -- lookups
    def check_project(self, project_id):
        if project_id is not None and project_id != self.project_id:
            raise not_found("Project not found")

    def sandbox(self, name):
        sb = self.sandboxes.get(name)
        if sb is None:
            raise not_found("Sandbox not found: %s" % name)
        return sb

    def session(self, sid):
        s = self.sessions.get(sid)
        if s is None:
            raise not_found("Session not found: %s" % sid)
        return s

    def running_session(self, sid):
        s = self.session(sid)
        err = session_gone(s)
        if err:
            raise err
        return s

    def routes(self, sb):
        out = []
        for port in sb.get("ports", []):
            sub = "sb-%s-%d" % (sb["name"].lower().replace("_", "-"), port)
            out.append({"url": "https://%s.vercel.run" % sub, "subdomain": sub, "port": port})
        return out

    @staticmethod
    def session_json(s):
        return {k: v for k, v in s.items() if not k.startswith("_")}

    def sandbox_json(self, sb):
        return {k: v for k, v in sb.items() if k not in ("env", "ports", "source", "projectId")}

    # -- sandboxes
    def create(self, body, legacy):
        """POST /v3/sandboxes (legacy=False) or /v2/sandboxes (with `runtime`)."""
        if not isinstance(body, dict):
            raise bad_request("Invalid request: body must be a JSON object.")
        self.check_project(body.get("projectId"))
        name = body.get("name")
        if name is None:
            name = new_id("sbx_", 16).lower()
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise bad_request("Invalid request: `name` should match pattern "
                              "\"^[a-zA-Z0-9_-]+$\" (at most 128 characters).")
        runtime = body.get("runtime")
        image = body.get("image")
        if runtime is not None and image is not None:
            raise bad_request("Invalid request: `runtime` and `image` cannot be used together.")
        if legacy:
            runtime = runtime or DEFAULT_RUNTIME
            if runtime not in RUNTIMES:
                raise bad_request("Invalid request: `runtime` should be one of %s."
                                  % ", ".join(RUNTIMES))
        elif runtime is not None:
            raise bad_request("Invalid request: `runtime` is only accepted by /v2/sandboxes.")
        ports = self._ports(body.get("ports", []))
        timeout = self._timeout(body.get("timeout", DEFAULT_TIMEOUT_MS), "timeout")
        vcpus = self._vcpus(body.get("resources"))
        tags = self._tags(body.get("tags"))
        env = body.get("env") or {}
        if not isinstance(env, dict) or not all(isinstance(v, str) for v in env.values()):
            raise bad_request("Invalid request: `env` should be an object of strings.")
        persistent = body.get("persistent", True)
        if not isinstance(persistent, bool):
            raise bad_request("Invalid request: `persistent` should be boolean.")
        region = body.get("region") or DEFAULT_REGION
        failover = body.get("failoverRegions")
        if failover is not None and region in failover:
            raise bad_request("failoverRegions must not include the sandbox region: " + region)
        source = body.get("source")
        snap_id = None
        if source is not None:
            if not isinstance(source, dict) or source.get("type") != "snapshot":
                raise bad_request("Invalid request: vercel-local only supports a `source` of "
                                  "type snapshot (no git or tarball downloads offline).")
            snap_id = source.get("snapshotId")
            with self.lock:
                snap = self.snapshots.get(snap_id)
                if snap is None or snap["status"] != "created":
                    raise VercelError(410, "snapshot_not_found",
                                      "Snapshot not found: %s" % snap_id)
        with self.lock:
            if name in self.sandboxes:
                raise VercelError(409, "conflict", "A sandbox named %s already exists" % name)
            t = now_ms()
            sb = {"name": name, "persistent": persistent, "region": region,
                  "vcpus": vcpus, "memory": vcpus * MEMORY_PER_VCPU, "timeout": timeout,
                  "createdAt": t, "updatedAt": t, "currentSessionId": "", "status": "pending",
                  "statusUpdatedAt": t, "cwd": "/vercel/sandbox", "tags": tags,
                  "networkPolicy": {"mode": "allow-all"}, "totalDurationMs": 0,
                  "env": env, "ports": ports, "projectId": self.project_id}
            if runtime is not None:
                sb["runtime"] = runtime
            else:
                sb["image"] = image or DEFAULT_IMAGE
            if failover is not None:
                sb["failoverRegions"] = failover
            for k in ("snapshotExpiration", "keepLastSnapshots", "mounts", "networkId"):
                if body.get(k) is not None:
                    sb[k] = body[k]
            if snap_id:
                sb["source"] = {"type": "snapshot", "snapshotId": snap_id}
                sb["currentSnapshotId"] = snap_id       # its next snapshot descends from it
                self.snapshots[snap_id]["lastUsedAt"] = t
            self.sandboxes[name] = sb
            # a leftover tree of an earlier sandbox of that name must not leak into this one
            self.runtime.destroy(name)
            self.runtime.set_user(name, runtime is not None)
            self.runtime.create(name, from_snapshot=snap_id)
            session = self._new_session(sb, snap_id)
        self.save()
        return sb, session

    def _ports(self, ports):
        if not isinstance(ports, list) or not all(isinstance(p, int) and not isinstance(p, bool)
                                                  for p in ports):
            raise bad_request("Invalid request: `ports` should be an array of integers.")
        if len(ports) > MAX_PORTS:
            raise bad_request("Invalid request: `ports` should NOT have more than %d items."
                              % MAX_PORTS)
        if any(not 1024 <= p <= 65535 for p in ports):
            raise bad_request("Invalid request: `ports` should be between 1024 and 65535.")
        return ports

    def _timeout(self, ms, field):
        if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms < 1000:
            raise bad_request("Invalid request: `%s` should be >= 1000." % field)
        if ms > MAX_TIMEOUT_MS:
            raise bad_request("Invalid request: `%s` should be <= %d." % (field, MAX_TIMEOUT_MS))
        return int(ms)

    def _vcpus(self, resources):
        if resources is None:
            return DEFAULT_VCPUS
        v = resources.get("vcpus", DEFAULT_VCPUS) if isinstance(resources, dict) else None
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (v > 1 and v % 2):
            raise bad_request("Invalid request: `resources.vcpus` should be 1 or an even number.")
        return v

    def _tags(self, tags):
        if tags is None:
            return {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise bad_request("Invalid request: `tags` should be an object of strings.")
        if len(tags) > MAX_TAGS:
            raise bad_request("Invalid request: `tags` should NOT have more than %d properties."
                              % MAX_TAGS)
        if any(len(v) > 256 for v in tags.values()):
            raise bad_request("Invalid request: tag values are at most 256 characters.")
        return tags

    def _new_session(self, sb, source_snapshot=None):
        """Start a session of sb (lock held): the tree is ready, processes none."""
        t = now_ms()
        sid = new_id("sbx_", 28)
        s = {"id": sid, "projectId": self.project_id, "sourceSandboxName": sb["name"],
             "memory": sb["memory"], "vcpus": sb["vcpus"], "region": sb["region"],
             "runtime": sb.get("runtime") or sb.get("image"), "timeout": sb["timeout"],
             "status": LIVE, "requestedAt": t, "startedAt": t, "createdAt": t,
             "cwd": "/vercel/sandbox", "updatedAt": t,
             "networkPolicy": sb.get("networkPolicy", {"mode": "allow-all"})}
        if source_snapshot:
            s["sourceSnapshotId"] = source_snapshot
        self.runtime.start(sb["name"])
        self.sessions[sid] = s
        self.commands[sid] = {}
        sb["currentSessionId"] = sid
        self._sync_status(sb)
        self._arm(s)
        return s

    def _sync_status(self, sb):
        s = self.sessions.get(sb["currentSessionId"])
        status = s["status"] if s else "stopped"
        if sb.get("status") != status:
            sb["status"] = status
            sb["statusUpdatedAt"] = now_ms()
        if s and status == LIVE:
            sb["expiresAt"] = s["startedAt"] + s["timeout"]
        else:
            sb.pop("expiresAt", None)

    def get(self, name, resume):
        """GET /v2/sandboxes/{name}[?resume=true]: (sandbox, session, resumed)."""
        with self.lock:
            sb = self.sandbox(name)
            s = self.sessions.get(sb["currentSessionId"])
            if not resume or (s is not None and s["status"] == LIVE):
                return sb, s, False
            # a session still stopping or snapshotting finishes that first
            deadline = time.monotonic() + self.transition_ms / 1000.0 + 30
            while s is not None and s["status"] not in STOPPED_STATES + (LIVE,):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise VercelError(422, "sandbox_stopping", "Sandbox is still stopping.")
                self.changed.wait(min(left, 0.05))
                s = self.sessions.get(sb["currentSessionId"])
            if s is not None and s["status"] == LIVE:
                return sb, s, False
            if not sb["persistent"]:
                # nothing kept: the next session starts as the sandbox was created
                src = (sb.get("source") or {}).get("snapshotId")
                if src and self.snapshots.get(src, {}).get("status") != "created":
                    raise VercelError(410, "snapshot_not_found", "Snapshot not found: %s" % src)
                self.runtime.destroy(sb["name"])
                self.runtime.create(sb["name"], from_snapshot=src)
            s = self._new_session(sb)
        self.save()
        return sb, s, True

    def update(self, name, body):
        if not isinstance(body, dict):
            raise bad_request("Invalid request: body must be a JSON object.")
        with self.lock:
            sb = self.sandbox(name)
            if "persistent" in body and body["persistent"] is not None:
                if not isinstance(body["persistent"], bool):
                    raise bad_request("Invalid request: `persistent` should be boolean.")
                sb["persistent"] = body["persistent"]
            if body.get("resources") is not None:
                v = self._vcpus(body["resources"])
                sb["vcpus"], sb["memory"] = v, v * MEMORY_PER_VCPU
            if body.get("timeout") is not None:
                sb["timeout"] = self._timeout(body["timeout"], "timeout")
            if body.get("ports") is not None:
                sb["ports"] = self._ports(body["ports"])
            if body.get("tags") is not None:
                sb["tags"] = self._tags(body["tags"])
            if body.get("currentSnapshotId") is not None:
                snap = self.snapshots.get(body["currentSnapshotId"])
                if snap is None or snap["status"] != "created":
                    raise not_found("Snapshot not found: %s" % body["currentSnapshotId"])
                sb["currentSnapshotId"] = snap["id"]
            for k in ("networkPolicy", "networkId", "snapshotExpiration", "keepLastSnapshots",
                      "region", "failoverRegions", "mounts"):
                if k in body and body[k] is not None:
                    sb[k] = body[k]
                elif k in body and k in ("networkId", "keepLastSnapshots"):
                    sb.pop(k, None)                 # null clears these
            sb["updatedAt"] = now_ms()
        self.save()
        return sb

    def delete(self, name, delete_orphan_snapshots=False):
        with self.lock:
            sb = self.sandbox(name)
            s = self.sessions.get(sb["currentSessionId"])
            if s is not None and s["status"] not in STOPPED_STATES:
                self._stop_now(s)
            del self.sandboxes[name]
            for sid in [k for k, v in self.sessions.items() if v["sourceSandboxName"] == name]:
                self.sessions.pop(sid)
                self.commands.pop(sid, None)
                self._deadlines.pop(sid, None)
            if delete_orphan_snapshots:
                for snap in self.snapshots.values():
                    if snap.get("sandbox") == name and snap["status"] == "created":
                        self._delete_snapshot(snap)
            self.runtime.destroy(name)
            sb["status"] = "stopped"
            sb.pop("expiresAt", None)
        self.save()
        return sb

    def list_sandboxes(self, query):
        self.check_project(query.get("project"))
        sort_by = query.get("sortBy") or "createdAt"
        if sort_by not in ("createdAt", "name", "statusUpdatedAt"):
            raise bad_request("Invalid request: `sortBy` must be one of createdAt, name, "
                              "statusUpdatedAt.")
        prefix = query.get("namePrefix")
        if prefix and sort_by != "name":
            raise bad_request("Invalid request: `namePrefix` requires `sortBy=name`.")
        status = query.get("status")
        if status and sort_by != "createdAt":
            raise bad_request("Invalid request: `status` requires `sortBy=createdAt`.")
        tags = query.get("tags")
        with self.lock:
            items = list(self.sandboxes.values())
        if prefix:
            items = [s for s in items if s["name"].startswith(prefix)]
        if status:
            items = [s for s in items if s["status"] == status]
        if tags:
            k, sep, v = tags.partition(":")
            if not sep:
                raise bad_request("Invalid request: `tags` must be key:value.")
            items = [s for s in items if s.get("tags", {}).get(k) == v]
        if sort_by == "name":
            key = lambda s: (s["name"],)                            # noqa: E731
        else:
            key = lambda s: (s.get(sort_by, 0), s["name"])          # noqa: E731
        return paginate(items, key, query)

    # -- sessions
    def list_sessions(self, query):
        self.check_project(query.get("project"))
        name = query.get("name")
        with self.lock:
            items = [s for s in self.sessions.values()
                     if not name or s["sourceSandboxName"] == name]
        return paginate(items, lambda s: (s["createdAt"], s["id"]), query)

    def extend(self, sid, duration):
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) \
                or duration < 1000:
            raise bad_request("Invalid request: `duration` should be >= 1000.")
        with self.lock:
            s = self.running_session(sid)
            if s["timeout"] + duration > MAX_TIMEOUT_MS:
                raise bad_request("Invalid request: the timeout cannot exceed %d ms in total."
                                  % MAX_TIMEOUT_MS)
            s["timeout"] += int(duration)
            s["updatedAt"] = now_ms()
            self._arm(s)
            self._sync_status(self.sandboxes[s["sourceSandboxName"]])
        self.save()
        return s

    def set_network_policy(self, sid, policy):
        if not isinstance(policy, dict):
            raise bad_request("Invalid request: body must be a JSON object.")
        with self.lock:
            s = self.running_session(sid)
            mode = policy.get("mode")
            if mode in ("allow-all", "deny-all"):
                s["networkPolicy"] = {"mode": mode}
            else:
                allowed = policy.get("allow")
                s["networkPolicy"] = {"mode": "custom"}
                if isinstance(allowed, list):
                    s["networkPolicy"]["allowedDomains"] = allowed
                elif isinstance(allowed, dict):
                    s["networkPolicy"]["allowedDomains"] = list(allowed)
            s["updatedAt"] = now_ms()
        self.save()
        return s

    def stop(self, sid):
        """POST .../stop: the session is `stopping` (processes already killed), then `stopped`
        transition_ms later. Stopping a session that is not running changes nothing."""
        with self.lock:
            s = self.session(sid)
            if s["status"] == LIVE:
                s["requestedStopAt"] = now_ms()
                self._begin_stop(s, "stopping")
            sb = self.sandboxes.get(s["sourceSandboxName"])
        self.save()
        return s, sb

    def _begin_stop(self, s, state):
        """Kill the session's processes now; `state` until transition_ms has passed."""
        s["status"] = state
        s["updatedAt"] = now_ms()
        self._deadlines.pop(s["id"], None)
        for cmd in self.commands.get(s["id"], {}).values():
            if not cmd.done.is_set():
                cmd.killed_by_stop = True
        self.runtime.stop(s["sourceSandboxName"])
        sb = self.sandboxes.get(s["sourceSandboxName"])
        if sb is not None:
            self._sync_status(sb)
        if self.transition_ms <= 0:
            self._finish_stop(s)
        else:
            s["_stoppedBy"] = time.monotonic() + self.transition_ms / 1000.0
            self.changed.notify_all()

    def _stop_now(self, s):
        self._begin_stop(s, "stopping")
        self._finish_stop(s)

    def _finish_stop(self, s):
        self._mark_stopped(s, now_ms())
        sb = self.sandboxes.get(s["sourceSandboxName"])
        if sb is not None:
            sb["totalDurationMs"] = sb.get("totalDurationMs", 0) + s["duration"]
            self._sync_status(sb)
        self.changed.notify_all()

    def _mark_stopped(self, s, t):
        s.pop("_stoppedBy", None)
        s["status"] = "failed" if s["id"] in self._errors else "stopped"
        s["stoppedAt"] = t
        s["updatedAt"] = t
        s["duration"] = max(0, t - s.get("startedAt", t))
        s["activeCpuDurationMs"] = 0
        s["networkTransfer"] = {"ingress": 0, "egress": 0}

    # -- snapshots
    def snapshot(self, sid, body):
        expiration = None
        if isinstance(body, dict) and body.get("expiration") is not None:
            expiration = body["expiration"]
            if isinstance(expiration, bool) or not isinstance(expiration, (int, float)) \
                    or expiration < 0:
                raise bad_request("Invalid request: `expiration` should be >= 0.")
        with self.lock:
            s = self.running_session(sid)
            sb = self.sandboxes[s["sourceSandboxName"]]
            snap_id = new_id("snap_", 24)
            s["requestedStopAt"] = now_ms()
            self._begin_stop(s, "snapshotting")      # the copy below needs the processes gone
            size = self.runtime.snapshot(sb["name"], snap_id)
            t = now_ms()
            if expiration is None:
                expiration = sb.get("snapshotExpiration", 30 * 24 * 3600 * 1000)
            snap = {"id": snap_id, "sourceSessionId": sid, "region": sb["region"],
                    "regions": [sb["region"]], "status": "created", "sizeBytes": size,
                    "createdAt": t, "updatedAt": t, "lastUsedAt": t,
                    "creationMethod": "manual", "sandbox": sb["name"]}
            if expiration:
                snap["expiresAt"] = t + int(expiration)
            if sb.get("currentSnapshotId"):
                snap["parentId"] = sb["currentSnapshotId"]
            self.snapshots[snap_id] = snap
            sb["currentSnapshotId"] = snap_id
            s["snapshottedAt"] = t
        self.save()
        return snap, s

    def snapshot_json(self, snap):
        return {k: v for k, v in snap.items() if k != "sandbox"}

    def get_snapshot(self, snap_id):
        with self.lock:
            snap = self.snapshots.get(snap_id)
            if snap is None or snap["status"] == "deleted":
                raise not_found("Snapshot not found: %s" % snap_id)
            return snap

    def delete_snapshot(self, snap_id):
        with self.lock:
            snap = self.get_snapshot(snap_id)
            self._delete_snapshot(snap)
        self.save()
        return snap

    def _delete_snapshot(self, snap):
        snap["status"] = "deleted"
        snap["updatedAt"] = now_ms()
        self.runtime.delete_snapshot(snap["id"])

    def list_snapshots(self, query):
        self.check_project(query.get("project"))
        name = query.get("name")
        with self.lock:
            items = [s for s in self.snapshots.values() if s["status"] != "deleted"
                     and (not name or s.get("sandbox") == name)]
        return paginate(items, lambda s: (s["createdAt"], s["id"]), query)

    def snapshot_tree(self, query):
        """GET /v2/sandboxes/snapshots/tree: from the anchor snapshot, its ancestors (desc) or
        descendants (asc, along the newest child), a page at a time; `next` is the snapshot id
        the SDK sends back as the next anchor. A node's `count` is its number of children."""
        self.check_project(query.get("project"))
        anchor_id = query.get("snapshotId")
        if not anchor_id:
            raise bad_request("Invalid request: `snapshotId` is required.")
        order = sort_order(query)
        limit = page_limit(query)
        with self.lock:
            anchor = self.snapshots.get(anchor_id)
            if anchor is None:
                raise not_found("Snapshot not found: %s" % anchor_id)
            chain, cur = [], anchor
            while len(chain) <= limit:
                if order == "desc":
                    cur = self.snapshots.get(cur.get("parentId") or "")
                else:
                    kids = self._children(cur["id"])
                    cur = kids[-1] if kids else None
                if cur is None:
                    break
                chain.append(cur)
            page = chain[:limit]
            return {"snapshots": [self._tree_node(x) for x in page],
                    "anchor": self._tree_node(anchor),
                    "pagination": {"count": len(page),
                                   "next": page[-1]["id"] if len(chain) > limit else None}}

    def _children(self, snap_id):
        return sorted((x for x in self.snapshots.values() if x.get("parentId") == snap_id),
                      key=lambda x: (x["createdAt"], x["id"]))

    def _tree_node(self, snap):
        parent = snap.get("parentId")
        siblings = [x for x in self._children(parent) if x["id"] != snap["id"]] if parent else []
        return {"snapshot": self.snapshot_json(snap),
                "siblings": [self.snapshot_json(x) for x in siblings],
                "count": str(len(self._children(snap["id"])))}

    # -- commands
    def add_command(self, sid, cmd):
        with self.lock:
            self.running_session(sid)
            self.commands.setdefault(sid, {})[cmd.id] = cmd

    def command(self, sid, cmd_id):
        with self.lock:
            self.running_session(sid)
            cmd = self.commands.get(sid, {}).get(cmd_id)
            if cmd is None:
                raise not_found("Command not found: %s" % cmd_id)
            return cmd

    def list_commands(self, sid):
        with self.lock:
            self.running_session(sid)
            return sorted(self.commands.get(sid, {}).values(),
                          key=lambda c: c.started_at, reverse=True)

    # -- background: timeouts and the end of transitions
    def reconcile_once(self):
        """One pass of the lifecycle now (POST /_local/reconcile): the number of changes, as
        daytona-local counts them."""
        return len(self.reconcile())

    def reconcile(self):
        """Stop sessions whose timeout ran out; end `stopping`/`snapshotting` transitions whose
        time has come. Returns what it did: [{"session", "action"}]."""
        actions = []
        now = time.monotonic()
        with self.lock:
            for sid, due in list(self._deadlines.items()):
                s = self.sessions.get(sid)
                if s is None or s["status"] != LIVE:
                    self._deadlines.pop(sid, None)
                elif due <= now:
                    s["requestedStopAt"] = now_ms()
                    self._begin_stop(s, "stopping")
                    actions.append({"session": sid, "action": "timeout"})
            for s in self.sessions.values():
                due = s.get("_stoppedBy")
                if due is not None and due <= now:
                    self._finish_stop(s)
                    actions.append({"session": s["id"], "action": "stopped"})
        if actions:
            self.save()
        return actions

    def _next_due(self):
        dues = list(self._deadlines.values())
        dues += [s["_stoppedBy"] for s in self.sessions.values() if "_stoppedBy" in s]
        return min(dues) if dues else None

    def _loop(self):
        while True:
            with self.lock:
                if self._closing:
                    return
                due = self._next_due()
                wait = 1.0 if due is None else max(0.0, min(1.0, due - time.monotonic()))
                if wait > 0:
                    self.changed.wait(wait)
                if self._closing:
                    return
            try:
                self.reconcile()
            except Exception:
                # a failed pass must not end timeouts for good: log it, try again
                traceback.print_exc()
                time.sleep(0.1)

    def start_background(self):
        self._thread = threading.Thread(target=self._loop, name="lifecycle", daemon=True)
        self._thread.start()

    def set_error(self, name_or_sid, reason, recoverable=False):
        """/_local/sandbox/{id}/error: the session (or a sandbox's current session) fails."""
        with self.lock:
            s = self.sessions.get(name_or_sid)
            if s is None:
                sb = self.sandbox(name_or_sid)
                s = self.session(sb["currentSessionId"])
            if s["status"] == LIVE:
                self._errors[s["id"]] = reason
                self._stop_now(s)
            result = dict(s)
        self.save()
        return result

    def close(self):
        """Server exit: every session stops (its processes would otherwise outlive us)."""
        with self.lock:
            self._closing = True
            self.changed.notify_all()
            for s in self.sessions.values():
                if s["status"] not in STOPPED_STATES:
                    self.runtime.stop(s["sourceSandboxName"])
                    self._mark_stopped(s, now_ms())
        self.save()
