"""Store: lifecycle state machine, runtime hooks, persistence, reconciler, listing."""

import base64
import json
import os
import threading
import time

import pytest

from daytona_local.store import ApiError, Store, derive_state, validate_image_name


class FakeRuntime:
    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail or set()
        self.lock = threading.Lock()

    def _rec(self, *call):
        with self.lock:
            self.calls.append(call)
        if call[0] in self.fail:
            raise RuntimeError("%s failed" % call[0])

    def create(self, sid, env, from_snapshot):
        self._rec("create", sid, dict(env), from_snapshot)

    def start(self, sid):
        self._rec("start", sid)

    def stop(self, sid):
        self._rec("stop", sid)

    def archive(self, sid):
        self._rec("archive", sid)

    def destroy(self, sid):
        self._rec("destroy", sid)

    def snapshot(self, sid, snap_id):
        self._rec("snapshot", sid, snap_id)
        return 12345

    def delete_snapshot(self, snap_id):
        self._rec("delete_snapshot", snap_id)

    def names(self):
        return [c[0] for c in self.calls]


@pytest.fixture
def make_store(tmp_path):
    stores = []

    def make(runtime=None, transition_ms=10, **kw):
        s = Store(str(tmp_path), runtime=runtime, toolbox_url="http://h:1/toolbox",
                  transition_ms=transition_ms, **kw)
        s.start_background()
        stores.append(s)
        return s
    yield make
    for s in stores:
        s.close()


def wait(store, sid, state, timeout=5):
    rec = store.wait_for(sid, lambda r: (r is None and state is None) or
                         (r is not None and r["state"] == state and not r["pending"]), timeout)
    if state is None:
        assert rec is None
    else:
        assert rec is not None and rec["state"] == state, rec
    return rec


def test_derive_state_table():
    assert derive_state("started", "stopped") == "stopping"
    assert derive_state("started", "destroyed") == "destroying"
    assert derive_state("stopped", "destroyed") == "destroying"
    assert derive_state("stopped", "started") == "starting"
    assert derive_state("stopped", "archived") == "archiving"
    assert derive_state("unknown", "started") == "creating"
    assert derive_state("archived", "started") == "archived"
    assert derive_state("archived", "started", list_item=True) == "restoring"
    assert derive_state("started", "started") == "started"


def test_image_name_rules():
    assert validate_image_name("ubuntu:22.04") is None
    assert validate_image_name("ubuntu@sha256:" + "a" * 64) is None
    assert "tag" in validate_image_name("ubuntu")
    assert "latest" in validate_image_name("ubuntu:latest")
    assert "digest" in validate_image_name("ubuntu@sha256:xyz")


def test_create_runs_runtime_and_reaches_started(make_store):
    rt = FakeRuntime()
    s = make_store(rt)
    dto = s.create_sandbox({"env": {"A": "1"}, "labels": {"k": "v"}})
    assert dto["state"] == "creating" and dto["name"] == dto["id"]
    assert dto["snapshot"] == "daytonaio/sandbox:0.5.0-slim"
    assert (dto["cpu"], dto["memory"], dto["disk"], dto["gpu"]) == (1, 1, 3, 0)
    wait(s, dto["id"], "started")
    assert rt.calls == [("create", dto["id"], {"A": "1"}, None)]
    assert s.get(dto["id"])["env"] == {"A": "1"}
    assert s.get(dto["id"]) is not s.get(dto["id"])        # copies, not the live record


def test_lifecycle_stop_start_archive_restore_delete(make_store):
    rt = FakeRuntime()
    s = make_store(rt)
    sid = s.create_sandbox({"name": "box"})["id"]
    wait(s, sid, "started")
    assert s.stop("box")["state"] == "stopping"
    with pytest.raises(ApiError) as e:
        s.stop("box")
    assert (e.value.status, e.value.message) == (409, "Sandbox state change in progress")
    wait(s, sid, "stopped")
    with pytest.raises(ApiError) as e:
        s.stop("box")
    assert e.value.status == 400
    assert s.archive(sid)["state"] == "archiving"
    wait(s, sid, "archived")
    assert s.get(sid)["backupState"] == "Completed"
    dto, should_wait = s.start(sid)
    assert not should_wait and dto["state"] == "archived"
    assert s.list_sandboxes({})["items"][0]["state"] == "restoring"
    wait(s, sid, "started")
    dto, should_wait = s.start(sid)                     # already started: unchanged
    assert dto["state"] == "started" and not should_wait
    d = s.delete("box")
    assert d["state"] == "destroying" and d["name"].startswith("DESTROYED_box_")
    assert s.get("box") is None                          # name freed at once
    s.create_sandbox({"name": "box"})                    # and reusable
    wait(s, sid, None)
    assert s.get(sid) is None
    assert rt.names()[:4] == ["create", "stop", "archive", "start"]
    assert "destroy" in rt.names()[4:]          # races with the new "box"'s create hook


