"""The real service's quirks that the local server reproduces by default (FIDELITY.md D1-D12,
reliability report L1-L4), each with the knob that turns it off or tunes it."""

import json
import time

import pytest

from daytona_local.faults import FaultRule
from test_toolbox import Box


@pytest.fixture
def box(server):
    b = Box(server)
    yield b
    b.destroy()


def add_fault(server, spec):
    st, _, body = server.local("POST", "/faults", spec)
    assert st == 201, body
    return json.loads(body)["id"]


# --------------------------------------------------------------------------- faults (L4, D5, D7)
def test_rules_on_one_pattern_draw_independent_streams():
    rules = [FaultRule("f%d" % i, {"pattern": "/files", "rate": 0.5}) for i in range(1, 8)]
    seqs = [tuple(r.decide() for _ in range(64)) for r in rules]
    assert len(set(seqs)) == 7
    again = FaultRule("f3", {"pattern": "/files", "rate": 0.5})
    assert tuple(again.decide() for _ in range(64)) == seqs[2]      # reproducible per rule
    a = FaultRule("f1", {"pattern": "x", "rate": 0.5, "seed": 42})
    b = FaultRule("f9", {"pattern": "y", "rate": 0.5, "seed": 42})
    assert [a.decide() for _ in range(64)] == [b.decide() for _ in range(64)]


def test_throttle_401_answers_the_proxy_auth_error(server, box):
    add_fault(server, {"pattern": "^/toolbox/", "action": "throttle_401", "count": 1})
    st, _, body = box.req("GET", "/files", path="/home/daytona")
    b = json.loads(body)
    assert st == 401 and b["code"] == "UNAUTHORIZED" and b["statusCode"] == 401
    assert b["message"] == ("unauthorized: authentication failed: Bearer token validation "
                            "error: ThrottlerException: Too Many Requests")
    assert box.req("GET", "/files", path="/home/daytona")[0] == 200


def test_replay_runs_a_small_request_twice_and_answers_the_second(server, box):
    add_fault(server, {"pattern": "/process/execute", "action": "replay", "count": 1})
    out = box.run("echo ran >> /tmp/replayed; wc -l < /tmp/replayed")
    assert out["exitCode"] == 0 and out["result"].strip() == "2"     # the second run's answer
    assert box.run("cat /tmp/replayed")["result"] == "ran\nran\n"
    # a replayed move: the first run moved the file, the second finds no source
    box.run("echo a > /tmp/src")
    add_fault(server, {"pattern": "/files/move", "action": "replay", "count": 1})
    st, _, _ = box.req("POST", "/files/move", source="/tmp/src", destination="/tmp/dst")
    assert st == 404
    assert box.run("cat /tmp/dst")["result"] == "a\n"


def test_replay_skips_bodies_over_256_kib(server, box):
    add_fault(server, {"pattern": "/process/execute", "action": "replay"})
    pad = "#" * (300 << 10)
    out = box.run("echo ran >> /tmp/big\n" + pad)
    assert out["exitCode"] == 0
    assert box.run("cat /tmp/big")["result"] == "ran\n"


# --------------------------------------------------------------------------- bulk upload (D3, L1)
def raw_multipart(parts, boundary="dlfidelity"):
    """parts: (Content-Disposition value, data bytes); the headers go out exactly as given."""
    out = b""
    for disp, data in parts:
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: " + disp + b"\r\n\r\n" \
            + data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return out, "multipart/form-data; boundary=" + boundary


def curl_upload(box, path, data, filename):
    """A bulk upload as libcurl writes it: only '"', CR and LF are escaped in the filename."""
    fname = filename.replace(b'"', b"%22").replace(b"\r", b"%0D").replace(b"\n", b"%0A")
    body, ctype = raw_multipart([(b'form-data; name="files[0].path"', path),
                                 (b'form-data; name="files[0].file"; filename="' + fname + b'"',
                                  data)])
    st, _, got = box.req("POST", "/files/bulk-upload", body, {"Content-Type": ctype})
    return st, json.loads(got)


