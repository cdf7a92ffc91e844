"""Persistent sandboxes and snapshots, and the sandbox lifecycle state machine.

State lives in memory and in DATA/state.json (written to a temp file, fsynced and renamed, so
a crash leaves either the old or the new file). Like the real API, a sandbox row keeps `state`,
`desiredState` and `pending`; the DTO derives the visible state (CONTRACT 2.3).

A lifecycle operation installs a *plan*: a list of steps {"state", "t", "hook", ...}. The first
step's state is entered at once; after t * transition time the step's hook (a Runtime call) runs
and the next step is entered; the last step (t is None) ends the operation (pending = False).
Plans are persisted, so a transition in flight when the server stops completes after a restart.
Each plan runs in its own short-lived thread; a newer operation bumps rec["op"], which makes an
older plan thread exit (used by delete during pending_build).

A reconciler thread applies auto-stop / auto-archive / auto-delete and flushes cheap updates
(lastActivityAt) to disk. Events (sandbox.created, sandbox.state.updated, ...) go through a
queue to listeners (the socket.io hub) so that no network I/O happens under the store lock.
"""

import base64
import hashlib
import json
import os
import queue
import re
import secrets
import sys
import threading
import time
import traceback
import uuid

DEFAULT_SNAPSHOT = "daytonaio/sandbox:0.5.0-slim"
MAX_AUTO_ARCHIVE = 43200
DAEMON_VERSION = "v0.190.0"
RUNNER_ID = "6c0a1f3e-4d2b-4c5e-9a7f-10ca1d0a7e11"   # the one local "runner"
WAIT_STARTED_S = 30.0
AUTH_TOKEN_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz_-"   # nanoid's, lower-cased
NAMESPACE = uuid.UUID("0b7c5a34-62d4-4e4a-9d86-3b1c0f6c9d11")

SANDBOX_STATES = ("creating", "restoring", "destroyed", "destroying", "started", "stopped",
                  "starting", "stopping", "error", "build_failed", "pending_build",
                  "building_snapshot", "unknown", "pulling_snapshot", "archived", "archiving",
                  "resizing", "snapshotting", "forking", "pausing", "paused", "resuming")
ERROR_STATES = ("error", "build_failed")
SANDBOX_CLASSES = ("container", "linux-vm", "android", "windows")
PAUSABLE_CLASSES = ("linux-vm", "windows")
# the desired state that goes with a state forced through /_local (transitions' targets)
FORCED_DESIRED = {"stopped": "stopped", "stopping": "stopped", "archived": "archived",
                  "archiving": "archived", "paused": "paused", "pausing": "paused",
                  "destroying": "destroyed", "error": "started", "build_failed": "started"}
IMAGE_NAME_RE = re.compile(r"^[a-zA-Z0-9_.\-:]+(/[a-zA-Z0-9_.\-:]+)*(@sha256:[a-f0-9]{64})?$")


