"""The control-plane routes (/api/sandbox..., /api/snapshots...), CONTRACT section 2.

Handlers validate the request the way the NestJS ValidationPipe would (messages joined with
", "), call the store, and render the store's ApiError as the NestJS error body
{path, timestamp, statusCode, error, message}.
"""

import datetime
import json
import re
import time

from .httpcore import REASONS, BadJSON, node_json_error
from .surface import preview_url, validate_network_allow_list
from .store import (ApiError, SANDBOX_STATES, ERROR_STATES, WAIT_STARTED_S, iso)

LIST_SORT = ("name", "cpu", "memoryGib", "diskGib", "lastActivityAt", "createdAt")
PAGINATED_SORT = ("id", "name", "state", "snapshot", "region", "updatedAt", "createdAt",
                  "lastActivityAt")
SNAPSHOT_SORT = ("lastUsedAt", "name", "state", "createdAt")
SANDBOX_CLASSES = ("linux-vm", "container", "android", "windows")
GPU_TYPES = ("H100", "RTX-PRO-6000")


def error_body(req, status, message):
    return {"path": req.raw_path, "timestamp": iso(int(time.time() * 1000)),
            "statusCode": status, "error": REASONS.get(status, "Error"), "message": message}


def send_error(req, resp, status, message, headers=None):
    resp.send_json(status, error_body(req, status, message), headers)


class Invalid(ApiError):
    def __init__(self, messages):
        super().__init__(400, ", ".join(messages))


# ------------------------------------------------------------------------ body validation
class Fields:
    """Collects class-validator style messages for one JSON object."""

    def __init__(self, obj):
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise ApiError(400, "Request body must be a JSON object")
        self.obj = obj
        self.errors = []
        self.out = {}

    def _get(self, key):
        v = self.obj.get(key)
        return None if v is None else v      # @IsOptional: null counts as absent

    def string(self, key, required=False, nonempty=False):
        v = self._get(key)
        if v is None:
            if required:
                self.errors.append("%s must be a string" % key)
                if nonempty:
                    self.errors.append("%s should not be empty" % key)
            return
        if not isinstance(v, str):
            self.errors.append("%s must be a string" % key)
        elif nonempty and not v.strip():
            self.errors.append("%s should not be empty" % key)
        else:
            self.out[key] = v

    def boolean(self, key):
        v = self._get(key)
        if v is None:
            return
        if not isinstance(v, bool):
            self.errors.append("%s must be a boolean value" % key)
        else:
            self.out[key] = v

    def number(self, key, integer=False, minimum=None, maximum=None):
        v = self._get(key)
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
            self.errors.append("%s must be %s" % (key, "an integer number" if integer else
                                                    "a number conforming to the specified constraints"))
            return
        if integer and int(v) != v:
            self.errors.append("%s must be an integer number" % key)
            return
        if minimum is not None and v < minimum:
            self.errors.append("%s must not be less than %s" % (key, minimum))
            return
        if maximum is not None and v > maximum:
            self.errors.append("%s must not be greater than %s" % (key, maximum))
            return
        self.out[key] = int(v) if int(v) == v else v

    def string_map(self, key):
        v = self._get(key)
        if v is None:
            return
        if not isinstance(v, dict):
            self.errors.append("%s must be an object" % key)
            return
        # the runtime needs strings; scalars are stringified like the JSONB -> Go round trip
        out = {}
        for k, val in v.items():
            if isinstance(val, (dict, list)):
                self.errors.append("%s must be an object of strings" % key)
                return
            out[k] = val if isinstance(val, str) else json.dumps(val)
        self.out[key] = out

    def enum(self, key, values):
        v = self._get(key)
        if v is None:
            return
        if v not in values:
            self.errors.append("%s must be one of the following values: %s"
                               % (key, ", ".join(values)))
        else:
            self.out[key] = v

    def string_list(self, key):
        v = self._get(key)
        if v is None:
            return
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            self.errors.append("%s must be an array of strings" % key)
        else:
            self.out[key] = v

    def done(self):
        if self.errors:
            raise Invalid(self.errors)
        return self.out


BODY_LIMIT = 1 << 20     # body-parser's JSON limit is 100 kB; be a little more generous


def parse_body(req):
    raw = req.read(BODY_LIMIT + 1)
    if len(raw) > BODY_LIMIT:
        raise ApiError(413, "request entity too large")
    text = raw.decode("utf-8", "replace")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError as e:
        raise ApiError(400, node_json_error(text, e))