def test_bulk_upload_part_go_cannot_parse_is_ignored(box):
    st, b = curl_upload(box, b"/home/daytona/ends-with\\", b"data", b"ends-with\\")
    assert (st, b) == (200, {"files": None})
    st, _, _ = box.req("GET", "/files/info", path="/home/daytona/ends-with\\")
    assert st == 404
    st, b = curl_upload(box, b"/home/daytona/a\\b", b"data", b"a\\b")   # a backslash inside
    assert (st, b) == (200, {"files": [{"path": "/home/daytona/a\\b", "bytes": 4}]})


def test_bulk_upload_trims_the_destination_like_go(box):
    st, b = curl_upload(box, b" /home/daytona/notes \r\n", b"x", b"notes ")
    assert (st, b) == (200, {"files": [{"path": "/home/daytona/notes", "bytes": 1}]})
    st, b = curl_upload(box, b"/home/daytona/sep\x1c", b"y", b"sep")    # not a Go space
    assert st == 200 and b["files"][0]["path"] == "/home/daytona/sep\x1c"


def test_lenient_multipart_knob_reads_any_header(server_factory):
    s = server_factory("--multipart", "lenient")
    b = Box(s)
    st, got = curl_upload(b, b"/home/daytona/ends-with\\", b"data", b"ends-with\\")
    assert st == 200 and got["files"][0]["bytes"] == 4
    b.destroy()


def test_non_utf8_paths_keep_their_bytes(box):
    st, b = curl_upload(box, b"/home/daytona/caf\xe9", b"latin", b"caf\xe9")
    assert (st, b) == (200, {"files": [{"path": "/home/daytona/caf\ufffd", "bytes": 5}]})
    raw = box.prefix + "/files/download?path=/home/daytona/caf%E9"     # not UTF-8
    st, _, data = box.server.request("GET", raw)
    assert (st, data) == (200, b"latin")
    assert "63 61 66 e9" in box.run("ls /home/daytona | od -An -tx1")["result"]
    st, _, _ = box.server.request("GET", box.prefix + "/files/info?path=/home/daytona/caf%EF%BF%BD")
    assert st == 404                                # no replacement character on the way in
    st, _, _ = box.server.request("DELETE", box.prefix + "/files?path=/home/daytona/caf%E9")
    assert st == 204


# --------------------------------------------------------------------------- runner cache (D1)
def lifecycle(server, sid, action, then):
    server.json("POST", "/api/sandbox/%s/%s" % (sid, action), expect=200)
    server.wait_state(sid, (then,))


def assert_container_not_found(box):
    st, _, body = box.req("GET", "/files", path="/home/daytona")
    b = json.loads(body)
    assert st == 404 and b["code"] == "NOT_FOUND" and b["statusCode"] == 404
    assert b["message"] == ("not found: sandbox container not found: Error response from "
                            "daemon: No such container: " + box.id)
    assert b["path"] == "/sandboxes/%s/toolbox/files" % box.id and b["method"] == "GET"


@pytest.fixture(scope="module")
def long_cache_server(server_factory):
    """A server whose window never closes during a test (the default is 3 s)."""
    return server_factory("--runner-cache-ms", "600000")


def test_toolbox_answers_container_not_found_after_a_restore(long_cache_server):
    server = long_cache_server
    box = Box(server)
    assert box.req("GET", "/files", path="/home/daytona")[0] == 200      # not after create
    lifecycle(server, box.id, "stop", "stopped")
    lifecycle(server, box.id, "start", "started")
    assert box.req("GET", "/files", path="/home/daytona")[0] == 200      # same runner
    lifecycle(server, box.id, "stop", "stopped")
    lifecycle(server, box.id, "archive", "archived")
    lifecycle(server, box.id, "start", "started")
    assert_container_not_found(box)
    st, _, _ = box.req("POST", "/process/execute", {"command": "true"})
    assert st == 404
    assert server.local("POST", "/sandbox/%s/runner-cache" % box.id, {"ms": 0})[0] == 204
    assert box.req("GET", "/files", path="/home/daytona")[0] == 200


