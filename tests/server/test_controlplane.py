"""The /api routes over HTTP, the auth layer, /_local stats and the socket.io endpoint."""

import http.client
import json
import re
import socket
import threading
import time
import urllib.parse


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
ERROR_KEYS = ["path", "timestamp", "statusCode", "error", "message"]


def create(server, body=None, expect=200):
    st, b = server.json("POST", "/api/sandbox", body if body is not None else {}, expect=expect)
    return b


def assert_error(server, method, path, status, message, body=None, headers=None):
    st, h, data = server.request(method, path, body, headers)
    assert st == status, (st, data)
    b = json.loads(data)
    assert list(b) == ERROR_KEYS
    assert b["statusCode"] == status and b["path"] == path and ISO_MS.match(b["timestamp"])
    assert b["error"] == http.client.responses[status]
    if message is not None:
        assert b["message"] == message, b["message"]
    return b


# --------------------------------------------------------------------------- DTOs
def test_create_defaults_and_full_dto(server):
    b = create(server, {"env": {"A": "1"}})
    assert b["state"] == "started"                # the server waited for it (transition 20 ms)
    assert b["name"] == b["id"] and re.match(r"^[0-9a-f-]{36}$", b["id"])
    assert b["snapshot"] == "daytonaio/sandbox:0.5.0-slim"
    expected = {"user": "daytona", "env": {"A": "1"}, "labels": {}, "public": False,
                "networkBlockAll": False, "networkAllowList": None, "domainAllowList": None,
                "target": "us", "cpu": 1, "gpu": 0, "memory": 1, "disk": 3,
                "desiredState": "started", "errorReason": None, "recoverable": False,
                "backupState": "None", "autoStopInterval": 15, "autoArchiveInterval": 10080,
                "autoDeleteInterval": -1, "volumes": [], "sandboxClass": "container",
                "toolboxProxyUrl": server.base_url + "/toolbox"}
    for k, v in expected.items():
        assert b[k] == v, k
    for k in ("createdAt", "updatedAt", "lastActivityAt"):
        assert ISO_MS.match(b[k])
    for k in ("organizationId", "daemonVersion", "runnerId"):
        assert isinstance(b[k], str) and b[k]
    assert "buildInfo" not in b and "backupCreatedAt" not in b


def test_create_with_options_and_volumes(server):
    vol = "v1-%d" % time.time_ns()
    vid = server.json("POST", "/api/volumes", {"name": vol}, expect=200)[1]["id"]
    deadline = time.time() + 10
    while server.json("GET", "/api/volumes/" + vid)[1]["state"] != "ready":
        assert time.time() < deadline
        time.sleep(0.01)
    b = create(server, {"name": "opt-%d" % time.time_ns(), "user": "root", "labels": {"x": "y"},
                        "public": True, "target": "eu", "autoStopInterval": 0,
                        "autoArchiveInterval": 0, "autoDeleteInterval": 30,
                        "volumes": [{"volumeId": vol, "mountPath": "/data", "subpath": "a"}],
                        "spot": True, "ttlMinutes": 5})           # unknown fields are ignored
    assert (b["user"], b["public"], b["target"], b["autoStopInterval"]) == ("root", True, "eu", 0)
    assert b["autoArchiveInterval"] == 43200 and b["autoDeleteInterval"] == 30
    # a volume named by its name is stored by its ID
    assert b["volumes"] == [{"volumeId": vid, "mountPath": "/data", "subpath": "a"}]


def test_get_by_id_and_name_and_404(server):
    name = "named-%d" % time.time_ns()
    b = create(server, {"name": name})
    assert server.json("GET", "/api/sandbox/" + name, expect=200)[1]["id"] == b["id"]
    assert server.json("GET", "/api/sandbox/%s?verbose=true" % b["id"], expect=200)[1]["name"] == name
    assert_error(server, "GET", "/api/sandbox/missing", 404,
                 "Sandbox with ID or name missing not found")