def _volumes(f):
    v = f._get("volumes")
    if v is None:
        return
    if not isinstance(v, list):
        f.errors.append("volumes must be an array")
        return
    out = []
    for i, item in enumerate(v):
        if not isinstance(item, dict) or not isinstance(item.get("volumeId"), str) \
                or not isinstance(item.get("mountPath"), str) \
                or not isinstance(item.get("subpath", ""), (str, type(None))):
            f.errors.append("volumes.%d must have a string volumeId and mountPath" % i)
            return
        vol = {"volumeId": item["volumeId"], "mountPath": item["mountPath"]}
        if item.get("subpath") is not None:
            vol["subpath"] = item["subpath"]
        out.append(vol)
    f.out["volumes"] = out


def _build_info(f):
    v = f._get("buildInfo")
    if v is None:
        return
    if not isinstance(v, dict):
        f.errors.append("buildInfo must be an object")
        return
    if not isinstance(v.get("dockerfileContent"), str):
        f.errors.append("buildInfo.dockerfileContent must be a string")
        return
    ctx = v.get("contextHashes") or []
    if not isinstance(ctx, list) or not all(isinstance(x, str) for x in ctx):
        f.errors.append("buildInfo.contextHashes must be an array of strings")
        return
    f.out["buildInfo"] = {"dockerfileContent": v["dockerfileContent"], "contextHashes": ctx}


def _gpu_type(f):
    v = f._get("gpuType")
    if v is None:
        return
    vals = v if isinstance(v, list) else [v]
    if not vals or any(x not in GPU_TYPES for x in vals):
        f.errors.append("each value in gpuType must be one of the following values: "
                        + ", ".join(GPU_TYPES))
        return
    f.out["gpuType"] = vals[0]


# ------------------------------------------------------------------------ query validation
class Query:
    def __init__(self, req):
        self.req = req
        self.errors = []
        self.out = {}

    def _one(self, key):
        v = self.req.query.get(key)
        return v[-1] if v else None

    def _many(self, key):
        # qs "extended": ?states=a&states=b or ?states[]=a (no comma splitting)
        vals = list(self.req.query.get(key, [])) + list(self.req.query.get(key + "[]", []))
        return vals or None

    def string(self, key):
        v = self._one(key)
        if v is not None and v != "":
            self.out[key] = v

    def number(self, key, minimum=None, maximum=None, integer=False):
        v = self._one(key)
        if v is None or v == "":
            return
        try:
            n = float(v)
            if n != n or n in (float("inf"), float("-inf")):
                raise ValueError
        except ValueError:
            self.errors.append("%s must be a number conforming to the specified constraints" % key)
            return
        if integer and int(n) != n:
            self.errors.append("%s must be an integer number" % key)
            return
        if minimum is not None and n < minimum:
            self.errors.append("%s must not be less than %s" % (key, minimum))
            return
        if maximum is not None and n > maximum:
            self.errors.append("%s must not be greater than %s" % (key, maximum))
            return
        self.out[key] = int(n) if int(n) == n else n

    def boolean(self, key):
        v = self._one(key)
        if v is None or v == "":
            return
        if v not in ("true", "false"):
            self.errors.append("%s must be a boolean value" % key)
            return
        self.out[key] = v == "true"

    def enum(self, key, values):
        v = self._one(key)
        if v is None or v == "":
            return
        if v not in values:
            self.errors.append("%s must be one of the following values: %s"
                               % (key, ", ".join(values)))
            return
        self.out[key] = v

    def enum_list(self, key, values):
        vals = self._many(key)
        if vals is None:
            return
        if any(v not in values for v in vals):
            self.errors.append("each value in %s must be one of the following values: %s"
                               % (key, ", ".join(values)))
            return
        self.out[key] = vals

    def string_list(self, key):
        vals = self._many(key)
        if vals is not None:
            self.out[key] = vals

    def date(self, key):
        v = self._one(key)
        if v is None or v == "":
            return
        try:
            d = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
            if d.tzinfo is None:
                d = d.replace(tzinfo=datetime.timezone.utc)
            self.out[key] = int(d.timestamp() * 1000)
        except ValueError:
            self.errors.append("%s must be a valid ISO 8601 date string" % key)

    def labels(self):
        v = self._one("labels")
        if v is None or v == "":
            return
        try:
            obj = json.loads(v)
        except ValueError:
            raise ApiError(400, "Invalid labels JSON format")
        if not isinstance(obj, dict):
            raise ApiError(400, "Invalid labels JSON format")
        self.out["labels"] = {k: val if isinstance(val, str) else json.dumps(val)
                              for k, val in obj.items()}

    def done(self):
        if self.errors:
            raise Invalid(self.errors)
        return self.out


