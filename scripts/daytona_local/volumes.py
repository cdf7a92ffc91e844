"""Volumes (CONTRACT 2.10): the API's records and their state machine, and their files.

The real service keeps a volume in an S3 bucket and FUSE-mounts it into the sandboxes that name
it at create time. Here a volume is a directory, DATA/volumes/<id>/data, that the runtime binds
at the sandbox's mountPath (a subpath binds that subdirectory). Records live in the store's
state file, under the store's lock; this class only holds the rules:

    create:  pending_create -> creating -> ready        (one transition time per step)
    delete:  pending_delete -> deleting -> deleted      (only from ready or error; 409 while a
                                                         sandbox that is not destroyed names it)

A deleted volume stays in the table (GET by ID still finds it, the listing shows it with
includeDeleted=true) and its name is free again; its files are removed.
"""

import os
import posixpath
import shutil
import threading
import traceback
import uuid

from .store import ApiError, iso

CREATE_STEPS = ("pending_create", "creating", "ready")
DELETE_STEPS = ("pending_delete", "deleting", "deleted")

# Paths a volume may not be mounted over: the sandbox's system directories (bound read-only
# from the host here, the image's own in the real service) and the kernel's.
RESERVED_MOUNTS = ("/", "/proc", "/dev", "/sys", "/usr", "/bin", "/sbin", "/lib", "/lib32",
                   "/lib64", "/libx32", "/etc", "/opt")


def mount_path_error(path):
    """None if path can carry a volume, else why not."""
    if not path.startswith("/"):
        return "Volume mount path must be absolute: %s" % path
    norm = posixpath.normpath(path)
    if norm != path.rstrip("/") or "\0" in path:
        return "Invalid volume mount path: %s" % path
    for r in RESERVED_MOUNTS:
        if norm == r or (r != "/" and norm.startswith(r + "/")):
            return "Volume cannot be mounted at system path: %s" % path
    return None


def subpath_error(sub):
    if sub.startswith("/") or "\0" in sub or ".." in sub.split("/"):
        return "Invalid volume subpath: %s" % sub
    return None