def test_create_validation(server):
    assert_error(server, "POST", "/api/sandbox", 400,
                 "env must be an object, "          # DTO declaration order, like class-validator
                 "cpu must be a number conforming to the specified constraints",
                 {"cpu": "two", "env": [1]})
    assert_error(server, "POST", "/api/sandbox", 400, "public must be a boolean value",
                 {"public": "yes"})
    assert_error(server, "POST", "/api/sandbox", 400,
                 "Cannot specify Sandbox resources when using a snapshot", {"memory": 4})
    assert_error(server, "POST", "/api/sandbox", 400,
                 "Snapshot nope:1 not found. Did you add it through the Daytona Dashboard?",
                 {"snapshot": "nope:1"})
    assert_error(server, "POST", "/api/sandbox", 400, None, {"name": "<b>x</b>"})
    assert_error(server, "POST", "/api/sandbox", 400, "Unexpected token } in JSON at position 9",
                 '{"name": }', {"Content-Type": "application/json"})
    assert_error(server, "POST", "/api/sandbox", 413, "request entity too large",
                 {"labels": {"x": "y" * (2 << 20)}})
    assert_error(server, "POST", "/api/sandbox", 400, "Request body must be a JSON object", [1])
    name = "dup-%d" % time.time_ns()
    create(server, {"name": name})
    assert_error(server, "POST", "/api/sandbox", 409,
                 "Sandbox with name %s already exists" % name, {"name": name})


def test_create_with_chunked_body(server):
    conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
    body = json.dumps({"name": "chunky-%d" % time.time_ns(), "labels": {"c": "1"}}).encode()
    conn.request("POST", "/api/sandbox", body=iter([body[:7], body[7:]]),
                 headers={"Authorization": "Bearer " + server.api_key,
                          "Content-Type": "application/json"}, encode_chunked=True)
    r = conn.getresponse()
    b = json.loads(r.read())
    assert r.status == 200 and b["labels"] == {"c": "1"}
    conn.close()


def test_build_info_path(server):
    server.local("PUT", "/timing", {"transition_ms": 250})
    b = create(server, {"buildInfo": {"dockerfileContent": "FROM python:3.12-slim\n"},
                        "cpu": 2, "memory": 2, "disk": 5})
    assert b["state"] == "pending_build" and b["snapshot"] is None
    assert (b["cpu"], b["memory"], b["disk"]) == (2, 2, 5)
    assert set(b["buildInfo"]) == {"dockerfileContent", "contextHashes", "createdAt",
                                   "updatedAt", "snapshotRef"}
    seen = set()
    deadline = time.time() + 10
    while True:
        s = server.json("GET", "/api/sandbox/" + b["id"])[1]["state"]
        seen.add(s)
        if s == "started":
            break
        assert time.time() < deadline
        time.sleep(0.01)
    assert {"pending_build", "building_snapshot", "creating", "started"} <= seen
    assert_error(server, "POST", "/api/sandbox", 400, None,
                 {"buildInfo": {"dockerfileContent": "FROM x"}, "snapshot": "daytonaio/sandbox:0.5.0-slim"})


# --------------------------------------------------------------------------- lifecycle
def test_stop_start_archive_delete_over_http(server):
    server.local("PUT", "/timing", {"transition_ms": 400})
    b = create(server)
    sid = b["id"]
    st, s = server.json("POST", "/api/sandbox/%s/stop" % sid, expect=200)
    assert s["state"] == "stopping"
    assert_error(server, "POST", "/api/sandbox/%s/stop" % sid, 409,
                 "Sandbox state change in progress")
    assert_error(server, "POST", "/api/sandbox/%s/start" % sid, 409,
                 "Sandbox state change in progress")
    server.wait_state(sid, {"stopped"})
    st, s = server.json("POST", "/api/sandbox/%s/start" % sid, expect=200)
    assert s["state"] == "started"                          # start waits for started
    assert_error(server, "POST", "/api/sandbox/%s/archive" % sid, 400, "Sandbox is not stopped")
    server.json("POST", "/api/sandbox/%s/stop" % sid, expect=200)
    server.wait_state(sid, {"stopped"})
    assert server.json("POST", "/api/sandbox/%s/archive" % sid, expect=200)[1]["state"] == \
        "archiving"
    server.wait_state(sid, {"archived"})
    st, d = server.json("DELETE", "/api/sandbox/" + sid, expect=200)
    assert d["state"] == "destroying" and d["name"].startswith("DESTROYED_%s_" % b["name"])
    assert server.wait_state(sid, {404}) == 404