def _sandbox_filters(q):
    q.string("id")
    q.string("name")
    q.labels()
    q.boolean("includeErroredDeleted")
    q.enum_list("states", [s for s in SANDBOX_STATES if s != "destroyed"])
    q.string_list("snapshots")
    q.string_list("regionIds")
    q.string_list("regions")
    q.enum_list("sandboxClasses", SANDBOX_CLASSES)
    for k in ("minCpu", "maxCpu", "minMemoryGiB", "maxMemoryGiB", "minDiskGiB", "maxDiskGiB"):
        q.number(k, minimum=1)
    q.boolean("isPublic")
    q.boolean("isRecoverable")
    for k in ("createdAtAfter", "createdAtBefore", "lastEventAfter", "lastEventBefore"):
        q.date(k)
    q.enum("order", ("asc", "desc"))


def _path_int(value):
    if not re.fullmatch(r"-?\d+", value or ""):
        raise ApiError(400, "Validation failed (numeric string is expected)")
    return int(value)


def _path_bool(value):
    if value not in ("true", "false"):
        raise ApiError(400, "Validation failed (boolean string is expected)")
    return value == "true"


NAME_FORBIDDEN = re.compile(r"[<>]|[a-zA-Z][a-zA-Z0-9+.-]*://|^www\.", re.I)