class Volumes:
    def __init__(self, store, data_dir):
        self.store = store                 # its lock guards self.rows
        self.dir = os.path.join(data_dir, "volumes")
        self.rows = {}                     # id -> record

    # -- persistence (called by the store, under its lock)
    def load(self, rows):
        for v in rows or ():
            self.rows[v["id"]] = v

    def dump(self):
        return list(self.rows.values())

    def resume(self):
        for v in list(self.rows.values()):
            if v["state"] not in ("ready", "deleted", "error"):
                self._spawn(v["id"])

    # -- DTO
    @staticmethod
    def dto(v):
        return {"id": v["id"], "name": v["name"], "organizationId": v["organizationId"],
                "state": v["state"], "createdAt": iso(v["createdAt"]),
                "updatedAt": iso(v["updatedAt"]),
                "lastUsedAt": iso(v["lastUsedAt"]) if v.get("lastUsedAt") else None,
                "errorReason": v.get("errorReason")}

    def host_dir(self, volume_id):
        return os.path.join(self.dir, volume_id, "data")

    # -- API
    def list(self, include_deleted=False):
        with self.store._lock:
            rows = [v for v in self.rows.values() if include_deleted or v["state"] != "deleted"]
            # ORDER BY lastUsedAt DESC NULLS LAST, createdAt DESC (stable sorts, last key first)
            rows.sort(key=lambda v: v["createdAt"], reverse=True)
            used = [v for v in rows if v.get("lastUsedAt")]
            used.sort(key=lambda v: v["lastUsedAt"], reverse=True)
            rows = used + [v for v in rows if not v.get("lastUsedAt")]
            return [self.dto(v) for v in rows]

    def get(self, volume_id):
        with self.store._lock:
            v = self.rows.get(volume_id)
            if v is None:
                raise ApiError(404, "Volume with ID %s not found" % volume_id)
            return self.dto(v)

    def _live_by_name(self, name):
        for v in self.rows.values():
            if v["name"] == name and v["state"] != "deleted":
                return v
        return None

    def by_name(self, name):
        with self.store._lock:
            v = self._live_by_name(name)
            if v is None:
                raise ApiError(404, "Volume with name %s not found" % name)
            return self.dto(v)

    def create(self, name):
        with self.store._lock:
            vid = str(uuid.uuid4())
            name = name or vid
            if self._live_by_name(name) is not None:
                raise ApiError(400, "Volume with name %s already exists" % name)
            t = self.store.now()
            v = {"id": vid, "name": name, "organizationId": self.store.org_id,
                 "state": CREATE_STEPS[0], "createdAt": t, "updatedAt": t,
                 "lastUsedAt": None, "errorReason": None}
            self.rows[vid] = v
            dto = self.dto(v)
        self.store.save_soon()
        self._spawn(vid)
        return dto

    def delete(self, volume_id):
        with self.store._lock:
            v = self.rows.get(volume_id)
            if v is None:
                raise ApiError(404, "Volume with ID %s not found" % volume_id)
            if v["state"] not in ("ready", "error"):
                raise ApiError(400, "Volume must be in 'ready' or 'error' state in order to "
                                    "be deleted")
            user = self.store.volume_user(volume_id)
            if user is not None:
                raise ApiError(409, "Volume cannot be deleted because it is in use by one or "
                                    "more sandboxes (e.g. %s)" % user)
            v["state"] = DELETE_STEPS[0]
            v["updatedAt"] = self.store.now()
        self.store.save_soon()
        self._spawn(volume_id)

    def resolve_mounts(self, mounts):
        """CreateSandbox volumes[]: each volumeId (an ID or a name) must name a ready volume.
        Returns the list with names replaced by IDs, and marks the volumes used. Under the
        store's lock."""
        out = []
        for m in mounts:
            err = mount_path_error(m["mountPath"]) or \
                (subpath_error(m["subpath"]) if m.get("subpath") else None)
            if err:
                raise ApiError(400, err)
            ref = m["volumeId"]
            v = self.rows.get(ref)
            if v is None or v["state"] == "deleted":
                v = self._live_by_name(ref)
            if v is None:
                raise ApiError(404, "Volume '%s' not found" % ref)
            if v["state"] != "ready":
                raise ApiError(400, "Volume '%s' is not in a ready state. Current state: %s"
                               % (v["name"], v["state"]))
            out.append(dict(m, volumeId=v["id"]))
        paths = [m["mountPath"].rstrip("/") for m in out]
        if len(set(paths)) != len(paths):
            raise ApiError(400, "Volume mount paths must be unique")
        t = self.store.now()
        for m in out:
            self.rows[m["volumeId"]]["lastUsedAt"] = t
        return out

    def mount_sources(self, mounts):
        """[(mountPath, host directory)] of a sandbox's volumes that still exist (a subpath is
        created on first use, as an S3 prefix is)."""
        out = []
        for m in mounts:
            v = self.rows.get(m["volumeId"])
            if v is None or v["state"] in DELETE_STEPS:
                continue
            src = self.host_dir(v["id"])
            if m.get("subpath"):
                src = os.path.join(src, m["subpath"])
            out.append((m["mountPath"].rstrip("/") or "/", src))
        return out

    # -- state machine
    def _spawn(self, volume_id):
        threading.Thread(target=self._progress, args=(volume_id,), daemon=True,
                         name="volume-%s" % volume_id[:8]).start()

    def _progress(self, volume_id):
        while True:
            if self.store._stopping.wait(self.store.transition_ms / 1000.0):
                return
            with self.store._lock:
                v = self.rows.get(volume_id)
                if v is None:
                    return
                steps = CREATE_STEPS if v["state"] in CREATE_STEPS else DELETE_STEPS
                if v["state"] not in steps or v["state"] == steps[-1]:
                    return
                nxt = steps[steps.index(v["state"]) + 1]
            try:
                if nxt == "ready":
                    os.makedirs(self.host_dir(volume_id), exist_ok=True)
                elif nxt == "deleted":
                    shutil.rmtree(os.path.join(self.dir, volume_id), ignore_errors=True)
            except OSError as e:
                traceback.print_exc()
                with self.store._lock:
                    v["state"], v["errorReason"] = "error", str(e)
                    v["updatedAt"] = self.store.now()
                self.store.save_soon()
                return
            with self.store._lock:
                v["state"] = nxt
                v["updatedAt"] = self.store.now()
            self.store.save_soon()