def test_toolbox_answers_container_not_found_after_a_recover(long_cache_server):
    server = long_cache_server
    box = Box(server)
    server.local("POST", "/sandbox/%s/error" % box.id, {"recoverable": True})
    lifecycle(server, box.id, "recover", "started")
    assert_container_not_found(box)


def test_runner_cache_knobs(server, server_factory, box):
    assert server.local("POST", "/sandbox/%s/runner-cache" % box.id, {"ms": 60000})[0] == 204
    assert_container_not_found(box)
    assert server.local("POST", "/sandbox/%s/runner-cache" % box.id, {"ms": -1})[0] == 400
    s = server_factory("--runner-cache-ms", "0")
    b = Box(s)
    lifecycle(s, b.id, "stop", "stopped")
    lifecycle(s, b.id, "archive", "archived")
    lifecycle(s, b.id, "start", "started")
    assert b.req("GET", "/files", path="/home/daytona")[0] == 200
    b.destroy()


# --------------------------------------------------------------------------- old daemons (D4)
def set_daemon(server, box, version):
    st, _, body = server.local("POST", "/sandbox/%s/daemon" % box.id, {"version": version})
    assert st == 200, body
    return json.loads(body)


def test_new_sandboxes_run_the_current_daemon(server, box):
    assert server.json("GET", "/api/sandbox/" + box.id)[1]["daemonVersion"] == "v0.190.0"
    assert box.run("echo $((1+1)) | cat")["result"] == "2\n"         # a shell


def test_daemon_before_0_156_runs_no_shell(server, box):
    assert set_daemon(server, box, "0.150.0")["daemonVersion"] == "v0.150.0"
    assert server.json("GET", "/api/sandbox/" + box.id)[1]["daemonVersion"] == "v0.150.0"
    assert box.json("GET", "/version") == {"version": "v0.150.0"}
    # the words go to echo as arguments: no pipe, no expansion, quotes only group
    out = box.run("echo $((1+1)) | 'a  b' \"c'd\"")
    assert out == {"exitCode": 0, "result": "$((1+1)) | a  b c'd\n"}
    assert box.run("sh -c 'exit 3'")["exitCode"] == 3
    assert box.run("no-such-program x") == {"exitCode": -1, "result": ""}
    assert box.run("LC_ALL=C; export LC_ALL; true")["exitCode"] == -1
    st, _, body = box.req("POST", "/process/execute", {"command": "   "})
    assert (st, body) == (400, b"")


def test_daemon_before_0_155_times_out_with_a_bare_408(server, box):
    set_daemon(server, box, "0.154.0")
    st, _, body = box.req("POST", "/process/execute", {"command": "sleep 5", "timeout": 1})
    assert (st, body) == (408, b"")
    set_daemon(server, box, "0.155.0")
    st, _, body = box.req("POST", "/process/execute", {"command": "sleep 5", "timeout": 1})
    assert st == 408 and json.loads(body)["code"] == "REQUEST_TIMEOUT"


def test_daemon_before_0_113_answers_code(server, box):
    set_daemon(server, box, "v0.112.0")
    assert box.run("sh -c 'exit 4'") == {"code": 4, "result": ""}
    assert server.local("POST", "/sandbox/%s/daemon" % box.id, {"version": "new"})[0] == 400


def test_daemon_before_0_167_ignores_envs(server, box):
    set_daemon(server, box, "0.160.0")
    assert box.run("echo ${X:-unset}", envs={"X": "1"})["result"] == "unset\n"
    set_daemon(server, box, "0.190.0")
    assert box.run("echo ${X:-unset}", envs={"X": "1"})["result"] == "1\n"