# ------------------------------------------------------------------------ handlers
class ControlPlane:
    def __init__(self, store):
        self.store = store

    def _started_or_failed(self, sid):
        def pred(rec):
            return rec is None or rec["state"] in ERROR_STATES or \
                (rec["state"] == "started" and not rec.get("pending"))
        rec = self.store.wait_for(sid, pred, WAIT_STARTED_S)
        if rec is not None and rec["state"] in ERROR_STATES:
            raise ApiError(400, "Sandbox failed to start: %s" % (rec.get("errorReason") or ""))
        return rec

    # -- sandboxes --------------------------------------------------------------------
    def create(self, req, resp):
        f = Fields(parse_body(req))
        for k in ("name", "snapshot", "user", "networkAllowList", "domainAllowList", "target"):
            f.string(k)
        f.string_map("env")
        f.string_map("labels")
        f.boolean("public")
        f.boolean("networkBlockAll")
        f.enum("class", ("small", "medium", "large"))
        for k in ("cpu", "gpu", "memory", "disk", "autoStopInterval", "autoArchiveInterval",
                  "autoDeleteInterval"):
            f.number(k)
        _gpu_type(f)
        _volumes(f)
        _build_info(f)
        p = f.done()
        if p.get("networkAllowList"):
            validate_network_allow_list(p["networkAllowList"])
        if p.get("name") and NAME_FORBIDDEN.search(p["name"]):
            raise ApiError(400, "Sandbox name must not contain URLs or HTML")
        dto = self.store.create_sandbox(p)
        if dto["state"] not in ("pending_build",):
            rec = self._started_or_failed(dto["id"])
            if rec is not None:
                dto = self.store.sandbox_dto(rec)
        resp.send_json(200, dto)

    def list(self, req, resp):
        q = Query(req)
        q.string("cursor")
        q.number("limit", minimum=1, maximum=200)
        q.enum("sort", LIST_SORT)
        _sandbox_filters(q)
        f = q.done()
        if "regions" in f:
            f.setdefault("regionIds", f.pop("regions"))
        resp.send_json(200, self.store.list_sandboxes(f))

    def list_paginated(self, req, resp):
        q = Query(req)
        q.number("page", minimum=1, integer=True)
        q.number("limit", minimum=1, maximum=200, integer=True)
        q.enum("sort", PAGINATED_SORT)
        _sandbox_filters(q)
        f = q.done()
        if "regions" in f:
            f.setdefault("regionIds", f.pop("regions"))
        resp.send_json(200, self.store.list_sandboxes_paginated(f))

    def get(self, req, resp):
        resp.send_json(200, self.store.dto(req.params["idOrName"]))

    def delete(self, req, resp):
        resp.send_json(200, self.store.delete(req.params["idOrName"]))

    def start(self, req, resp):
        dto, wait = self.store.start(req.params["idOrName"])
        if wait:
            rec = self._started_or_failed(dto["id"])
            if rec is not None:
                dto = self.store.sandbox_dto(rec)
        resp.send_json(200, dto)

    def stop(self, req, resp):
        force = req.q("force") == "true"
        resp.send_json(200, self.store.stop(req.params["idOrName"], force=force))

    def archive(self, req, resp):
        resp.send_json(200, self.store.archive(req.params["idOrName"]))

    def recover(self, req, resp):
        skip = req.q("skipStart")
        if skip not in (None, "", "true", "false"):
            raise ApiError(400, "skipStart must be a boolean value")
        dto, wait = self.store.recover(req.params["idOrName"], skip_start=skip == "true")
        if wait:
            rec = self._started_or_failed(dto["id"])
            if rec is not None:
                dto = self.store.sandbox_dto(rec)
        resp.send_json(200, dto)

    def pause(self, req, resp):
        resp.send_json(200, self.store.pause(req.params["idOrName"]))

    def fork(self, req, resp):
        f = Fields(parse_body(req))
        f.string("name")
        f.done()
        self.store.fork_check(req.params["idOrName"])
        raise ApiError(501, "Forking is not emulated by daytona-local")

    def resize(self, req, resp):
        f = Fields(parse_body(req))
        for k in ("cpu", "memory", "disk"):
            f.number(k, minimum=1)
        p = f.done()
        resp.send_json(200, self.store.resize(req.params["idOrName"], p.get("cpu"),
                                              p.get("memory"), p.get("disk")))

    def labels(self, req, resp):
        f = Fields(parse_body(req))
        if f._get("labels") is None:
            raise Invalid(["labels must be an object"])
        f.string_map("labels")
        p = f.done()
        resp.send_json(200, self.store.set_labels(req.params["idOrName"], p["labels"]))

    def autostop(self, req, resp):
        n = _path_int(req.params["interval"])
        resp.send_json(201, self.store.set_autostop(req.params["idOrName"], n))

    def autoarchive(self, req, resp):
        n = _path_int(req.params["interval"])
        resp.send_json(201, self.store.set_autoarchive(req.params["idOrName"], n))

    def autodelete(self, req, resp):
        n = _path_int(req.params["interval"])
        resp.send_json(201, self.store.set_autodelete(req.params["idOrName"], n))

    def public(self, req, resp):
        v = _path_bool(req.params["isPublic"])
        resp.send_json(201, self.store.set_public(req.params["idOrName"], v))

    def last_activity(self, req, resp):
        self.store.last_activity(req.params["sandboxId"])
        resp.send(201, b"")

    def network_settings(self, req, resp):
        f = Fields(parse_body(req))
        f.boolean("networkBlockAll")
        f.string("networkAllowList")
        f.string("domainAllowList")
        p = f.done()
        if not p:
            raise ApiError(400, "At least one of networkBlockAll, networkAllowList or "
                                "domainAllowList must be provided")
        if p.get("networkAllowList"):
            validate_network_allow_list(p["networkAllowList"])
        resp.send_json(200, self.store.set_network(req.params["idOrName"], p))

    def snapshot(self, req, resp):
        f = Fields(parse_body(req))
        f.string("name", required=True, nonempty=True)
        f.boolean("includeMemory")
        p = f.done()
        resp.send_json(200, self.store.snapshot_sandbox(req.params["idOrName"], p["name"]))

    def backup(self, req, resp):
        resp.send_json(201, self.store.set_backup(req.params["idOrName"]))

    def toolbox_proxy_url(self, req, resp):
        self.store.dto(req.params["sandboxId"], by_name=False)
        resp.send_json(200, {"url": self.store.toolbox_url()})

    def preview_url(self, req, resp):
        port = _path_int(req.params["port"])
        if not 1 <= port <= 65535:
            raise ApiError(400, "Invalid port")
        dto = self.store.dto(req.params["idOrName"])
        base = self.store.toolbox_url().rsplit("/toolbox", 1)[0]
        resp.send_json(200, {"sandboxId": dto["id"], "url": preview_url(base, port, dto["id"]),
                             "token": self.store.preview_token(dto["id"])})

    # -- snapshots --------------------------------------------------------------------
    def snapshots_list(self, req, resp):
        q = Query(req)
        q.number("page", minimum=1, integer=True)
        q.number("limit", minimum=1, maximum=200, integer=True)
        q.string("name")
        q.enum("sort", SNAPSHOT_SORT)
        q.enum("order", ("asc", "desc"))
        f = q.done()
        resp.send_json(200, self.store.list_snapshots(
            page=f.get("page", 1), limit=f.get("limit", 100), name=f.get("name"),
            sort=f.get("sort", "lastUsedAt"), order=f.get("order", "desc")))

    def snapshots_create(self, req, resp):
        f = Fields(parse_body(req))
        f.string("name", required=True, nonempty=True)
        f.string("imageName")
        f.string_list("entrypoint")
        for k in ("cpu", "gpu", "memory", "disk"):
            f.number(k, integer=True, minimum=0)
        _gpu_type(f)
        _build_info(f)
        f.string("regionId")
        f.enum("sandboxClass", SANDBOX_CLASSES)
        resp.send_json(200, self.store.create_snapshot(f.done()))

    def snapshots_get(self, req, resp):
        resp.send_json(200, self.store.get_snapshot(req.params["idOrName"]))

    def snapshots_delete(self, req, resp):
        self.store.delete_snapshot(req.params["id"])
        resp.send(200, b"")

    def snapshots_activate(self, req, resp):
        resp.send_json(200, self.store.activate_snapshot(req.params["id"]))

    def snapshots_deactivate(self, req, resp):
        self.store.deactivate_snapshot(req.params["id"])
        resp.send(204, b"")