def test_ephemeral_stop_deletes(server):
    b = create(server, {"autoDeleteInterval": 0})
    st, s = server.json("POST", "/api/sandbox/%s/stop" % b["id"], expect=200)
    assert s["desiredState"] == "destroyed"
    assert server.wait_state(b["id"], {404}) == 404


def test_list_filters_and_pagination(server):
    server.local("PUT", "/timing", {"list_lag_ms": 0})      # list what was just created
    tag = "t%d" % time.time_ns()
    for i in range(5):
        create(server, {"name": "%s-%d" % (tag, i), "labels": {"grp": tag, "odd": str(i % 2)}})
    q = urllib.parse.quote(json.dumps({"grp": tag, "odd": "1"}))
    items = server.json("GET", "/api/sandbox?labels=" + q, expect=200)[1]["items"]
    assert sorted(x["name"] for x in items) == ["%s-1" % tag, "%s-3" % tag]
    assert "env" not in items[0] and "volumes" not in items[0] and items[0]["toolboxProxyUrl"]
    names = []
    cursor = None
    while True:
        path = "/api/sandbox?limit=2&sort=name&order=asc&name=" + tag.upper()
        if cursor:
            path += "&cursor=" + urllib.parse.quote(cursor)
        st, page = server.json("GET", path, expect=200)
        names += [x["name"] for x in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert names == ["%s-%d" % (tag, i) for i in range(5)]
    assert_error(server, "GET", "/api/sandbox?limit=0", 400, "limit must not be less than 1")
    assert_error(server, "GET", "/api/sandbox?limit=201", 400,
                 "limit must not be greater than 200")
    assert_error(server, "GET", "/api/sandbox?limit=abc", 400,
                 "limit must be a number conforming to the specified constraints")
    assert_error(server, "GET", "/api/sandbox?labels=%7Bbad", 400, "Invalid labels JSON format")
    assert_error(server, "GET", "/api/sandbox?states=destroyed", 400, None)
    st, page = server.json("GET", "/api/sandbox?states=started&states[]=stopped&limit=200",
                           expect=200)
    assert all(x["state"] in ("started", "stopped") for x in page["items"])
    st, page = server.json("GET", "/api/sandbox/paginated?page=1&limit=2&name=" + tag,
                           expect=200)
    assert page["total"] == 5 and page["totalPages"] == 3 and "env" in page["items"][0]


def test_subresources(server):
    sid = create(server)["id"]
    st, b = server.json("POST", "/api/sandbox/%s/autostop/30" % sid, expect=201)
    assert b["autoStopInterval"] == 30
    assert_error(server, "POST", "/api/sandbox/%s/autostop/-1" % sid, 400, None)
    assert_error(server, "POST", "/api/sandbox/%s/autostop/abc" % sid, 400,
                 "Validation failed (numeric string is expected)")
    assert server.json("POST", "/api/sandbox/%s/autoarchive/0" % sid,
                       expect=201)[1]["autoArchiveInterval"] == 43200
    assert server.json("POST", "/api/sandbox/%s/autoarchive/99999" % sid,
                       expect=201)[1]["autoArchiveInterval"] == 43200
    assert server.json("POST", "/api/sandbox/%s/autodelete/-5" % sid,
                       expect=201)[1]["autoDeleteInterval"] == -5
    assert server.json("POST", "/api/sandbox/%s/public/true" % sid, expect=201)[1]["public"]
    assert_error(server, "POST", "/api/sandbox/%s/public/maybe" % sid, 400,
                 "Validation failed (boolean string is expected)")
    st, b = server.json("PUT", "/api/sandbox/%s/labels" % sid, {"labels": {"only": "this"}},
                        expect=200)
    assert b["labels"] == {"only": "this"}
    st, h, body = server.request("POST", "/api/sandbox/%s/last-activity" % sid)
    assert (st, body) == (201, b"")
    assert server.json("GET", "/api/sandbox/%s/toolbox-proxy-url" % sid, expect=200)[1] == \
        {"url": server.base_url + "/toolbox"}
    st, b = server.json("POST", "/api/sandbox/%s/network-settings" % sid,
                        {"networkBlockAll": True}, expect=200)
    assert b["networkBlockAll"] is True
    assert_error(server, "POST", "/api/sandbox/%s/pause" % sid, 422, None)


def test_resize_over_http(server):
    sid = create(server)["id"]
    st, b = server.json("POST", "/api/sandbox/%s/resize" % sid, {"cpu": 2}, expect=200)
    assert b["state"] == "resizing"
    b = server.wait_state(sid, {"started"})
    assert b["cpu"] == 2
    assert_error(server, "POST", "/api/sandbox/%s/resize" % sid, 400,
                 "cpu must not be less than 1", {"cpu": 0})
    assert_error(server, "POST", "/api/sandbox/%s/resize" % sid, 400, None, {"disk": 10})


def test_sandbox_snapshot_and_snapshots_api(server):
    sid = create(server)["id"]
    name = "snap-%d" % time.time_ns()
    st, b = server.json("POST", "/api/sandbox/%s/snapshot" % sid, {"name": name}, expect=200)
    assert b["state"] == "snapshotting"
    server.wait_state(sid, {"started"})
    st, snap = server.json("GET", "/api/snapshots/" + name, expect=200)
    assert snap["state"] == "active" and snap["name"] == name and "mem" in snap
    create(server, {"snapshot": name})
    st, lst = server.json("GET", "/api/snapshots?limit=200", expect=200)
    assert {"items", "total", "page", "totalPages"} == set(lst)
    assert lst["items"][-1]["general"] is True                  # general snapshots last
    assert any(s["name"] == "daytonaio/sandbox:0.5.0-slim" for s in lst["items"])
    img = "img-%d" % time.time_ns()
    st, s = server.json("POST", "/api/snapshots", {"name": img, "imageName": "alpine:3.20"},
                        expect=200)
    assert s["state"] == "pending"
    assert_error(server, "POST", "/api/snapshots", 409,
                 'Snapshot with name "%s" already exists for this organization' % img,
                 {"name": img, "imageName": "alpine:3.20"})
    assert_error(server, "POST", "/api/snapshots", 400,
                 'Images with tag ":latest" are not allowed', {"name": "x1", "imageName": "a:latest"})
    assert_error(server, "POST", "/api/snapshots", 400,
                 "Image name must include a tag (e.g., ubuntu:22.04) or digest (@sha256:...)",
                 {"name": "x2", "imageName": "alpine"})
    assert_error(server, "DELETE", "/api/snapshots/" + img, 400,
                 "Validation failed (uuid is expected)")
    st, h, body = server.request("POST", "/api/snapshots/%s/deactivate" % s["id"])
    assert st == 204
    assert server.json("POST", "/api/snapshots/%s/activate" % s["id"],
                       expect=200)[1]["state"] == "active"
    st, h, body = server.request("DELETE", "/api/snapshots/" + s["id"])
    assert (st, body) == (200, b"")
    st, found = server.json("GET", "/api/snapshots?name=" + img[:8], expect=200)
    assert all(img[:8] in x["name"] for x in found["items"])


# --------------------------------------------------------------------------- auth, routing
def test_auth_errors(server):
    assert_error(server, "GET", "/api/sandbox", 401, "Invalid credentials",
                 headers={"Authorization": None})
    assert_error(server, "GET", "/api/sandbox", 401, "Invalid credentials",
                 headers={"Authorization": "Bearer wrong"})
    st, h, body = server.request("GET", "/toolbox/x/files", headers={"Authorization": None})
    b = json.loads(body)
    assert st == 401 and b["code"] == "UNAUTHORIZED"
    assert b["message"].startswith("unauthorized: authentication failed: ")
    assert set(b) == {"statusCode", "message", "code", "timestamp", "path", "method"}


def test_jwt_auth(server_factory):
    s = server_factory("--jwt", "jwt-token")
    st, b = s.json("GET", "/api/sandbox", headers={"Authorization": "Bearer jwt-token"})
    assert st == 403 and b["message"] == "Invalid authentication context"
    org = s.json("POST", "/api/sandbox", {}, expect=200)[1]["organizationId"]
    st, b = s.json("GET", "/api/sandbox", headers={"Authorization": "Bearer jwt-token",
                                                    "X-Daytona-Organization-ID": org})
    assert st == 200


def test_unknown_routes_and_head(server):
    assert_error(server, "GET", "/api/nope", 404, "Cannot GET /api/nope")
    assert_error(server, "PATCH", "/api/sandbox", 404, "Cannot PATCH /api/sandbox")
    st, h, body = server.request("GET", "/toolbox/abc/definitely/not/a/route")
    assert (st, body) in ((404, b"404 page not found"), (401, body))
    st, h, body = server.request("HEAD", "/api/sandbox")
    assert st == 200 and body == b"" and int(h["content-length"]) > 0


def test_bad_query_encoding_and_garbage_never_kill_the_server(server):
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(b"\x00\x01\x02 garbage\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 400")
    s.close()
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(b"POST /api/sandbox HTTP/1.1\r\nContent-Length: 100\r\nAuthorization: Bearer "
              + server.api_key.encode() + b"\r\n\r\n{\"na")
    s.close()                                                  # disconnect mid-body
    st, h, body = server.request("GET", "/api/sandbox?name=%ZZ&limit=%20")
    assert st in (200, 400)
    assert server.local("GET", "/health")[0] == 200


def test_parallel_requests(server):
    sid = create(server)["id"]
    errors = []

    def worker():
        try:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
            for _ in range(50):
                conn.request("GET", "/api/sandbox/" + sid,
                             headers={"Authorization": "Bearer " + server.api_key})
                r = conn.getresponse()
                assert r.status == 200 and json.loads(r.read())["id"] == sid
            conn.close()
        except Exception as e:
            errors.append(e)
    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


# --------------------------------------------------------------------------- /_local
def test_stats_and_log(server):
    assert server.local("POST", "/stats/reset")[0] == 204
    sid = create(server)["id"]
    server.request("GET", "/api/sandbox/" + sid)
    server.request("GET", "/api/sandbox/" + sid + "?x=1")
    server.request("GET", "/api/zzz")
    st, _, body = server.local("GET", "/stats")
    stats = json.loads(body)
    assert stats["requests"] == 4
    assert stats["routes"] == {"POST /api/sandbox": 1, "GET /api/sandbox/{idOrName}": 2,
                               "GET <unmatched>": 1}
    assert stats["bytes_in"] == 2 and stats["bytes_out"] > 0
    st, _, body = server.local("GET", "/log?limit=2")
    log = json.loads(body)
    assert [e["path"] for e in log] == ["/api/sandbox/%s?x=1" % sid, "/api/zzz"]
    e = log[0]
    assert set(e) == {"t", "method", "path", "route", "status", "bytes_in", "bytes_out", "ms"}
    assert e["route"] == "GET /api/sandbox/{idOrName}" and e["status"] == 200


def test_timing_knob(server):
    assert server.local("PUT", "/timing", {"transition_ms": 300})[0] == 204
    sid = create(server)["id"]
    t0 = time.monotonic()
    server.json("POST", "/api/sandbox/%s/stop" % sid, expect=200)
    server.wait_state(sid, {"stopped"})
    assert time.monotonic() - t0 >= 0.25
    assert server.local("PUT", "/timing", {"transition_ms": "x"})[0] == 400


# --------------------------------------------------------------------------- socket.io
def test_socketio_polling_handshake_connect_and_event(server):
    base = "/api/socket.io/?EIO=4&transport=polling"
    st, h, body = server.request("GET", base, headers={"Authorization": None})
    assert st == 200 and body.startswith(b"0{")
    hs = json.loads(body[1:])
    assert hs["upgrades"] == [] and hs["pingInterval"] == 25000 and hs["pingTimeout"] == 20000
    sid = hs["sid"]
    path = base + "&sid=" + sid
    st, _, body = server.request("POST", path, '40{"token":"wrong"}', {"Authorization": None})
    assert (st, body) == (200, b"ok")
    st, _, body = server.request("GET", path, headers={"Authorization": None})
    assert body.startswith(b"44")
    st, _, body = server.request("POST", path, '40{"token":"%s"}' % server.api_key,
                                 {"Authorization": None})
    st, _, body = server.request("GET", path, headers={"Authorization": None})
    assert body.startswith(b'40{"sid":')
    b = create(server, {"name": "sio-%d" % time.time_ns()})
    got = b""
    deadline = time.time() + 5
    while b'"sandbox.created"' not in got and time.time() < deadline:
        got += server.request("GET", path, headers={"Authorization": None})[2]
    assert b'42["sandbox.created",' in got and b["id"].encode() in got
    assert server.request("POST", path, "1", {"Authorization": None})[0] == 200
    assert server.request("GET", path, headers={"Authorization": None})[0] == 400


def test_socketio_bad_version(server):
    st, _, body = server.request("GET", "/api/socket.io/?EIO=3&transport=polling")
    assert st == 400


# --------------------------------------------------------------------------- persistence
def test_restart_keeps_state_and_finishes_transitions(server_factory, tmp_path):
    s1 = server_factory(data_dir=str(tmp_path))
    b = s1.json("POST", "/api/sandbox", {"name": "keep", "labels": {"k": "v"}}, expect=200)[1]
    s1.local("PUT", "/timing", {"transition_ms": 600000})
    s1.json("POST", "/api/sandbox/keep/stop", expect=200)
    s1.stop()
    s2 = server_factory(data_dir=str(tmp_path))
    st, g = s2.json("GET", "/api/sandbox/keep", expect=200)
    assert g["id"] == b["id"] and g["labels"] == {"k": "v"}
    assert g["organizationId"] == b["organizationId"]
    assert s2.wait_state(b["id"], {"stopped"})["state"] == "stopped"


# --------------------------------------------------------------------------- command line
def test_cli_api_key_sources(tmp_path, monkeypatch):
    from daytona_local.server import parse_args
    monkeypatch.delenv("DAYTONA_LOCAL_API_KEY", raising=False)
    assert parse_args([]).api_key == "local-dev-key"
    monkeypatch.setenv("DAYTONA_LOCAL_API_KEY", "from-env")
    assert parse_args([]).api_key == "from-env"
    f = tmp_path / "key"
    f.write_text("from-file\n")
    assert parse_args(["--api-key-file", str(f)]).api_key == "from-file"
    a = parse_args(["--no-auth"])
    assert a.no_auth and a.api_key is None
    assert parse_args([]).port == 3986 and parse_args([]).transition_ms == 300


def test_sigterm_is_a_clean_shutdown(server_factory):
    s = server_factory()
    s.json("POST", "/api/sandbox", {"name": "bye"}, expect=200)
    t0 = time.monotonic()
    s.stop()
    assert s.proc.returncode == 0 and time.monotonic() - t0 < 3
    state = json.load(open(s.data_dir + "/state.json"))
    assert [x["name"] for x in state["sandboxes"]] == ["bye"]