def test_archive_only_from_stopped_and_not_ephemeral(make_store):
    s = make_store()
    sid = s.create_sandbox({})["id"]
    wait(s, sid, "started")
    with pytest.raises(ApiError) as e:
        s.archive(sid)
    assert e.value.message == "Sandbox is not stopped"


def test_ephemeral_stop_is_delete(make_store):
    s = make_store()
    sid = s.create_sandbox({"autoDeleteInterval": 0})["id"]
    wait(s, sid, "started")
    d = s.stop(sid)
    assert d["desiredState"] == "destroyed" and d["state"] == "destroying"
    wait(s, sid, None)


def test_delete_during_pending_build_allowed_otherwise_409(make_store):
    s = make_store(transition_ms=200)
    sid = s.create_sandbox({"buildInfo": {"dockerfileContent": "FROM x"}})["id"]
    assert s.dto(sid)["state"] == "pending_build"
    assert s.delete(sid)["desiredState"] == "destroyed"
    sid2 = s.create_sandbox({})["id"]
    with pytest.raises(ApiError) as e:
        s.delete(sid2)
    assert e.value.status == 409


def test_build_path_states(make_store):
    s = make_store(transition_ms=40)
    seen = []
    s.add_listener(lambda name, p: seen.append(p.get("newState")) if name ==
                   "sandbox.state.updated" else None)
    sid = s.create_sandbox({"buildInfo": {"dockerfileContent": "FROM alpine:3"}, "cpu": 2})["id"]
    dto = s.dto(sid)
    assert dto["snapshot"] is None and dto["cpu"] == 2
    assert dto["buildInfo"]["dockerfileContent"] == "FROM alpine:3"
    wait(s, sid, "started")
    time.sleep(0.1)
    assert seen == ["building_snapshot", "creating", "started"]


def test_resources_with_snapshot_rejected_and_unknown_snapshot(make_store):
    s = make_store()
    with pytest.raises(ApiError) as e:
        s.create_sandbox({"cpu": 2})
    assert e.value.message == "Cannot specify Sandbox resources when using a snapshot"
    with pytest.raises(ApiError) as e:
        s.create_sandbox({"snapshot": "nope:1"})
    assert e.value.message == ("Snapshot nope:1 not found. Did you add it through the Daytona "
                               "Dashboard?")
    s.create_sandbox({"name": "n1"})
    with pytest.raises(ApiError) as e:
        s.create_sandbox({"name": "n1"})
    assert e.value.status == 409


def test_hook_failure_gives_error_state(make_store):
    s = make_store(FakeRuntime(fail={"create"}))
    sid = s.create_sandbox({})["id"]
    rec = wait(s, sid, "error")
    assert "create failed" in rec["errorReason"] and rec["recoverable"] is False
    with pytest.raises(ApiError) as e:
        s.stop(sid)
    assert e.value.message == "Sandbox is in an errored state"


def test_recover(make_store):
    s = make_store()
    sid = s.create_sandbox({})["id"]
    wait(s, sid, "started")
    with pytest.raises(ApiError):
        s.recover(sid)
    s.set_error(sid, "disk full", recoverable=True)
    dto, should_wait = s.recover(sid)
    assert should_wait and dto["errorReason"] is None
    wait(s, sid, "started")


def test_resize_rules(make_store):
    s = make_store()
    sid = s.create_sandbox({})["id"]
    wait(s, sid, "started")
    with pytest.raises(ApiError) as e:
        s.resize(sid, disk=10)
    assert "stopped" in e.value.message
    assert s.resize(sid, cpu=2, memory=4)["state"] == "resizing"
    rec = wait(s, sid, "started")
    assert (rec["cpu"], rec["memory"], rec["desiredState"]) == (2, 4, "started")
    with pytest.raises(ApiError):
        s.resize(sid, cpu=1)                   # decrease needs stopped
    s.stop(sid)
    wait(s, sid, "stopped")
    with pytest.raises(ApiError):
        s.resize(sid, disk=2)                  # disk only grows
    s.resize(sid, cpu=1, disk=10)
    rec = wait(s, sid, "stopped")
    assert (rec["cpu"], rec["disk"]) == (1, 10)