class ApiError(Exception):
    """An error with an HTTP status; the control plane renders it as the NestJS error body."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def iso(ms):
    if ms is None:
        return None
    ms = int(ms)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


def derive_state(state, desired, list_item=False):
    """SandboxDto.getSandboxState (and the list item's extra 'restoring' rule)."""
    if state == "started" and desired == "stopped":
        return "stopping"
    if state in ("started", "stopped") and desired == "destroyed":
        return "destroying"
    if state == "stopped" and desired == "started":
        return "starting"
    if state == "stopped" and desired == "archived":
        return "archiving"
    if state == "unknown" and desired == "started":
        return "creating"
    if list_item and state == "archived" and desired == "started":
        return "restoring"
    return state


def new_auth_token():
    """A sandbox's authToken (its preview token): 32 lower-case characters, new at each
    start, as the API's nanoid(32).toLocaleLowerCase()."""
    return "".join(secrets.choice(AUTH_TOKEN_ALPHABET) for _ in range(32))


def is_uuid(s):
    try:
        return str(uuid.UUID(s)) == s.lower() and len(s) == 36
    except (ValueError, AttributeError, TypeError):
        return False


def validate_image_name(name):
    """snapshot.service.ts validateImageName: the message, or None if the name is fine."""
    if "@sha256:" in name:
        image, _, digest = name.partition("@sha256:")
        if not image or not re.fullmatch(r"[a-f0-9]{64}", digest):
            return "Invalid digest format. Must be image@sha256:64_hex_characters"
        return None
    if ":" not in name or name.endswith(":") or re.search(r":\s*$", name):
        return "Image name must include a tag (e.g., ubuntu:22.04) or digest (@sha256:...)"
    if name.endswith(":latest"):
        return 'Images with tag ":latest" are not allowed'
    if not IMAGE_NAME_RE.match(name):
        return ("Invalid image name format. Must be lowercase, may contain digits, dots, dashes, "
                "and single slashes between components")
    return None


def _log(msg):
    sys.stderr.write("daytona-local: %s\n" % msg)
    sys.stderr.flush()


class Store:
    # The real service's quirks, tuned by the server's command line (0 turns each off):
    runner_cache_ms = 0     # D1: the proxy's stale runner after a restore or recover
    list_lag_ms = 0         # D8: a new sandbox reaches the (eventually consistent) listing late
    empty_toolbox_url = False   # D10: DTOs and list items carry toolboxProxyUrl ""

    def __init__(self, data_dir, runtime=None, toolbox_url="http://127.0.0.1:3986/toolbox",
                 transition_ms=300, target="us", default_snapshot=DEFAULT_SNAPSHOT,
                 minute_ms=60000, clock=time.time):
        self.data_dir = data_dir
        self.runtime = runtime
        self._toolbox_url = toolbox_url
        self.transition_ms = transition_ms
        self.minute_ms = minute_ms
        self.target = target
        self.default_snapshot = default_snapshot
        self._clock = clock
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._sandboxes = {}          # id -> record
        self._names = {}              # name -> id (names are unique among live sandboxes)
        self._snapshots = {}          # id -> snapshot record
        self._listeners = []
        self._events = queue.Queue()
        self._stopping = threading.Event()
        self._threads = []
        self._dirty = False
        self._save_seq = 0
        self._written_seq = 0
        self._io_lock = threading.Lock()
        self._save_event = threading.Event()
        self._hook_locks = {}
        self.org_id = None
        self.build_ms = None          # how long building_snapshot lasts (None: transition_ms)
        from .volumes import Volumes  # (volumes.py imports this module)
        self.volumes = Volumes(self, data_dir)
        os.makedirs(data_dir, exist_ok=True)
        self._path = os.path.join(data_dir, "state.json")
        self._load()

    # ---------------------------------------------------------------- basics
    def now(self):
        return int(self._clock() * 1000)

    def toolbox_url(self):
        return self._toolbox_url

    def set_timing(self, transition_ms=None, minute_ms=None):
        if transition_ms is not None:
            self.transition_ms = transition_ms
        if minute_ms is not None:
            self.minute_ms = minute_ms

    def add_listener(self, fn):
        """fn(event_name, payload) is called from the event thread."""
        self._listeners.append(fn)

    def start_background(self):
        """Start background threads and resume transitions that were in flight."""
        for target, name in ((self._event_loop, "store-events"),
                             (self._reconcile_loop, "store-reconciler"),
                             (self._saver_loop, "store-saver")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        with self._lock:
            for rec in list(self._sandboxes.values()):
                if rec.get("plan"):
                    self._spawn_plan(rec)
            for snap in list(self._snapshots.values()):
                if snap["state"] in ("pending", "pulling", "building", "removing"):
                    self._spawn_snapshot_progress(snap["id"])
            self.volumes.resume()

    def close(self):
        self._stopping.set()
        self._events.put(None)
        self._save_event.set()
        self.save()

    # ---------------------------------------------------------------- persistence
    def _load(self):
        data = None
        if os.path.exists(self._path):
            try:
                with open(self._path, "rb") as f:
                    data = json.loads(f.read().decode("utf-8"))
            except (OSError, ValueError) as e:
                bad = self._path + ".corrupt-%d" % int(time.time())
                _log("state file unreadable (%s); moved to %s, starting empty" % (e, bad))
                try:
                    os.rename(self._path, bad)
                except OSError:
                    pass
                data = None
        data = data or {}
        self.org_id = data.get("organizationId") or str(uuid.uuid4())
        for rec in data.get("sandboxes", []):
            self._sandboxes[rec["id"]] = rec
            self._names[rec["name"]] = rec["id"]
        for snap in data.get("snapshots", []):
            self._snapshots[snap["id"]] = snap
        self.volumes.load(data.get("volumes"))
        self._ensure_general_snapshot(self.default_snapshot)
        self.save()

    def _ensure_general_snapshot(self, name):
        sid = str(uuid.uuid5(NAMESPACE, name))
        if sid in self._snapshots:
            return
        t = self.now()
        self._snapshots[sid] = {
            "id": sid, "organizationId": self.org_id, "general": True, "name": name,
            "imageName": name, "state": "active", "size": 0.5,
            "entrypoint": ["sleep", "infinity"], "cpu": 1, "gpu": 0, "mem": 1, "disk": 3,
            "errorReason": None, "createdAt": t, "updatedAt": t, "lastUsedAt": None,
            "regionIds": [self.target], "ref": name, "sandboxClass": "container",
            "hasTree": False}

    def save(self):
        """Write the whole state atomically. Serialised under the lock, written outside it."""
        with self._lock:
            self._save_seq += 1
            seq = self._save_seq
            self._dirty = False
            blob = json.dumps({"version": 1, "organizationId": self.org_id,
                               "sandboxes": list(self._sandboxes.values()),
                               "snapshots": list(self._snapshots.values()),
                               "volumes": self.volumes.dump()},
                              separators=(",", ":")).encode("utf-8")
        with self._io_lock:
            if seq <= self._written_seq:
                return            # a newer state was already written
            tmp = self._path + ".tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(blob)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self._path)
                self._written_seq = seq
            except OSError as e:
                _log("could not save state: %s" % e)

    # ---------------------------------------------------------------- lookups
    def _find(self, id_or_name, by_name=True):
        rec = self._sandboxes.get(id_or_name)
        if rec is None and by_name:
            sid = self._names.get(id_or_name)
            rec = self._sandboxes.get(sid) if sid else None
        if rec is None or rec["state"] == "destroyed":
            return None
        if rec["state"] in ERROR_STATES and rec["desiredState"] == "destroyed":
            return None
        return rec

    def _require(self, id_or_name, by_name=True):
        rec = self._find(id_or_name, by_name)
        if rec is None:
            if by_name:
                raise ApiError(404, "Sandbox with ID or name %s not found" % id_or_name)
            raise ApiError(404, "Sandbox with ID %s not found" % id_or_name)
        return rec

    def get(self, id_or_name):
        """The sandbox record (a copy), None if unknown or destroyed. Used by the toolbox."""
        with self._lock:
            rec = self._find(id_or_name)
            return dict(rec) if rec is not None else None

    def touch(self, sandbox_id):
        """Update lastActivityAt (toolbox traffic, POST last-activity). Flushed lazily."""
        with self._lock:
            rec = self._find(sandbox_id, by_name=False)
            if rec is None:
                return False
            rec["lastActivityAt"] = self.now()
            self._dirty = True
            return True

    touch_activity = touch          # the name toolbox.py looks for

    # ---------------------------------------------------------------- DTOs
    def sandbox_dto(self, rec, list_item=False):
        d = {"id": rec["id"], "organizationId": rec["organizationId"], "name": rec["name"],
             "snapshot": rec["snapshot"], "user": rec["user"]}
        if not list_item:
            d["env"] = rec["env"]
        d["labels"] = rec["labels"]
        d["public"] = rec["public"]
        if not list_item:
            d["networkBlockAll"] = rec["networkBlockAll"]
            d["networkAllowList"] = rec["networkAllowList"]
            d["domainAllowList"] = rec["domainAllowList"]
        d.update({"target": rec["target"], "cpu": rec["cpu"], "gpu": rec["gpu"],
                  "memory": rec["memory"], "disk": rec["disk"]})
        if rec.get("gpuType"):
            d["gpuType"] = rec["gpuType"]
        d["state"] = derive_state(rec["state"], rec["desiredState"], list_item)
        d.update({"desiredState": rec["desiredState"], "errorReason": rec["errorReason"],
                  "recoverable": rec["recoverable"], "backupState": rec["backupState"]})
        if not list_item and rec.get("backupCreatedAt"):
            d["backupCreatedAt"] = iso(rec["backupCreatedAt"])
        d.update({"autoStopInterval": rec["autoStopInterval"],
                  "autoArchiveInterval": rec["autoArchiveInterval"],
                  "autoDeleteInterval": rec["autoDeleteInterval"]})
        if not list_item:
            d["volumes"] = rec["volumes"]
            if rec.get("buildInfo"):
                b = rec["buildInfo"]
                d["buildInfo"] = {"dockerfileContent": b["dockerfileContent"],
                                  "contextHashes": b["contextHashes"],
                                  "createdAt": iso(b["createdAt"]),
                                  "updatedAt": iso(b["updatedAt"]),
                                  "snapshotRef": b["snapshotRef"]}
        d.update({"createdAt": iso(rec["createdAt"]), "updatedAt": iso(rec["updatedAt"]),
                  "lastActivityAt": iso(rec["lastActivityAt"]),
                  "sandboxClass": rec["sandboxClass"], "daemonVersion": rec["daemonVersion"],
                  "runnerId": rec["runnerId"],
                  "toolboxProxyUrl": "" if self.empty_toolbox_url else self._toolbox_url})
        return d

    def dto(self, id_or_name, by_name=True):
        with self._lock:
            return self.sandbox_dto(self._require(id_or_name, by_name))

    @staticmethod
    def snapshot_dto(s):
        d = {"id": s["id"], "organizationId": s["organizationId"], "general": s["general"],
             "name": s["name"]}
        if s.get("imageName"):
            d["imageName"] = s["imageName"]
        d.update({"state": s["state"], "size": s["size"], "entrypoint": s["entrypoint"],
                  "cpu": s["cpu"], "gpu": s["gpu"], "mem": s["mem"], "disk": s["disk"],
                  "errorReason": s["errorReason"], "createdAt": iso(s["createdAt"]),
                  "updatedAt": iso(s["updatedAt"]), "lastUsedAt": iso(s["lastUsedAt"])})
        if s.get("buildInfo"):
            b = s["buildInfo"]
            d["buildInfo"] = {"dockerfileContent": b["dockerfileContent"],
                              "contextHashes": b["contextHashes"],
                              "createdAt": iso(b["createdAt"]), "updatedAt": iso(b["updatedAt"]),
                              "snapshotRef": b["snapshotRef"]}
        d["regionIds"] = s.get("regionIds", [])
        if s.get("initialRunnerId"):
            d["initialRunnerId"] = s["initialRunnerId"]
        d["ref"] = s.get("ref")
        d["sandboxClass"] = s.get("sandboxClass", "container")
        return d

    # ---------------------------------------------------------------- events & state changes
    def _emit(self, name, payload):
        self._events.put((name, payload))

    def _event_loop(self):
        while True:
            item = self._events.get()
            if item is None:
                return
            for fn in list(self._listeners):
                try:
                    fn(*item)
                except Exception:
                    traceback.print_exc()

    def _change(self, rec, state=None, desired=None, **fields):
        """Apply a state/desired/field change, stamp updatedAt, emit events, wake waiters."""
        old_state = derive_state(rec["state"], rec["desiredState"])
        old_desired = rec["desiredState"]
        if state is not None and state != rec["state"]:
            rec["state"] = state
            rec["stateChangedAt"] = self.now()
        if desired is not None:
            rec["desiredState"] = desired
        rec.update(fields)
        rec["updatedAt"] = self.now()
        new_state = derive_state(rec["state"], rec["desiredState"])
        if new_state != old_state or old_desired != rec["desiredState"]:
            dto = self.sandbox_dto(rec)
            if new_state != old_state:
                self._emit("sandbox.state.updated",
                           {"sandbox": dto, "oldState": old_state, "newState": new_state})
            if old_desired != rec["desiredState"]:
                self._emit("sandbox.desired-state.updated",
                           {"sandbox": dto, "oldDesiredState": old_desired,
                            "newDesiredState": rec["desiredState"]})
        self._cond.notify_all()

    def wait_for(self, sandbox_id, pred, timeout):
        """Block until pred(record or None) is true or timeout; returns the record copy/None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                rec = self._sandboxes.get(sandbox_id)
                if rec is not None and rec["state"] == "destroyed":
                    rec = None
                if pred(rec):
                    return dict(rec) if rec else None
                left = deadline - time.monotonic()
                if left <= 0:
                    return dict(rec) if rec else None
                self._cond.wait(min(left, 1.0))

    # ---------------------------------------------------------------- plans
    def _begin(self, rec, steps, desired=None, **fields):
        """Start a lifecycle operation (under the lock)."""
        rec["op"] = rec.get("op", 0) + 1
        rec["plan"] = steps
        rec["pending"] = len(steps) > 1
        first = steps[0]
        self._change(rec, state=first["state"], desired=first.get("desired", desired),
                     **fields)
        if len(steps) == 1:
            self._finish(rec)
        else:
            self._spawn_plan(rec)
        self.save_soon()

    def save_soon(self):
        """Ask the saver thread to write the state (keeps disk I/O out of the store lock)."""
        self._dirty = True
        self._save_event.set()

    def _saver_loop(self):
        while True:
            self._save_event.wait()
            self._save_event.clear()
            if self._stopping.is_set():
                return
            self.save()

    def _spawn_plan(self, rec):
        t = threading.Thread(target=self._run_plan, args=(rec["id"], rec["op"]), daemon=True,
                             name="plan-%s" % rec["id"][:8])
        t.start()

    def _run_plan(self, sid, op):
        while True:
            with self._lock:
                rec = self._sandboxes.get(sid)
                if rec is None or rec.get("op") != op or len(rec.get("plan") or ()) < 2:
                    return
                step = rec["plan"][0]
            if self._stopping.wait(self._step_seconds(step)):
                return                      # shutting down: the plan resumes after a restart
            with self._lock:
                rec = self._sandboxes.get(sid)
                if rec is None or rec.get("op") != op:
                    return                  # superseded (e.g. deleted during pending_build)
            hook = step.get("hook")
            if hook:
                try:
                    self._run_hook(sid, hook)
                except Exception as e:
                    traceback.print_exc()
                    with self._lock:
                        rec = self._sandboxes.get(sid)
                        if rec is not None and rec.get("op") == op:
                            rec["plan"] = []
                            rec["pending"] = False
                            bad = "build_failed" if step["state"] == "building_snapshot" else "error"
                            self._change(rec, state=bad, errorReason=str(e) or repr(e),
                                         recoverable=False)
                    self.save_soon()
                    return
            with self._lock:
                rec = self._sandboxes.get(sid)
                if rec is None or rec.get("op") != op:
                    return
                rec["plan"].pop(0)
                nxt = rec["plan"][0]
                if nxt.get("moved"):
                    self._open_runner_cache(rec, self.runner_cache_ms)
                self._change(rec, state=nxt["state"], desired=nxt.get("desired"),
                             **nxt.get("set", {}))
                if len(rec["plan"]) == 1:
                    self._finish(rec)
            self.save_soon()

    def _step_seconds(self, step):
        if step.get("build"):
            return self.build_seconds()
        return step.get("t", 1) * self.transition_ms / 1000.0

    def build_seconds(self):
        """How long an image build (building_snapshot, a snapshot's building) lasts."""
        ms = self.build_ms if self.build_ms is not None else self.transition_ms
        return ms / 1000.0

    def _finish(self, rec):
        """The last step of a plan was entered."""
        rec["plan"] = []
        rec["pending"] = False
        if rec["state"] == "archived":
            rec["backupState"] = "Completed"
            rec["backupCreatedAt"] = self.now()
        if rec["state"] == "destroyed":
            # Destroyed sandboxes are invisible; drop the row (the name was already freed).
            self._sandboxes.pop(rec["id"], None)
            self._hook_locks.pop(rec["id"], None)
            if self._names.get(rec["name"]) == rec["id"]:
                del self._names[rec["name"]]
        self._cond.notify_all()

    def _run_hook(self, sid, hook):
        with self._lock:
            hook_lock = self._hook_locks.setdefault(sid, threading.Lock())
        with hook_lock:                  # one runtime call at a time per sandbox
            self._run_hook_locked(sid, hook)

    def _run_hook_locked(self, sid, hook):
        rt = self.runtime
        with self._lock:
            rec = self._sandboxes.get(sid)
            if rec is None:
                return
            env = dict(rec["env"])
            job = dict(rec.get("job") or {})
            seed = rec.get("seedSnapshotId")
        if hook == "snapshot":
            self._hook_snapshot(sid, job)
            return
        if hook == "resize":
            with self._lock:
                rec = self._sandboxes.get(sid)
                if rec is not None:
                    for k in ("cpu", "memory", "disk"):
                        if job.get(k) is not None:
                            rec[k] = job[k]
            return
        if rt is None:
            return
        if hook == "create":
            rt.create(sid, env, seed)
        elif hook == "start":
            rt.start(sid)
        elif hook == "stop":
            rt.stop(sid)
        elif hook == "archive":
            rt.archive(sid)
        elif hook == "destroy":
            rt.destroy(sid)

    def _hook_snapshot(self, sid, job):
        snap_id = job["snapshotId"]
        size = 0
        if self.runtime is not None:
            size = self.runtime.snapshot(sid, snap_id) or 0
        with self._lock:
            rec = self._sandboxes.get(sid)
            dup = any(s["name"] == job["name"] and s["state"] != "removing"
                      for s in self._snapshots.values())
            if dup or rec is None:
                # CONTRACT 2.8 caveat: a duplicate name fails only at persist time, and on v0
                # runners the failure is just logged: no snapshot appears.
                _log("snapshot %r of sandbox %s not created: name already exists"
                     % (job["name"], sid))
            else:
                t = self.now()
                self._snapshots[snap_id] = {
                    "id": snap_id, "organizationId": self.org_id, "general": False,
                    "name": job["name"], "imageName": None, "state": "active",
                    "size": round(size / 1e9, 3), "entrypoint": ["sleep", "infinity"],
                    "cpu": rec["cpu"], "gpu": rec["gpu"], "mem": rec["memory"],
                    "disk": rec["disk"], "errorReason": None, "createdAt": t, "updatedAt": t,
                    "lastUsedAt": None, "regionIds": [rec["target"]],
                    "initialRunnerId": RUNNER_ID, "ref": "local/%s:daytona" % snap_id,
                    "sandboxClass": "container", "hasTree": True, "sourceSandboxId": sid}
                self._emit("snapshot.created", self.snapshot_dto(self._snapshots[snap_id]))
                dup = False
        if dup and self.runtime is not None:
            try:
                self.runtime.delete_snapshot(snap_id)
            except Exception:
                traceback.print_exc()

    # ---------------------------------------------------------------- create
    def _resolve_snapshot(self, id_or_name):
        cands = [s for s in self._snapshots.values()
                 if s["name"] == id_or_name or (is_uuid(id_or_name) and s["id"] == id_or_name)]
        if not cands:
            raise ApiError(400, "Snapshot %s not found. Did you add it through the Daytona "
                                "Dashboard?" % id_or_name)
        active = [s for s in cands if s["state"] == "active"]
        snap = active[0] if active else cands[0]
        if snap["state"] != "active":
            raise ApiError(400, "Snapshot %s is %s" % (id_or_name, snap["state"]))
        return snap

    def create_sandbox(self, p):
        """p: validated CreateSandbox fields (absent keys are absent). Returns the DTO."""
        with self._lock:
            t = self.now()
            sid = str(uuid.uuid4())
            name = p.get("name") or sid
            build = p.get("buildInfo")
            if build is not None and p.get("snapshot"):
                raise ApiError(400, "Cannot specify a snapshot when using a build info entry")
            if name in self._names:
                raise ApiError(409, "Sandbox with name %s already exists" % name)
            mounts = self.volumes.resolve_mounts(p.get("volumes") or [])
            rec = {
                "id": sid, "organizationId": self.org_id, "name": name, "snapshot": None,
                "user": p.get("user") or "daytona", "env": p.get("env") or {},
                "labels": p.get("labels") or {}, "public": bool(p.get("public", False)),
                "networkBlockAll": bool(p.get("networkBlockAll", False)),
                "networkAllowList": p.get("networkAllowList"),
                "domainAllowList": p.get("domainAllowList"),
                "target": (p.get("target") or "").strip() or self.target,
                "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
                "state": "unknown", "desiredState": "started", "errorReason": None,
                "recoverable": False, "backupState": "None", "backupCreatedAt": None,
                "autoStopInterval": 15, "autoArchiveInterval": 10080, "autoDeleteInterval": -1,
                "volumes": mounts, "buildInfo": None, "createdAt": t,
                "updatedAt": t, "lastActivityAt": t, "sandboxClass": "container",
                "daemonVersion": DAEMON_VERSION, "runnerId": RUNNER_ID,
                "pending": True, "plan": [], "op": 0, "stateChangedAt": t, "job": {},
                "authToken": new_auth_token(),
                "seedSnapshotId": None}
            if p.get("gpuType"):
                rec["gpuType"] = p["gpuType"]
            if "autoStopInterval" in p:
                rec["autoStopInterval"] = self._autostop_value(p["autoStopInterval"])
            if "autoArchiveInterval" in p:
                rec["autoArchiveInterval"] = self._autoarchive_value(p["autoArchiveInterval"])
            if "autoDeleteInterval" in p:
                rec["autoDeleteInterval"] = int(p["autoDeleteInterval"])
            if build is None:
                if any(p.get(k) for k in ("cpu", "gpu", "memory", "disk")):
                    raise ApiError(400, "Cannot specify Sandbox resources when using a snapshot")
                snap = self._resolve_snapshot((p.get("snapshot") or "").strip()
                                              or self.default_snapshot)
                rec["snapshot"] = snap["name"]
                rec.update(cpu=snap["cpu"], gpu=snap["gpu"], memory=snap["mem"],
                           disk=snap["disk"])
                if snap.get("hasTree"):
                    rec["seedSnapshotId"] = snap["id"]
                snap["lastUsedAt"] = t
                steps = [{"state": "unknown", "t": 0.5},
                         {"state": "creating", "t": 0.5, "hook": "create"},
                         {"state": "started"}]
            else:
                rec.update(cpu=p.get("cpu") or 1, gpu=p.get("gpu") or 0,
                           memory=p.get("memory") or 1, disk=p.get("disk") or 3)
                ctx = build.get("contextHashes") or []
                ref = hashlib.sha256((build["dockerfileContent"] + "".join(ctx))
                                     .encode()).hexdigest()
                rec["buildInfo"] = {"dockerfileContent": build["dockerfileContent"],
                                    "contextHashes": ctx, "createdAt": t, "updatedAt": t,
                                    "snapshotRef": ref}
                steps = [{"state": "pending_build", "t": 1},
                         {"state": "building_snapshot", "build": True},
                         {"state": "creating", "t": 1, "hook": "create"},
                         {"state": "started"}]
            self._sandboxes[sid] = rec
            self._names[name] = sid
            rec["state"] = steps[0]["state"]
            self._emit("sandbox.created", self.sandbox_dto(rec))
            self._begin(rec, steps, desired="started")
            return self.sandbox_dto(rec)

    # ---------------------------------------------------------------- lifecycle
    def _check_not_pending(self, rec):
        if rec.get("pending"):
            raise ApiError(409, "Sandbox state change in progress")

    def start(self, id_or_name):
        with self._lock:
            rec = self._require(id_or_name)
            if rec["state"] == "started" and rec["desiredState"] == "started" \
                    and not rec.get("pending"):
                return self.sandbox_dto(rec), False
            if rec["state"] == "archiving" and rec["desiredState"] == "archived":
                # CONTRACT 2.3: start is allowed while archiving; the archive plan is superseded
                # (hooks of one sandbox are serialised, see _run_hook, so a running archive
                # finishes before the restore starts).
                steps = [{"state": "restoring", "t": 1, "hook": "start"},
                         {"state": "started", "moved": True}]
                rec["authToken"] = new_auth_token()
                self._begin(rec, steps, desired="started", lastActivityAt=self.now())
                return self.sandbox_dto(rec), False
            self._check_not_pending(rec)
            if rec["state"] in ERROR_STATES:
                raise ApiError(400, "Sandbox is in an errored state")
            if rec["state"] == "paused":
                if rec["sandboxClass"] not in PAUSABLE_CLASSES:
                    raise ApiError(422, "Resuming is not supported for this sandbox")
                steps = [{"state": "resuming", "t": 1}, {"state": "started"}]
                wait = True
            elif rec["state"] == "stopped":
                steps = [{"state": "starting", "t": 1, "hook": "start"}, {"state": "started"}]
                wait = True
            elif rec["state"] == "archived":
                steps = [{"state": "archived", "t": 0.5},
                         {"state": "restoring", "t": 0.5, "hook": "start"},
                         {"state": "started", "moved": True}]
                wait = False
            else:
                raise ApiError(400, "Sandbox is not in valid state")
            if rec["state"] != "paused":
                rec["authToken"] = new_auth_token()     # a resume keeps it, as in the API
            self._begin(rec, steps, desired="started", lastActivityAt=self.now())
            return self.sandbox_dto(rec), wait

    def stop(self, id_or_name, force=False):
        with self._lock:
            rec = self._require(id_or_name)
            self._check_not_pending(rec)
            if rec["state"] in ERROR_STATES:
                raise ApiError(400, "Sandbox is in an errored state")
            if rec["state"] not in ("started", "paused"):
                raise ApiError(400, "Sandbox is not in a stoppable state")
            if rec["autoDeleteInterval"] == 0:
                return self._destroy(rec)        # ephemeral: stop is a delete
            self._begin(rec, [{"state": "stopping", "t": 1, "hook": "stop"},
                              {"state": "stopped"}], desired="stopped")
            return self.sandbox_dto(rec)

    def archive(self, id_or_name):
        with self._lock:
            rec = self._require(id_or_name)
            self._check_not_pending(rec)
            if rec["state"] in ERROR_STATES:
                raise ApiError(400, "Sandbox is in an errored state")
            if rec["state"] != "stopped":
                raise ApiError(400, "Sandbox is not stopped")
            if rec["autoDeleteInterval"] == 0:
                raise ApiError(400, "Ephemeral sandboxes cannot be archived")
            self._begin(rec, [{"state": "archiving", "t": 1, "hook": "archive"},
                              {"state": "archived"}], desired="archived")
            return self.sandbox_dto(rec)

    def delete(self, id_or_name):
        with self._lock:
            rec = self._require(id_or_name)
            if rec.get("pending") and rec["state"] != "pending_build":
                raise ApiError(409, "Sandbox state change in progress")
            return self._destroy(rec)

    def _destroy(self, rec):
        # Soft delete: rename at once (frees the name), then destroying -> destroyed (gone).
        new_name = "DESTROYED_%s_%d" % (rec["name"], self.now())
        if self._names.get(rec["name"]) == rec["id"]:
            del self._names[rec["name"]]
        self._names[new_name] = rec["id"]
        rec["name"] = new_name
        state = rec["state"] if rec["state"] in ("started", "stopped") else "destroying"
        # started/stopped with desired destroyed already derive to "destroying"; other states
        # (error, archived, pending_build) show "destroying" explicitly.
        self._begin(rec, [{"state": state, "t": 1, "hook": "destroy"},
                          {"state": "destroyed"}], desired="destroyed")
        return self.sandbox_dto(rec)

    def recover(self, id_or_name, skip_start=False):
        with self._lock:
            rec = self._require(id_or_name)
            if rec["state"] not in ERROR_STATES:
                raise ApiError(400, "Sandbox is not in an errored state")
            if not rec["recoverable"]:
                raise ApiError(400, "Sandbox is not recoverable")
            self._check_not_pending(rec)
            if skip_start:
                self._begin(rec, [{"state": "stopped"}], desired="stopped",
                            errorReason=None, recoverable=False)
                return self.sandbox_dto(rec), False
            self._begin(rec, [{"state": "starting", "t": 1, "hook": "start"},
                              {"state": "started", "moved": True}], desired="started",
                        errorReason=None, recoverable=False, lastActivityAt=self.now())
            return self.sandbox_dto(rec), True

    def resize(self, id_or_name, cpu=None, memory=None, disk=None):
        # the checks and messages of sandbox.service.ts resize, in its order
        no_change = "No resource changes specified - sandbox is already at the desired " \
            "configuration"
        with self._lock:
            rec = self._require(id_or_name)
            if rec["state"] not in ("started", "stopped"):
                raise ApiError(400, "Sandbox must be in started or stopped state to resize")
            self._check_not_pending(rec)
            if cpu is None and memory is None and disk is None:
                raise ApiError(400, no_change)
            started = rec["state"] == "started"
            if disk is not None and started:
                raise ApiError(400, "Disk resize can only be performed on a stopped sandbox")
            if started and cpu is not None and cpu < rec["cpu"]:
                raise ApiError(400, "Sandbox must be in stopped state to decrease the number "
                                    "of CPU cores")
            if started and memory is not None and memory < rec["memory"]:
                raise ApiError(400, "Sandbox must be in stopped state to decrease memory")
            if disk is not None and disk < rec["disk"]:
                raise ApiError(400, "Sandbox disk size cannot be decreased")
            if (cpu or rec["cpu"], memory or rec["memory"], disk or rec["disk"]) == \
                    (rec["cpu"], rec["memory"], rec["disk"]):
                raise ApiError(400, no_change)
            prev, prev_desired = rec["state"], rec["desiredState"]
            rec["job"] = {"cpu": cpu, "memory": memory, "disk": disk}
            self._begin(rec, [{"state": "resizing", "t": 1, "hook": "resize",
                               "desired": "resized"},
                              {"state": prev, "desired": prev_desired}])
            return self.sandbox_dto(rec)

    def snapshot_sandbox(self, id_or_name, name):
        with self._lock:
            rec = self._require(id_or_name)
            if rec["state"] not in ("started", "stopped"):
                raise ApiError(400, "Sandbox must be in started or stopped state to create a "
                                    "snapshot")
            self._check_not_pending(rec)
            rec["job"] = {"snapshotId": str(uuid.uuid4()), "name": name}
            self._begin(rec, [{"state": "snapshotting", "t": 1, "hook": "snapshot"},
                              {"state": rec["state"]}])
            return self.sandbox_dto(rec)

    def pause(self, id_or_name):
        """sandbox.service.ts pause: only linux-vm and windows sandboxes pause."""
        with self._lock:
            rec = self._require(id_or_name)
            if rec["state"] != "started":
                raise ApiError(400, "Sandbox must be in started state to pause")
            self._check_not_pending(rec)
            if rec["sandboxClass"] not in PAUSABLE_CLASSES:
                raise ApiError(422, "Pausing is not supported for this sandbox")
            self._begin(rec, [{"state": "pausing", "t": 1}, {"state": "paused"}],
                        desired="paused")
            return self.sandbox_dto(rec)

    def fork_check(self, id_or_name):
        """sandbox.service.ts forkSandbox's checks, in its order (the fork itself is not
        emulated)."""
        with self._lock:
            rec = self._require(id_or_name)
            if rec["sandboxClass"] not in PAUSABLE_CLASSES:
                raise ApiError(422, "Forking is not supported for this sandbox")
            if rec["state"] != "started":
                raise ApiError(400, "Sandbox must be in started state to fork")
            self._check_not_pending(rec)
            if rec["gpu"]:
                raise ApiError(422, "Forking is not supported for GPU sandboxes")

    def force_state(self, id_or_name, state, sandbox_class=None):
        """Test hook (/_local): put a sandbox into a state at once, with its desired state and
        no transition pending; the processes and files are left as they are. Only linux-vm and
        windows sandboxes can be paused, so pausing/paused/resuming make a container
        sandbox linux-vm unless a class is given."""
        if state not in SANDBOX_STATES or state == "destroyed":
            raise ApiError(400, "state must be one of the sandbox states but destroyed")
        if sandbox_class is not None and sandbox_class not in SANDBOX_CLASSES:
            raise ApiError(400, "sandboxClass must be one of " + ", ".join(SANDBOX_CLASSES))
        with self._lock:
            rec = self._require(id_or_name)
            rec["op"] = rec.get("op", 0) + 1
            rec["plan"] = []
            rec["pending"] = False
            if sandbox_class is None and state in ("pausing", "paused", "resuming") \
                    and rec["sandboxClass"] not in PAUSABLE_CLASSES:
                sandbox_class = "linux-vm"
            fields = {"sandboxClass": sandbox_class} if sandbox_class else {}
            self._change(rec, state=state, desired=FORCED_DESIRED.get(state, "started"),
                         **fields)
            self.save_soon()
            return self.sandbox_dto(rec)

    # ---------------------------------------------------------------- the proxy's runner cache
    def _open_runner_cache(self, rec, ms):
        """The container now lives elsewhere (a restore from archive, a recover), but the
        proxy keeps the runner it had cached (2 min in get_sandbox_target.go): toolbox calls
        reach a runner without the container for ms (FIDELITY D1)."""
        rec["runnerCacheUntil"] = self.now() + ms if ms > 0 else 0

    def open_runner_cache(self, id_or_name, ms):
        """Test hook (/_local): open the stale-runner window now, whatever the state."""
        with self._lock:
            self._open_runner_cache(self._require(id_or_name), ms)

    def runner_cache_left(self, rec):
        """ms left in the stale-runner window of a record (copy), 0 when closed."""
        return max(0, (rec.get("runnerCacheUntil") or 0) - self.now())

    def set_error(self, id_or_name, reason, recoverable=False):
        """Test hook (/_local): put a sandbox into the error state."""
        with self._lock:
            rec = self._require(id_or_name)
            rec["op"] = rec.get("op", 0) + 1
            rec["plan"] = []
            rec["pending"] = False
            self._change(rec, state="error", errorReason=reason, recoverable=bool(recoverable))
            self.save_soon()
            return self.sandbox_dto(rec)

    # ---------------------------------------------------------------- simple updates
    def _update(self, id_or_name, by_name=True, **fields):
        with self._lock:
            rec = self._require(id_or_name, by_name)
            self._change(rec, **fields)
            self.save_soon()
            return self.sandbox_dto(rec)

    def set_daemon_version(self, id_or_name, version):
        """Test hook (/_local): the daemon a sandbox runs (one started before its runner was
        upgraded keeps its old daemon; the toolbox then behaves as that version did)."""
        m = re.fullmatch(r"v?(\d+\.\d+\.\d+)", version or "")
        if m is None:
            raise ApiError(400, "version must look like 0.150.0")
        return self._update(id_or_name, daemonVersion="v" + m.group(1))

    def set_labels(self, id_or_name, labels):
        return self._update(id_or_name, labels=labels)

    def set_public(self, id_or_name, public):
        return self._update(id_or_name, public=public)

    @staticmethod
    def _autostop_value(v):
        if v < 0:
            raise ApiError(400, "Auto-stop interval must be a non-negative integer")
        return int(v)

    @staticmethod
    def _autoarchive_value(v):
        if v < 0:
            raise ApiError(400, "Auto-archive interval must be a non-negative integer")
        return MAX_AUTO_ARCHIVE if v == 0 else min(int(v), MAX_AUTO_ARCHIVE)

    def set_autostop(self, id_or_name, minutes):
        return self._update(id_or_name, autoStopInterval=self._autostop_value(minutes))

    def set_autoarchive(self, id_or_name, minutes):
        return self._update(id_or_name, autoArchiveInterval=self._autoarchive_value(minutes))

    def set_autodelete(self, id_or_name, minutes):
        with self._lock:
            rec = self._require(id_or_name)
            if rec["gpu"]:
                raise ApiError(400, "Auto-delete is not supported for GPU sandboxes")
        return self._update(id_or_name, autoDeleteInterval=int(minutes))

    def set_network(self, id_or_name, fields):
        return self._update(id_or_name, **fields)

    # ---------------------------------------------------------------- issue 16 surface
    def preview_token(self, sandbox_id):
        """The token of the sandbox's preview URLs (its authToken), or None."""
        with self._lock:
            rec = self._sandboxes.get(sandbox_id)
            if rec is None:
                return None
            if not rec.get("authToken"):             # a sandbox from an older state file
                rec["authToken"] = new_auth_token()
                self.save_soon()
            return rec["authToken"]

    def volume_user(self, volume_id):
        """The name of a sandbox that is not destroyed and names the volume, or None
        (under the lock)."""
        for rec in self._sandboxes.values():
            if rec["desiredState"] != "destroyed" and \
                    any(m.get("volumeId") == volume_id for m in rec.get("volumes") or ()):
                return rec["name"]
        return None

    def sandbox_surface(self, sandbox_id):
        """What the runtime applies to a sandbox's processes: its volume mounts
        [(mountPath, host dir)], whether its network is blocked, and the limits its cgroup
        files show."""
        with self._lock:
            rec = self._sandboxes.get(sandbox_id)
            if rec is None:
                return {"volumes": [], "block_network": False}
            return {"volumes": self.volumes.mount_sources(rec.get("volumes") or []),
                    "block_network": bool(rec.get("networkBlockAll")),
                    "cpu": rec["cpu"], "memory": rec["memory"]}

    def build_of(self, kind, id_or_name):
        """(dockerfile, build started at ms or None, build over) of a sandbox or snapshot
        built from an image; ApiError if it has none."""
        with self._lock:
            if kind == "sandbox":
                rec = self._require(id_or_name)
                building, waiting = "building_snapshot", ("pending_build",)
            else:
                rec = self._snapshots.get(id_or_name)
                if rec is None:
                    raise ApiError(404, "Snapshot %s not found" % id_or_name)
                building, waiting = "building", ("pending",)
            info = rec.get("buildInfo")
            if not info:
                raise ApiError(400, "%s %s has no build info" % (
                    "Sandbox" if kind == "sandbox" else "Snapshot", id_or_name))
            state = rec["state"]
            started = rec.get("stateChangedAt") if state == building else None
            return info["dockerfileContent"], started, state not in (building,) + waiting

    def set_backup(self, id_or_name):
        with self._lock:
            rec = self._require(id_or_name)
            if rec["autoDeleteInterval"] == 0:
                raise ApiError(400, "Ephemeral sandboxes cannot be backed up")
        return self._update(id_or_name, backupState="Completed", backupCreatedAt=self.now())

    def last_activity(self, sandbox_id):
        if not self.touch(sandbox_id):
            raise ApiError(404, "Sandbox with ID %s not found" % sandbox_id)

    # ---------------------------------------------------------------- listing
    SORT_KEYS = {"name": "name", "cpu": "cpu", "memoryGib": "memory", "diskGib": "disk",
                 "lastActivityAt": "lastActivityAt", "createdAt": "createdAt",
                 # /sandbox/paginated sort names
                 "id": "id", "state": "state", "snapshot": "snapshot", "region": "target",
                 "updatedAt": "updatedAt"}

    def _matches(self, rec, f):
        if rec["state"] == "destroyed":
            return False
        if rec["state"] in ERROR_STATES and rec["desiredState"] == "destroyed" \
                and not f.get("includeErroredDeleted"):
            return False
        if f.get("id") and not rec["id"].lower().startswith(f["id"].lower()):
            return False
        if f.get("name") and not rec["name"].lower().startswith(f["name"].lower()):
            return False
        labels = f.get("labels")
        if labels and any(rec["labels"].get(k) != v for k, v in labels.items()):
            return False
        states = f.get("states")
        if states and rec["state"] not in states \
                and derive_state(rec["state"], rec["desiredState"], True) not in states:
            return False
        if f.get("snapshots") and rec["snapshot"] not in f["snapshots"]:
            return False
        if f.get("regionIds") and rec["target"] not in f["regionIds"]:
            return False
        if f.get("sandboxClasses") and rec["sandboxClass"] not in f["sandboxClasses"]:
            return False
        for key, field, lo in (("minCpu", "cpu", True), ("maxCpu", "cpu", False),
                               ("minMemoryGiB", "memory", True), ("maxMemoryGiB", "memory", False),
                               ("minDiskGiB", "disk", True), ("maxDiskGiB", "disk", False),
                               ("createdAtAfter", "createdAt", True),
                               ("createdAtBefore", "createdAt", False),
                               ("lastEventAfter", "lastActivityAt", True),
                               ("lastEventBefore", "lastActivityAt", False)):
            v = f.get(key)
            if v is not None and (rec[field] < v if lo else rec[field] > v):
                return False
        if f.get("isPublic") is not None and rec["public"] != f["isPublic"]:
            return False
        if f.get("isRecoverable") is not None and rec["recoverable"] != f["isRecoverable"]:
            return False
        return True

    def _indexed(self, rec, now):
        """The listing is an eventually consistent search index (FIDELITY D8): a sandbox
        created less than list_lag_ms ago is not in it yet (GET by id or name sees it)."""
        return self.list_lag_ms <= 0 or rec["createdAt"] <= now - self.list_lag_ms

    def _sorted(self, f, default_sort, search=False):
        """The matching rows in order; search: through the eventually consistent index (GET
        /sandbox), not the database (the deprecated /sandbox/paginated)."""
        field = self.SORT_KEYS[f.get("sort") or default_sort]
        desc = (f.get("order") or "desc") == "desc"
        now = self.now()
        with self._lock:
            rows = [r for r in self._sandboxes.values()
                    if self._matches(r, f) and (not search or self._indexed(r, now))]
            keyed = [((r[field] if r[field] is not None else ""), r["id"], r) for r in rows]
        keyed.sort(key=lambda x: (x[0], x[1]), reverse=desc)
        return keyed, desc

    def list_sandboxes(self, f):
        """Cursor pagination (GET /sandbox). The cursor is base64 JSON {"v", "id"} of the last
        item (keyset pagination on (sort value, id), like the real API's opaque cursor)."""
        keyed, desc = self._sorted(f, "lastActivityAt", search=True)
        limit = f.get("limit") or 100
        cur = f.get("cursor")
        if cur:
            try:
                c = json.loads(base64.urlsafe_b64decode(cur + "=" * (-len(cur) % 4)))
                ck = (c["v"], c["id"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "Invalid cursor")
            try:
                keyed = [k for k in keyed if ((k[0], k[1]) < ck if desc else (k[0], k[1]) > ck)]
            except TypeError:
                raise ApiError(400, "Invalid cursor")
        page = keyed[:limit]
        nxt = None
        if len(keyed) > limit:
            last = page[-1]
            nxt = base64.urlsafe_b64encode(json.dumps({"v": last[0], "id": last[1]})
                                           .encode()).decode().rstrip("=")
        with self._lock:
            items = [self.sandbox_dto(k[2], list_item=True) for k in page]
        return {"items": items, "nextCursor": nxt}

    def list_sandboxes_paginated(self, f):
        keyed, _ = self._sorted(f, "createdAt")
        page, limit = f.get("page") or 1, f.get("limit") or 100
        total = len(keyed)
        rows = keyed[(page - 1) * limit: page * limit]
        with self._lock:
            items = [self.sandbox_dto(k[2]) for k in rows]
        return {"items": items, "total": total, "page": page,
                "totalPages": -(-total // limit)}

    # ---------------------------------------------------------------- snapshots
    def _find_snapshot(self, id_or_name):
        s = self._snapshots.get(id_or_name)
        if s is not None:
            return s
        named = [s for s in self._snapshots.values() if s["name"] == id_or_name]
        named.sort(key=lambda s: s["general"])          # the org's own before general ones
        return named[0] if named else None

    def get_snapshot(self, id_or_name):
        with self._lock:
            s = self._find_snapshot(id_or_name)
            if s is None:
                if is_uuid(id_or_name):
                    raise ApiError(404, "Snapshot %s not found" % id_or_name)
                raise ApiError(404, "Snapshot with name %s not found" % id_or_name)
            return self.snapshot_dto(s)

    def list_snapshots(self, page=1, limit=100, name=None, sort="lastUsedAt", order="desc"):
        with self._lock:
            rows = [s for s in self._snapshots.values()
                    if not name or name.lower() in s["name"].lower()]
            # ORDER BY general ASC, <sort> <order> NULLS LAST, createdAt DESC: stable sorts,
            # least significant key first.
            rows.sort(key=lambda s: s["createdAt"], reverse=True)
            nonnull = [s for s in rows if s.get(sort) is not None]
            nonnull.sort(key=lambda s: s[sort], reverse=(order == "desc"))
            rows = nonnull + [s for s in rows if s.get(sort) is None]
            rows.sort(key=lambda s: s["general"])
            total = len(rows)
            items = [self.snapshot_dto(s) for s in rows[(page - 1) * limit: page * limit]]
        return {"items": items, "total": total, "page": page, "totalPages": -(-total // limit)}

    def create_snapshot(self, p):
        name = p["name"]
        if not IMAGE_NAME_RE.match(name):
            raise ApiError(400, "Invalid snapshot name format. May contain letters, digits, "
                                "dots, colons, and dashes")
        build = p.get("buildInfo")
        image = p.get("imageName")
        if build is None:
            if not image:
                raise ApiError(400, "Must specify an image name")
            err = validate_image_name(image)
            if err:
                raise ApiError(400, err)
        with self._lock:
            if any(s["name"] == name for s in self._snapshots.values()):
                raise ApiError(409, 'Snapshot with name "%s" already exists for this '
                                    'organization' % name)
            t = self.now()
            sid = str(uuid.uuid4())
            entry = [c for c in (p.get("entrypoint") or []) if c and c.strip()] or None
            snap = {"id": sid, "organizationId": self.org_id, "general": False, "name": name,
                    "imageName": image, "state": "pending", "size": None,
                    "entrypoint": entry, "cpu": p.get("cpu") or 1, "gpu": p.get("gpu") or 0,
                    "mem": p.get("memory") or 1, "disk": p.get("disk") or 3,
                    "errorReason": None, "createdAt": t, "updatedAt": t, "lastUsedAt": None,
                    "regionIds": [p.get("regionId") or self.target], "ref": None,
                    "sandboxClass": p.get("sandboxClass") or "container", "hasTree": False}
            if build is not None:
                ctx = build.get("contextHashes") or []
                ref = hashlib.sha256((build["dockerfileContent"] + "".join(ctx))
                                     .encode()).hexdigest()
                snap["buildInfo"] = {"dockerfileContent": build["dockerfileContent"],
                                     "contextHashes": ctx, "createdAt": t, "updatedAt": t,
                                     "snapshotRef": ref}
                snap["ref"] = "local/%s:daytona" % ref[:16]
            else:
                snap["ref"] = "local/%s" % image
            self._snapshots[sid] = snap
            self._spawn_snapshot_progress(sid)
            self.save_soon()
            return self.snapshot_dto(snap)

    def _spawn_snapshot_progress(self, sid):
        threading.Thread(target=self._snapshot_progress, args=(sid,), daemon=True).start()

    def _snapshot_progress(self, sid):
        """pending -> pulling|building -> active; removing -> gone."""
        while True:
            with self._lock:
                s = self._snapshots.get(sid)
                building = s is not None and s["state"] == "building"
            if self._stopping.wait(self.build_seconds() if building
                                   else self.transition_ms / 1000.0):
                return
            with self._lock:
                s = self._snapshots.get(sid)
                if s is None:
                    return
                st = s["state"]
                if st == "pending":
                    s["state"] = "building" if s.get("buildInfo") else "pulling"
                    s["stateChangedAt"] = self.now()
                elif st in ("pulling", "building"):
                    s["state"] = "active"
                    if s["size"] is None:
                        s["size"] = 0.1
                elif st == "removing":
                    del self._snapshots[sid]
                else:
                    return
                s["updatedAt"] = self.now()
                has_tree = s.get("hasTree")
            if st == "removing" and has_tree and self.runtime is not None:
                try:
                    self.runtime.delete_snapshot(sid)
                except Exception:
                    traceback.print_exc()
            self.save_soon()
            if st in ("pulling", "building", "removing"):
                return

    def delete_snapshot(self, snap_id):
        if not is_uuid(snap_id):
            raise ApiError(400, "Validation failed (uuid is expected)")
        with self._lock:
            s = self._snapshots.get(snap_id)
            if s is None:
                raise ApiError(404, "Snapshot %s not found" % snap_id)
            if s["general"]:
                raise ApiError(403, "You cannot delete a general snapshot")
            if s["state"] != "removing":
                s["state"] = "removing"
                s["updatedAt"] = self.now()
                self._spawn_snapshot_progress(snap_id)
        self.save_soon()

    def activate_snapshot(self, snap_id):
        with self._lock:
            s = self._snapshots.get(snap_id)
            if s is None:
                raise ApiError(404, "Snapshot %s not found" % snap_id)
            if s["state"] == "active":
                raise ApiError(400, "Snapshot %s is already active" % snap_id)
            if s["state"] != "inactive":
                raise ApiError(400, "Snapshot %s cannot be activated - it is in %s state"
                               % (snap_id, s["state"]))
            s["state"] = "active"
            s["lastUsedAt"] = s["updatedAt"] = self.now()
            dto = self.snapshot_dto(s)
        self.save_soon()
        return dto

    def deactivate_snapshot(self, snap_id):
        with self._lock:
            s = self._snapshots.get(snap_id)
            if s is None:
                raise ApiError(404, "Snapshot %s not found" % snap_id)
            if s["state"] != "inactive":
                s["state"] = "inactive"
                s["updatedAt"] = self.now()
        self.save_soon()

    # ---------------------------------------------------------------- reconciler
    def _reconcile_loop(self):
        while True:
            period = min(5.0, max(0.02, self.minute_ms / 1000.0 / 10))
            if self._stopping.wait(period):
                return
            try:
                self.reconcile_once()
            except Exception:
                traceback.print_exc()
            if self._dirty:
                self.save_soon()

    def reconcile_once(self):
        """Auto-stop, auto-delete and auto-archive (intervals in minutes, CONTRACT 2.3)."""
        now = self.now()
        minute = self.minute_ms
        todo = []
        with self._lock:
            for rec in self._sandboxes.values():
                if rec.get("pending"):
                    continue
                idle = now - rec["lastActivityAt"]
                since_stop = now - max(rec["lastActivityAt"], rec.get("stateChangedAt") or 0)
                if rec["state"] == "started" and rec["autoStopInterval"] > 0 \
                        and idle >= rec["autoStopInterval"] * minute:
                    todo.append((self.stop, rec["id"]))
                elif rec["state"] == "stopped" and rec["autoDeleteInterval"] >= 0 \
                        and since_stop >= rec["autoDeleteInterval"] * minute:
                    todo.append((self.delete, rec["id"]))
                elif rec["state"] == "stopped" and rec["autoDeleteInterval"] != 0 \
                        and since_stop >= (rec["autoArchiveInterval"] or MAX_AUTO_ARCHIVE) * minute:
                    todo.append((self.archive, rec["id"]))
        for fn, sid in todo:
            try:
                fn(sid)
            except ApiError:
                pass
        return len(todo)