def _wrap(fn):
    """Render ApiError/BadJSON as the NestJS error body."""
    def handler(req, resp):
        try:
            fn(req, resp)
        except ApiError as e:
            if not resp.sent:
                send_error(req, resp, e.status, e.message)
            else:
                raise
        except BadJSON as e:
            if not resp.sent:
                send_error(req, resp, 400, e.message)
            else:
                raise
    handler.__name__ = fn.__name__
    return handler


def register(server, store):
    cp = ControlPlane(store)
    routes = [
        ("POST", "/api/sandbox", cp.create),
        ("GET", "/api/sandbox", cp.list),
        ("GET", "/api/sandbox/paginated", cp.list_paginated),
        ("GET", "/api/sandbox/{idOrName}", cp.get),
        ("DELETE", "/api/sandbox/{idOrName}", cp.delete),
        ("POST", "/api/sandbox/{idOrName}/start", cp.start),
        ("POST", "/api/sandbox/{idOrName}/stop", cp.stop),
        ("POST", "/api/sandbox/{idOrName}/archive", cp.archive),
        ("POST", "/api/sandbox/{idOrName}/recover", cp.recover),
        ("POST", "/api/sandbox/{idOrName}/pause", cp.pause),
        ("POST", "/api/sandbox/{idOrName}/fork", cp.fork),
        ("POST", "/api/sandbox/{idOrName}/resize", cp.resize),
        ("PUT", "/api/sandbox/{idOrName}/labels", cp.labels),
        ("POST", "/api/sandbox/{idOrName}/autostop/{interval}", cp.autostop),
        ("POST", "/api/sandbox/{idOrName}/autoarchive/{interval}", cp.autoarchive),
        ("POST", "/api/sandbox/{idOrName}/autodelete/{interval}", cp.autodelete),
        ("POST", "/api/sandbox/{idOrName}/public/{isPublic}", cp.public),
        ("POST", "/api/sandbox/{sandboxId}/last-activity", cp.last_activity),
        ("POST", "/api/sandbox/{idOrName}/network-settings", cp.network_settings),
        ("POST", "/api/sandbox/{idOrName}/snapshot", cp.snapshot),
        ("POST", "/api/sandbox/{idOrName}/backup", cp.backup),
        ("GET", "/api/sandbox/{sandboxId}/toolbox-proxy-url", cp.toolbox_proxy_url),
        ("GET", "/api/sandbox/{idOrName}/ports/{port}/preview-url", cp.preview_url),
        ("GET", "/api/snapshots", cp.snapshots_list),
        ("POST", "/api/snapshots", cp.snapshots_create),
        ("GET", "/api/snapshots/{idOrName}", cp.snapshots_get),
        ("DELETE", "/api/snapshots/{id}", cp.snapshots_delete),
        ("POST", "/api/snapshots/{id}/activate", cp.snapshots_activate),
        ("POST", "/api/snapshots/{id}/deactivate", cp.snapshots_deactivate),
    ]
    for method, pattern, fn in routes:
        server.route(method, pattern, _wrap(fn))
    return cp