def test_snapshot_from_sandbox_and_duplicate_name(make_store):
    rt = FakeRuntime()
    s = make_store(rt)
    sid = s.create_sandbox({})["id"]
    wait(s, sid, "started")
    assert s.snapshot_sandbox(sid, "mysnap")["state"] == "snapshotting"
    wait(s, sid, "started")
    snap = s.get_snapshot("mysnap")
    assert snap["state"] == "active" and snap["general"] is False
    # a sandbox from it is seeded from the saved tree
    sid2 = s.create_sandbox({"snapshot": "mysnap"})["id"]
    wait(s, sid2, "started")
    assert ("create", sid2, {}, snap["id"]) in rt.calls
    # duplicate: silently not created, the sandbox goes back to its state
    s.stop(sid)
    wait(s, sid, "stopped")
    s.snapshot_sandbox(sid, "mysnap")
    wait(s, sid, "stopped")
    time.sleep(0.05)
    assert [x["name"] for x in s.list_snapshots()["items"]].count("mysnap") == 1
    assert rt.names().count("delete_snapshot") == 1


def test_snapshot_crud_states(make_store):
    s = make_store()
    with pytest.raises(ApiError) as e:
        s.create_snapshot({"name": "a", "imageName": "ubuntu:latest"})
    assert e.value.message == 'Images with tag ":latest" are not allowed'
    dto = s.create_snapshot({"name": "img1", "imageName": "ubuntu:22.04", "entrypoint": ["", "x"]})
    assert dto["state"] == "pending" and dto["entrypoint"] == ["x"] and dto["mem"] == 1
    with pytest.raises(ApiError) as e:
        s.create_snapshot({"name": "img1", "imageName": "ubuntu:22.04"})
    assert e.value.status == 409
    with pytest.raises(ApiError) as e:
        s.create_sandbox({"snapshot": "img1"})
    assert e.value.message == "Snapshot img1 is pending"
    deadline = time.time() + 5
    while s.get_snapshot(dto["id"])["state"] != "active":
        assert time.time() < deadline
        time.sleep(0.01)
    with pytest.raises(ApiError) as e:
        s.delete_snapshot("img1")
    assert e.value.status == 400
    general = s.get_snapshot("daytonaio/sandbox:0.5.0-slim")
    with pytest.raises(ApiError) as e:
        s.delete_snapshot(general["id"])
    assert e.value.status == 403
    s.deactivate_snapshot(dto["id"])
    assert s.get_snapshot("img1")["state"] == "inactive"
    assert s.activate_snapshot(dto["id"])["state"] == "active"
    with pytest.raises(ApiError):
        s.activate_snapshot(dto["id"])
    s.delete_snapshot(dto["id"])
    assert s.get_snapshot(dto["id"])["state"] == "removing"
    deadline = time.time() + 5
    while True:
        try:
            s.get_snapshot(dto["id"])
        except ApiError as e:
            assert e.status == 404
            break
        assert time.time() < deadline
        time.sleep(0.01)


def test_persistence_and_inflight_transition_completes_after_restart(tmp_path):
    rt = FakeRuntime()
    s = Store(str(tmp_path), runtime=rt, transition_ms=10)
    s.start_background()
    sid = s.create_sandbox({"name": "p", "labels": {"a": "b"}})["id"]
    wait(s, sid, "started")
    s.set_timing(transition_ms=100000)             # freeze the next transition
    s.stop(sid)
    s.close()
    raw = json.load(open(os.path.join(str(tmp_path), "state.json")))
    (rec,) = raw["sandboxes"]
    assert rec["state"] == "stopping" and rec["pending"] and rec["plan"]
    rt2 = FakeRuntime()
    s2 = Store(str(tmp_path), runtime=rt2, transition_ms=10)
    assert s2.org_id == raw["organizationId"]
    s2.start_background()
    rec = wait(s2, sid, "stopped")
    assert rec["labels"] == {"a": "b"} and rt2.names() == ["stop"]
    s2.close()


def test_corrupt_state_file_is_moved_aside(tmp_path):
    with open(os.path.join(str(tmp_path), "state.json"), "w") as f:
        f.write("{not json")
    s = Store(str(tmp_path))
    assert s.list_sandboxes({})["items"] == []
    assert any(n.startswith("state.json.corrupt-") for n in os.listdir(str(tmp_path)))


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self):
        return self.t