# --------------------------------------------------------------------------- listing (D8, D10)
def listed(server, query=""):
    ids, cursor = [], None
    while True:
        path = "/api/sandbox?limit=200" + query + ("&cursor=" + cursor if cursor else "")
        page = server.json("GET", path, expect=200)[1]
        ids += [x["id"] for x in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            return ids


def test_a_new_sandbox_reaches_the_listing_late(server):
    assert server.local("PUT", "/timing", {"list_lag_ms": 600000})[0] == 204
    assert json.loads(server.local("GET", "/timing")[2])["list_lag_ms"] == 600000
    sid = server.json("POST", "/api/sandbox", {}, expect=200)[1]["id"]
    assert sid not in listed(server)
    assert server.json("GET", "/api/sandbox/" + sid)[0] == 200         # by id at once
    page = server.json("GET", "/api/sandbox/paginated?limit=200", expect=200)[1]
    assert sid in [x["id"] for x in page["items"]]        # the deprecated list reads the DB
    server.local("PUT", "/timing", {"list_lag_ms": 0})
    assert sid in listed(server)
    server.request("DELETE", "/api/sandbox/" + sid)


def test_list_lag_knob(server_factory):
    s = server_factory("--list-lag-ms", "0")
    sid = s.json("POST", "/api/sandbox", {}, expect=200)[1]["id"]
    assert sid in listed(s)


def test_default_order_is_last_activity_and_pages_can_skip_a_sandbox(server_factory):
    s = server_factory("--list-lag-ms", "0")
    ids = [s.json("POST", "/api/sandbox", {}, expect=200)[1]["id"] for _ in range(3)]
    for sid in ids:                      # activity in this order: ids[2] is the most recent
        s.request("POST", "/api/sandbox/%s/last-activity" % sid)
        time.sleep(0.005)
    page = s.json("GET", "/api/sandbox?limit=2", expect=200)[1]
    assert [x["id"] for x in page["items"]] == [ids[2], ids[1]]
    s.request("POST", "/api/sandbox/%s/last-activity" % ids[0])    # moves ahead of the cursor
    rest = s.json("GET", "/api/sandbox?limit=2&cursor=" + page["nextCursor"], expect=200)[1]
    assert rest["items"] == [] and rest["nextCursor"] is None         # ids[0] was skipped
    asc = [x["id"] for x in s.json("GET", "/api/sandbox?sort=createdAt&order=asc",
                                   expect=200)[1]["items"]]
    assert asc == ids


def test_toolbox_proxy_url_endpoint_and_the_empty_url_knob(server, server_factory, box):
    dto = server.json("GET", "/api/sandbox/" + box.id, expect=200)[1]
    assert dto["toolboxProxyUrl"] == server.toolbox_url
    assert server.json("GET", "/api/sandbox/%s/toolbox-proxy-url" % box.id, expect=200)[1] == \
        {"url": server.toolbox_url}
    s = server_factory("--empty-toolbox-url", "--list-lag-ms", "0")
    b = Box(s)
    assert s.json("GET", "/api/sandbox/" + b.id, expect=200)[1]["toolboxProxyUrl"] == ""
    items = s.json("GET", "/api/sandbox", expect=200)[1]["items"]
    assert items and all(x["toolboxProxyUrl"] == "" for x in items)
    assert s.json("GET", "/api/sandbox/%s/toolbox-proxy-url" % b.id, expect=200)[1] == \
        {"url": s.toolbox_url}
    assert b.req("GET", "/files", path="/home/daytona")[0] == 200
    b.destroy()


# ------------------------------------------------------------------- pause, states (D11, D12)
def force(server, sid, state, **extra):
    st, _, body = server.local("POST", "/sandbox/%s/state" % sid, dict(state=state, **extra))
    assert st == 200, body
    return json.loads(body)


def api_error(server, method, path, body=None):
    st, b = server.json(method, path, body)
    return st, b["message"]


def test_pause_only_for_vm_classes_and_only_when_started(server, box):
    p = "/api/sandbox/%s/pause" % box.id
    assert api_error(server, "POST", p) == (422, "Pausing is not supported for this sandbox")
    force(server, box.id, "stopped")
    assert api_error(server, "POST", p) == (400, "Sandbox must be in started state to pause")
    dto = force(server, box.id, "started", sandboxClass="linux-vm")
    assert (dto["state"], dto["sandboxClass"]) == ("started", "linux-vm")
    st, dto = server.json("POST", p)
    assert st == 200 and dto["state"] == "pausing" and dto["desiredState"] == "paused"
    server.wait_state(box.id, ("paused",))
    st, _, body = box.req("GET", "/files", path="/home/daytona")
    assert st == 400 and b"Is the Sandbox started?" in body
    st, dto = server.json("POST", "/api/sandbox/%s/start" % box.id)
    assert st == 200 and dto["state"] == "started"
    assert box.req("GET", "/files", path="/home/daytona")[0] == 200


def test_start_from_paused_goes_through_resuming(tmp_path):
    from daytona_local.store import Store, ApiError
    s = Store(str(tmp_path), transition_ms=20)
    s.start_background()
    try:
        sid = s.create_sandbox({})["id"]
        s.wait_for(sid, lambda r: r and r["state"] == "started" and not r["pending"], 10)
        s.force_state(sid, "paused")
        s.set_timing(transition_ms=600000)
        dto, wait = s.start(sid)
        assert (dto["state"], dto["desiredState"], wait) == ("resuming", "started", True)
        s.force_state(sid, "paused", sandbox_class="container")
        with pytest.raises(ApiError) as e:
            s.start(sid)
        assert (e.value.status, e.value.message) == \
            (422, "Resuming is not supported for this sandbox")
    finally:
        s.close()


def test_stop_from_paused(server, box):
    force(server, box.id, "paused")
    st, dto = server.json("POST", "/api/sandbox/%s/stop" % box.id)
    assert st == 200
    server.wait_state(box.id, ("stopped",))


def test_state_messages_of_snapshot_resize_fork(server, box):
    sid = box.id
    force(server, sid, "archived")
    assert api_error(server, "POST", "/api/sandbox/%s/snapshot" % sid, {"name": "n1"}) == \
        (400, "Sandbox must be in started or stopped state to create a snapshot")
    assert api_error(server, "POST", "/api/sandbox/%s/resize" % sid, {"cpu": 2}) == \
        (400, "Sandbox must be in started or stopped state to resize")
    assert api_error(server, "POST", "/api/sandbox/%s/fork" % sid, {}) == \
        (422, "Forking is not supported for this sandbox")
    force(server, sid, "stopped", sandboxClass="linux-vm")
    assert api_error(server, "POST", "/api/sandbox/%s/fork" % sid, {}) == \
        (400, "Sandbox must be in started state to fork")
    force(server, sid, "started")
    assert api_error(server, "POST", "/api/sandbox/%s/resize" % sid, {"disk": 3}) == \
        (400, "Disk resize can only be performed on a stopped sandbox")
    assert api_error(server, "POST", "/api/sandbox/%s/resize" % sid, {"cpu": 1}) == \
        (400, "No resource changes specified - sandbox is already at the desired configuration")
    assert server.local("POST", "/sandbox/%s/state" % sid, {"state": "bogus"})[0] == 400


# --------------------------------------------------------------------------- the shell (issue 17)
def shell_of(box):
    return box.run("echo ${ZSH_VERSION:+zsh}${BASH_VERSION:+bash}")["result"]


def test_execute_runs_zsh_by_default_when_the_host_has_it(box):
    import shutil
    if shutil.which("zsh") is None:
        pytest.skip("no zsh on this host (scripts/install-deps installs it)")
    assert shell_of(box) == "zsh\n"


def test_shell_knob(server_factory):
    s = server_factory("--shell", "bash")
    b = Box(s)
    assert shell_of(b) == "bash\n"
    b.destroy()
