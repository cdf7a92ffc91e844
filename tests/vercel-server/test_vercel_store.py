"""The store's lifecycle without processes: sessions, resume, timeouts, pagination, saving."""
import threading

import pytest

from vercel_local.store import Store, VercelError, paginate


class FakeRuntime:
    """Records the lifecycle calls the store makes; no processes, no trees."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def record(*args, **kw):
            self.calls.append((name,) + args)
            return 0
        return record


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path), FakeRuntime(), "prj", "team", transition_ms=0)
    yield s
    s.close()


def create(store, name, **extra):
    body = {"projectId": "prj", "name": name}
    body.update(extra)
    return store.create(body, legacy=False)


def test_resume_starts_a_new_session_only_when_stopped(store):
    sb, first = create(store, "a")
    assert first["status"] == "running" and sb["currentSessionId"] == first["id"]
    _, same, resumed = store.get("a", resume=True)
    assert (same["id"], resumed) == (first["id"], False)
    store.stop(first["id"])
    _, stopped, resumed = store.get("a", resume=False)
    assert (stopped["id"], stopped["status"], resumed) == (first["id"], "stopped", False)
    ids = {first["id"]}
    for _ in range(3):
        _, s, resumed = store.get("a", resume=True)
        assert resumed and s["status"] == "running" and s["id"] not in ids
        ids.add(s["id"])
        store.stop(s["id"])
    with pytest.raises(VercelError) as e:
        store.running_session(first["id"])
    assert (e.value.status, e.value.code) == (410, "sandbox_stopped")


def test_a_stopping_session_is_422_until_its_transition_ends(store):
    store.set_timing(transition_ms=60000)
    _, s = create(store, "b")
    store.stop(s["id"])
    with pytest.raises(VercelError) as e:
        store.running_session(s["id"])
    assert (e.value.status, e.value.code) == (422, "sandbox_stopping")
    assert store.reconcile() == []               # not due yet
    s["_stoppedBy"] = 0                               # as if transition_ms had passed
    assert store.reconcile() == [{"session": s["id"], "action": "stopped"}]
    assert s["status"] == "stopped" and "_stoppedBy" not in store.session_json(s)


def test_the_timeout_stops_the_session_and_extend_moves_it(store):
    _, s = create(store, "c", timeout=60000)
    assert store.reconcile() == []
    store.extend(s["id"], 5000)
    assert s["timeout"] == 65000
    store.set_timing(minute_ms=0)                     # every timeout is due now
    assert store.reconcile() == [{"session": s["id"], "action": "timeout"}]
    assert s["status"] == "stopped"
    assert store.sandbox("c")["status"] == "stopped"
    assert "expiresAt" not in store.sandbox("c")


def test_non_persistent_sandboxes_start_from_scratch(store):
    _, s = create(store, "d", persistent=False)
    store.stop(s["id"])
    store.runtime.calls.clear()
    store.get("d", resume=True)
    names = [c[0] for c in store.runtime.calls]
    assert names[:2] == ["destroy", "create"]         # the old tree goes
    _, s2 = create(store, "e")
    store.stop(s2["id"])
    store.runtime.calls.clear()
    store.get("e", resume=True)
    assert "destroy" not in [c[0] for c in store.runtime.calls]


def test_state_survives_a_restart_and_running_sessions_come_back_stopped(tmp_path):
    a = Store(str(tmp_path), FakeRuntime(), "prj", "team", transition_ms=0)
    _, s = create(a, "f")
    a.save()
    b = Store(str(tmp_path), FakeRuntime(), "prj", "team", transition_ms=0)
    assert b.sessions[s["id"]]["status"] == "stopped"
    assert b.sandbox("f")["status"] == "stopped"
    _, s2, resumed = b.get("f", resume=True)
    assert resumed and s2["id"] != s["id"]


def test_concurrent_saves_do_not_collide(store):
    create(store, "g")
    errors = []

    def saver():
        try:
            for _ in range(50):
                store.save()
        except Exception as e:       # noqa: BLE001 - any error fails the test
            errors.append(e)
    threads = [threading.Thread(target=saver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_keyset_pagination_pages_through_everything_once():
    items = [{"n": "s%02d" % i, "t": i // 3} for i in range(10)]     # ties in the sort key
    key = lambda i: (i["t"], i["n"])                                   # noqa: E731
    for order in ("asc", "desc"):
        seen, cursor = [], None
        while True:
            q = {"limit": "3", "sortOrder": order}
            if cursor:
                q["cursor"] = cursor
            page, p = paginate(items, key, q)
            assert p["count"] == len(page)
            seen += [i["n"] for i in page]
            cursor = p["next"]
            if cursor is None:
                break
        assert seen == sorted(seen, reverse=order == "desc") and len(seen) == 10
    with pytest.raises(VercelError):
        paginate(items, key, {"cursor": "!!"})
    with pytest.raises(VercelError):
        paginate(items, key, {"limit": "0"})


def test_create_validates_like_the_api(store):
    for body, text in (({"name": "bad name"}, "name"), ({"ports": list(range(2000, 2016))}, "15"),
                       ({"resources": {"vcpus": 3}}, "vcpus"), ({"timeout": 10}, "timeout"),
                       ({"runtime": "node22"}, "runtime"),
                       ({"tags": {str(i): "v" for i in range(6)}}, "tags")):
        full = {"projectId": "prj", "name": "h"}
        full.update(body)
        with pytest.raises(VercelError) as e:
            store.create(full, legacy=False)
        assert e.value.status == 400 and text in e.value.message
    create(store, "h")
    with pytest.raises(VercelError) as e:
        create(store, "h")
    assert e.value.status == 409
    with pytest.raises(VercelError) as e:
        store.create({"projectId": "other", "name": "i"}, legacy=False)
    assert e.value.status == 404


def test_snapshot_tree_walks_parents_and_children_in_pages(store):
    _, s = create(store, "t")
    ids = []
    for _ in range(3):
        snap, _ = store.snapshot(s["id"], None)
        ids.append(snap["id"])
        _, s, _ = store.get("t", resume=True)
    out = store.snapshot_tree({"snapshotId": ids[2], "limit": "1"})
    assert [n["snapshot"]["id"] for n in out["snapshots"]] == [ids[1]]
    assert out["pagination"] == {"count": 1, "next": ids[1]}
    out = store.snapshot_tree({"snapshotId": ids[1], "limit": "1"})
    assert [n["snapshot"]["id"] for n in out["snapshots"]] == [ids[0]]
    assert out["pagination"]["next"] is None
    out = store.snapshot_tree({"snapshotId": ids[0], "sortOrder": "asc"})
    assert [n["snapshot"]["id"] for n in out["snapshots"]] == ids[1:]
    assert out["anchor"]["count"] == "1" and out["anchor"]["siblings"] == []
    with pytest.raises(VercelError):
        store.snapshot_tree({})