def test_reconciler_autostop_autoarchive_autodelete(make_store):
    clk = Clock()                                # minutes pass only when the test says so
    s = make_store(clock=clk)
    a = s.create_sandbox({"autoStopInterval": 1})["id"]
    b = s.create_sandbox({"autoStopInterval": 0})["id"]                  # never auto-stops
    c = s.create_sandbox({"autoStopInterval": 1, "autoDeleteInterval": 2})["id"]
    d = s.create_sandbox({"autoStopInterval": 1, "autoArchiveInterval": 2})["id"]
    for x in (a, b, c, d):
        wait(s, x, "started")
    clk.t += 30
    s.touch(a)                                   # toolbox activity resets a's idle timer
    clk.t += 40
    s.reconcile_once()                           # c and d idle 70 s > 1 min; a idle 40 s
    for x in (c, d):
        wait(s, x, "stopped")
    assert s.get(a)["state"] == "started"
    clk.t += 61
    s.reconcile_once()                           # a now idle 101 s
    wait(s, a, "stopped")
    clk.t += 50                                  # c, d stopped 111 s ago: not yet 2 min
    s.reconcile_once()
    assert s.get(c)["state"] == s.get(d)["state"] == "stopped"
    assert not s.get(c)["pending"] and not s.get(d)["pending"]
    clk.t += 10
    s.reconcile_once()
    wait(s, c, None)                             # auto-delete
    wait(s, d, "archived")                       # auto-archive
    assert s.get(b)["state"] == "started"


def test_reconciler_thread_runs_with_short_minutes(make_store):
    s = make_store(minute_ms=50)
    sid = s.create_sandbox({"autoStopInterval": 1})["id"]
    wait(s, sid, "stopped")                      # nobody touched it for 50 ms


def test_events_created_and_state_updates(make_store):
    s = make_store()
    events = []
    s.add_listener(lambda name, payload: events.append((name, payload)))
    sid = s.create_sandbox({})["id"]
    wait(s, sid, "started")
    s.stop(sid)
    wait(s, sid, "stopped")
    time.sleep(0.05)
    names = [n for n, _ in events]
    assert names[0] == "sandbox.created"
    changes = [(p["oldState"], p["newState"]) for n, p in events if n == "sandbox.state.updated"]
    assert changes == [("creating", "started"), ("started", "stopping"), ("stopping", "stopped")]
    assert all(p["sandbox"]["id"] == sid for n, p in events if n != "sandbox.created")


def test_list_filters_sorting_and_cursor(make_store):
    s = make_store()
    ids = []
    for i in range(7):
        ids.append(s.create_sandbox({"name": "Web-%d" % i, "labels": {"env": "dev" if i % 2 else
                                                                       "prod", "i": str(i)}})["id"])
        time.sleep(0.002)
    s.create_sandbox({"name": "other"})
    r = s.list_sandboxes({"name": "web", "sort": "createdAt", "order": "asc", "limit": 3})
    assert [x["name"] for x in r["items"]] == ["Web-0", "Web-1", "Web-2"]
    json.loads(base64.urlsafe_b64decode(r["nextCursor"] + "=="))        # opaque base64 JSON
    seen = [x["name"] for x in r["items"]]
    while r["nextCursor"]:
        r = s.list_sandboxes({"name": "web", "sort": "createdAt", "order": "asc", "limit": 3,
                              "cursor": r["nextCursor"]})
        seen += [x["name"] for x in r["items"]]
    assert seen == ["Web-%d" % i for i in range(7)]
    r = s.list_sandboxes({"labels": {"env": "dev"}})
    assert sorted(x["name"] for x in r["items"]) == ["Web-1", "Web-3", "Web-5"]
    r = s.list_sandboxes({"labels": {"env": "dev", "i": "3"}})
    assert [x["name"] for x in r["items"]] == ["Web-3"]
    assert len(s.list_sandboxes({"id": ids[0][:8]})["items"]) >= 1
    item = s.list_sandboxes({"limit": 1})["items"][0]
    for missing in ("env", "networkBlockAll", "networkAllowList", "domainAllowList", "volumes",
                    "buildInfo", "backupCreatedAt", "linkedSandboxId"):
        assert missing not in item
    assert item["toolboxProxyUrl"] == "http://h:1/toolbox"
    with pytest.raises(ApiError):
        s.list_sandboxes({"cursor": "!!!"})


def test_start_while_archiving_restores(make_store):
    rt = FakeRuntime()
    s = make_store(rt, transition_ms=100)
    sid = s.create_sandbox({})["id"]
    wait(s, sid, "started")
    s.stop(sid)
    wait(s, sid, "stopped")
    s.archive(sid)
    dto, should_wait = s.start(sid)          # allowed from archiving (CONTRACT 2.3)
    assert dto["state"] == "restoring" and not should_wait
    wait(s, sid, "started")
    time.sleep(0.15)
    assert s.get(sid)["state"] == "started"  # the superseded archive plan did not finish
    assert "archive" not in rt.names()
