"""Issue 16's sandbox surface on the local server: volumes, network settings, build logs and
their states, preview URLs (signed ones and the proxy), /system/metrics, /env and the cgroup
files a sandbox's commands read."""

import http.client
import json
import re
import socket
import threading
import time

import pytest


def create(server, **body):
    status, dto = server.json("POST", "/api/sandbox", body)
    assert status == 200, dto
    return dto


def started(server, **body):
    dto = create(server, **body)
    return server.wait_state(dto["id"], ("started",))


def delete(server, sid):
    server.request("DELETE", "/api/sandbox/" + sid)


def execute(server, sid, command):
    status, body = server.json("POST", "/toolbox/%s/process/execute" % sid,
                               {"command": command})
    assert status == 200, body
    return body


def wait_volume(server, vid, state, timeout=10):
    deadline = time.time() + timeout
    while True:
        status, v = server.json("GET", "/api/volumes/" + vid)
        if status == 200 and v["state"] == state:
            return v
        assert time.time() < deadline, (status, v)
        time.sleep(0.01)


def new_volume(server, name):
    status, v = server.json("POST", "/api/volumes", {"name": name}, expect=200)
    return wait_volume(server, v["id"], "ready")


# ------------------------------------------------------------------------------ volumes
def test_volume_create_goes_pending_create_to_ready_with_the_dto_shape(server):
    status, v = server.json("POST", "/api/volumes", {"name": "vol-shape"})
    assert status == 200
    assert v["state"] == "pending_create"
    assert set(v) == {"id", "name", "organizationId", "state", "createdAt", "updatedAt",
                      "lastUsedAt", "errorReason"}
    assert v["name"] == "vol-shape" and v["lastUsedAt"] is None and v["errorReason"] is None
    ready = wait_volume(server, v["id"], "ready")
    assert server.json("GET", "/api/volumes/by-name/vol-shape")[1]["id"] == v["id"]
    assert v["id"] in [x["id"] for x in server.json("GET", "/api/volumes")[1]]
    assert ready["createdAt"] == v["createdAt"]


def test_volume_errors_are_the_apis(server):
    new_volume(server, "vol-dup")
    status, body = server.json("POST", "/api/volumes", {"name": "vol-dup"})
    assert status == 400 and body["message"] == "Volume with name vol-dup already exists"
    status, body = server.json("POST", "/api/volumes", {})
    assert status == 400 and "name must be a string" in body["message"]
    status, body = server.json("GET", "/api/volumes/by-name/no-such-vol")
    assert status == 404 and body["message"] == "Volume with name no-such-vol not found"
    missing = "00000000-0000-4000-8000-000000000000"
    status, body = server.json("GET", "/api/volumes/" + missing)
    assert status == 404 and body["message"] == "Volume with ID %s not found" % missing
    status, body = server.json("DELETE", "/api/volumes/" + missing)
    assert status == 404
    status, body = server.json("GET", "/api/volumes?includeDeleted=maybe")
    assert status == 400


def test_volume_delete_goes_to_deleted_and_frees_the_name(server):
    v = new_volume(server, "vol-del")
    status, _, data = server.request("DELETE", "/api/volumes/" + v["id"])
    assert (status, data) == (200, b"")
    assert server.json("GET", "/api/volumes/" + v["id"])[1]["state"] in (
        "pending_delete", "deleting", "deleted")
    # not deletable again until it is ready or error
    status, body = server.json("DELETE", "/api/volumes/" + v["id"])
    assert status == 400 and "'ready' or 'error'" in body["message"]
    wait_volume(server, v["id"], "deleted")
    assert v["id"] not in [x["id"] for x in server.json("GET", "/api/volumes")[1]]
    assert v["id"] in [x["id"] for x in
                       server.json("GET", "/api/volumes?includeDeleted=true")[1]]
    assert server.json("GET", "/api/volumes/by-name/vol-del")[0] == 404
    again = new_volume(server, "vol-del")
    assert again["id"] != v["id"]


def test_a_volume_in_use_cannot_be_deleted_until_its_sandbox_is(server):
    v = new_volume(server, "vol-busy")
    sb = started(server, name="uses-vol-busy",
                 volumes=[{"volumeId": "vol-busy", "mountPath": "/data"}])
    assert sb["volumes"] == [{"volumeId": v["id"], "mountPath": "/data"}]   # name -> ID
    status, body = server.json("DELETE", "/api/volumes/" + v["id"])
    assert status == 409
    assert body["message"] == ("Volume cannot be deleted because it is in use by one or more "
                               "sandboxes (e.g. uses-vol-busy)")
    assert server.json("GET", "/api/volumes/" + v["id"])[1]["state"] == "ready"
    assert server.json("GET", "/api/volumes/" + v["id"])[1]["lastUsedAt"] is not None
    delete(server, sb["id"])
    status, _, _ = server.request("DELETE", "/api/volumes/" + v["id"])
    assert status == 200


def test_create_with_a_missing_or_unready_volume_is_refused(server, server_factory):
    status, body = server.json("POST", "/api/sandbox",
                               {"volumes": [{"volumeId": "nope", "mountPath": "/data"}]})
    assert status == 404 and body["message"] == "Volume 'nope' not found"
    v = new_volume(server, "vol-paths")
    for bad in ("data", "/usr/x", "/", "/a/../b", "/proc"):
        status, body = server.json("POST", "/api/sandbox",
                                   {"volumes": [{"volumeId": v["id"], "mountPath": bad}]})
        assert status == 400, (bad, body)
    slow = server_factory(transition_ms=60000)      # volumes stay pending_create
    status, v = slow.json("POST", "/api/volumes", {"name": "vol-slow"}, expect=200)
    status, body = slow.json("POST", "/api/sandbox",
                             {"volumes": [{"volumeId": v["id"], "mountPath": "/d"}]})
    assert status == 400
    assert body["message"] == ("Volume 'vol-slow' is not in a ready state. Current state: "
                               "pending_create")


def test_a_volumes_files_are_shared_by_the_sandboxes_that_mount_it(server):
    new_volume(server, "vol-files")
    a = started(server, volumes=[{"volumeId": "vol-files", "mountPath": "/data"}])
    b = started(server, volumes=[{"volumeId": "vol-files",
                                  "mountPath": "/home/daytona/shared"}])
    c = started(server, volumes=[{"volumeId": "vol-files", "mountPath": "/sub",
                                  "subpath": "alice"}])
    try:
        assert execute(server, a["id"], "echo hello > /data/greeting && "
                                        "mkdir -p /data/alice && echo hi > /data/alice/x")[
            "exitCode"] == 0
        assert execute(server, b["id"], "cat /home/daytona/shared/greeting")["result"] == \
            "hello\n"
        assert execute(server, c["id"], "ls /sub && cat /sub/x")["result"] == "x\nhi\n"
        # the file API sees the same tree at the same path
        status, _, data = server.request(
            "GET", "/toolbox/%s/files/download?path=/home/daytona/shared/greeting" % b["id"])
        assert (status, data) == (200, b"hello\n")
        status, names = server.json("GET", "/toolbox/%s/files?path=/data" % a["id"])
        assert sorted(n["name"] for n in names) == ["alice", "greeting"]
        # a sandbox without the volume does not see it
        other = started(server)
        assert execute(server, other["id"], "cat /data/greeting 2>/dev/null; echo $?")[
            "result"] != "hello\n0\n"
        delete(server, other["id"])
    finally:
        for s in (a, b, c):
            delete(server, s["id"])


# ------------------------------------------------------------------------------ network
def test_network_settings_at_create_are_validated_and_shown(server):
    sb = create(server, networkBlockAll=True, networkAllowList="10.0.0.0/8,192.168.1.0/24")
    assert sb["networkBlockAll"] is True
    assert sb["networkAllowList"] == "10.0.0.0/8,192.168.1.0/24"
    delete(server, sb["id"])
    cases = {"10.0.0.0": 'Invalid network format: "10.0.0.0". Missing CIDR prefix length '
                         '(e.g., /24)',
             "300.1.1.1/8": 'Invalid IP address: "300.1.1.1" in network "300.1.1.1/8". Must be '
                            'a valid IPv4 address',
             "10.0.0.0/33": "Invalid CIDR prefix length: 10.0.0.0/33. Prefix must be between 0 "
                            "and 32",
             ",".join("10.0.%d.0/24" % i for i in range(11)):
                 "Network allow list cannot contain more than 10 networks"}
    for value, message in cases.items():
        status, body = server.json("POST", "/api/sandbox", {"networkAllowList": value})
        assert (status, body["message"]) == (400, message), value
    sb = started(server)
    status, body = server.json("POST", "/api/sandbox/%s/network-settings" % sb["id"],
                               {"networkAllowList": "1.2.3.4"})
    assert status == 400 and "Missing CIDR prefix" in body["message"]
    status, body = server.json("POST", "/api/sandbox/%s/network-settings" % sb["id"],
                               {"networkAllowList": ",".join(["10.0.0.0/24"] * 10)})
    assert status == 200 and body["networkAllowList"].count(",") == 9
    delete(server, sb["id"])


def _listener():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    return s


def test_network_block_all_cuts_new_processes_off_the_network(server):
    lst = _listener()
    port = lst.getsockname()[1]
    probe = ("exec 3<>/dev/tcp/127.0.0.1/%d && echo reached || echo blocked" % port)
    sb = started(server)
    try:
        shell = "bash -c '%s' 2>/dev/null" % probe
        assert execute(server, sb["id"], shell)["result"] == "reached\n"
        server.json("POST", "/api/sandbox/%s/network-settings" % sb["id"],
                    {"networkBlockAll": True}, expect=200)
        assert execute(server, sb["id"], shell)["result"] == "blocked\n"
        server.json("POST", "/api/sandbox/%s/network-settings" % sb["id"],
                    {"networkBlockAll": False}, expect=200)
        assert execute(server, sb["id"], shell)["result"] == "reached\n"
    finally:
        lst.close()
        delete(server, sb["id"])


# ------------------------------------------------------------------------------ builds
def _build_server(server_factory, build_ms):
    return server_factory("--build-ms", str(build_ms), "--list-lag-ms", "0")


def test_an_image_build_goes_through_its_states_and_writes_its_log_over_time(server_factory):
    srv = _build_server(server_factory, 1500)
    dockerfile = "FROM python:3.12-slim\nRUN pip install numpy \\\n    pandas\nWORKDIR /app\n"
    sb = create(srv, buildInfo={"dockerfileContent": dockerfile})
    assert sb["state"] == "pending_build"
    seen, partial = set(), None
    deadline = time.time() + 20
    while time.time() < deadline:
        _, dto = srv.json("GET", "/api/sandbox/" + sb["id"])
        seen.add(dto["state"])
        status, _, log = srv.request("GET", "/api/sandbox/%s/build-logs" % sb["id"])
        assert status == 200
        if dto["state"] == "building_snapshot" and log and \
                b"Successfully tagged" not in log:
            partial = log
        if dto["state"] == "started":
            break
        time.sleep(0.02)
    assert {"pending_build", "building_snapshot", "started"} <= seen, seen
    assert partial is not None, "no partial log while building"
    status, _, full = srv.request("GET", "/api/sandbox/%s/build-logs" % sb["id"])
    text = full.decode()
    assert full.startswith(partial)
    assert "Step 1/3 : FROM python:3.12-slim\n" in text
    assert "Step 2/3 : RUN pip install numpy pandas\n" in text
    assert "Step 3/3 : WORKDIR /app\n" in text
    assert text.rstrip("\n").split("\n")[-1].startswith("Successfully tagged ")


def test_followed_build_logs_stream_until_the_build_ends(server_factory):
    srv = _build_server(server_factory, 800)
    sb = create(srv, buildInfo={"dockerfileContent": "FROM debian:12\nRUN true\n"})
    status, body = srv.json("GET", "/api/sandbox/%s/build-logs-url" % sb["id"])
    assert status == 200
    assert body == {"url": "%s/api/sandbox/%s/build-logs" % (srv.base_url, sb["id"])}
    conn = http.client.HTTPConnection(srv.host, srv.port, timeout=30)
    conn.request("GET", "/api/sandbox/%s/build-logs?follow=true" % sb["id"],
                 headers={"Authorization": "Bearer " + srv.api_key})
    r = conn.getresponse()
    assert r.status == 200 and r.getheader("Transfer-Encoding") == "chunked"
    chunks = []
    while True:
        c = r.read1(65536)
        if not c:
            break
        chunks.append(c)
    conn.close()
    text = b"".join(chunks).decode()
    assert len(chunks) > 1, "the log came in one piece"
    assert text.startswith("Sending build context") and "Successfully tagged" in text
    _, dto = srv.json("GET", "/api/sandbox/" + sb["id"])
    assert dto["state"] not in ("pending_build", "building_snapshot")
    status, body = srv.json("GET", "/api/sandbox/%s/build-logs?follow=yes" % sb["id"])
    assert status == 400


def test_build_logs_of_a_sandbox_from_a_snapshot_are_refused(server):
    sb = create(server)
    status, body = server.json("GET", "/api/sandbox/%s/build-logs" % sb["id"])
    assert status == 400
    assert server.json("GET", "/api/sandbox/nope/build-logs")[0] == 404
    delete(server, sb["id"])


def test_snapshot_from_a_dockerfile_has_build_logs(server_factory):
    srv = _build_server(server_factory, 300)
    status, snap = srv.json("POST", "/api/snapshots", {
        "name": "built-snap", "buildInfo": {"dockerfileContent": "FROM alpine:3.20\n"}})
    assert status == 200
    status, body = srv.json("GET", "/api/snapshots/%s/build-logs-url" % snap["id"])
    assert body == {"url": "%s/api/snapshots/%s/build-logs" % (srv.base_url, snap["id"])}
    status, _, log = srv.request("GET", "/api/snapshots/%s/build-logs?follow=true" % snap["id"])
    assert status == 200 and b"Step 1/1 : FROM alpine:3.20\n" in log
    assert srv.json("GET", "/api/snapshots/" + snap["id"])[1]["state"] == "active"


# ------------------------------------------------------------------------------ previews
class _Upstream:
    """A tiny HTTP server on loopback standing for a server in the sandbox."""

    def __init__(self):
        self.sock = _listener()
        self.port = self.sock.getsockname()[1]
        self.seen = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with c:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, rest = data.partition(b"\r\n\r\n")
                self.seen.append(head.decode())
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    k, _, v = line.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(rest) < length:
                    rest += c.recv(65536)
                body = b"upstream got " + head.split(b"\r\n")[0] + b" " + rest
                c.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: %d\r\nX-Up: 1\r\n"
                          b"Connection: close\r\n\r\n" % len(body) + body)

    def close(self):
        self.sock.close()


def _via_preview(server, url, method="GET", path="/x?y=1", body=None, headers=None):
    host = url.split("://", 1)[1]
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}, Host=host))
        r = conn.getresponse()
        return r.status, r.getheader("X-Up"), r.read()
    finally:
        conn.close()


def test_preview_url_forwards_to_the_port_with_the_token(server):
    up = _Upstream()
    sb = started(server)
    try:
        _, link = server.json("GET", "/api/sandbox/%s/ports/%d/preview-url" % (sb["id"], up.port),
                              expect=200)
        assert set(link) == {"sandboxId", "url", "token"}
        assert link["url"] == "http://%d-%s.localhost:%d" % (up.port, sb["id"], server.port)
        status, _, body = _via_preview(server, link["url"])
        assert status == 401                     # private: the token is needed
        status, xup, body = _via_preview(server, link["url"], "POST", "/x?y=1", b"data",
                                         {"X-Daytona-Preview-Token": link["token"]})
        assert (status, xup, body) == (201, "1", b"upstream got POST /x?y=1 HTTP/1.1 data")
        server.json("POST", "/api/sandbox/%s/public/true" % sb["id"], expect=201)
        status, _, body = _via_preview(server, link["url"], path="/pub")
        assert (status, body) == (201, b"upstream got GET /pub HTTP/1.1 ")
        assert server.json("GET", "/api/sandbox/%s/ports/0/preview-url" % sb["id"])[0] == 400
    finally:
        up.close()
        delete(server, sb["id"])


def test_preview_of_a_closed_port_or_stopped_sandbox_is_a_502(server):
    sb = started(server, public=True)
    lst = _listener()
    port = lst.getsockname()[1]
    lst.close()                                   # nothing listens there now
    _, link = server.json("GET", "/api/sandbox/%s/ports/%d/preview-url" % (sb["id"], port))
    assert _via_preview(server, link["url"])[0] == 502
    delete(server, sb["id"])


def test_signed_preview_urls_work_without_a_token_until_expired(server):
    up = _Upstream()
    sb = started(server)
    try:
        status, s = server.json(
            "GET", "/api/sandbox/%s/ports/%d/signed-preview-url?expiresInSeconds=120"
            % (sb["id"], up.port))
        assert status == 200
        assert set(s) == {"sandboxId", "port", "token", "url"}
        assert (s["sandboxId"], s["port"]) == (sb["id"], up.port)
        assert s["url"] == "http://%d-%s.localhost:%d" % (up.port, s["token"], server.port)
        assert _via_preview(server, s["url"], path="/s")[0] == 201
        status, _, data = server.request(
            "POST", "/api/sandbox/%s/ports/%d/signed-preview-url/%s/expire"
            % (sb["id"], up.port, s["token"]))
        assert (status, data) == (200, b"")
        assert _via_preview(server, s["url"], path="/s")[0] != 201
        assert len(up.seen) == 1
        assert re.fullmatch(r"[0-9a-z]{16}", s["token"])
        for q in ("0", "86401", "abc"):
            status, _ = server.json(
                "GET", "/api/sandbox/%s/ports/%d/signed-preview-url?expiresInSeconds=%s"
                % (sb["id"], up.port, q))
            assert status == 400, q
    finally:
        up.close()
        delete(server, sb["id"])


# ------------------------------------------------------------------------------ toolbox
def test_system_metrics_has_the_0218_shape_and_the_sandboxs_limits(server):
    sb = started(server)
    execute(server, sb["id"], "head -c 100000 /dev/zero > /home/daytona/blob")
    status, m = server.json("GET", "/toolbox/%s/system/metrics" % sb["id"])
    assert status == 200
    assert set(m) == {"cpuCount", "cpuUsedPct", "memTotal", "memUsed", "memCache", "diskTotal",
                      "diskUsed", "diskFree", "timestamp", "timestampUnix"}
    assert m["cpuCount"] == sb["cpu"]
    assert m["memTotal"] == sb["memory"] << 30
    assert m["diskTotal"] == sb["disk"] << 30
    assert m["diskUsed"] >= 100000
    assert m["diskFree"] == m["diskTotal"] - m["diskUsed"]
    assert 0 <= m["cpuUsedPct"] <= 100
    delete(server, sb["id"])


def test_env_update_reaches_later_processes_until_the_sandbox_stops(server):
    sb = started(server, env={"KEEP": "k", "DROP": "d", "SECRET": "ph:1"})
    sid = sb["id"]
    probe = 'echo "$KEEP/${DROP-unset}/${SECRET-unset}/${NEW-unset}"'
    assert execute(server, sid, probe)["result"] == "k/d/ph:1/unset\n"
    status, body = server.json("POST", "/toolbox/%s/env" % sid,
                               {"set": {"NEW": "n"}, "unset": ["DROP"],
                                "unsetValuePrefix": "ph:"})
    assert status == 200, body
    assert execute(server, sid, probe)["result"] == "k/unset/unset/n\n"
    for bad in ({"set": {"A=B": "x"}}, {"set": {"A": 1}}, {"unset": "A"}, []):
        status, _, _ = server.request("POST", "/toolbox/%s/env" % sid, json.dumps(bad),
                                      {"Content-Type": "application/json"})
        assert status == 400, bad
    server.json("POST", "/api/sandbox/%s/stop" % sid, expect=200)
    server.wait_state(sid, ("stopped",))
    server.json("POST", "/api/sandbox/%s/start" % sid, expect=200)
    server.wait_state(sid, ("started",))
    assert execute(server, sid, probe)["result"] == "k/d/ph:1/unset\n"
    delete(server, sid)


def test_cgroup_files_show_the_sandboxs_limits_and_df_works(server):
    sb = started(server)
    out = execute(server, sb["id"], "cd /sys/fs/cgroup && for f in cpu.stat memory.current "
                                    "memory.peak memory.max cpu.max; do printf '%s=' $f; "
                                    "head -1 $f; done; df -P / | tail -1")
    assert out["exitCode"] == 0, out
    lines = out["result"].splitlines()
    vals = dict(ln.split("=", 1) for ln in lines[:5])
    assert vals["memory.max"] == str(sb["memory"] << 30)
    assert vals["cpu.max"] == "%d 100000" % (sb["cpu"] * 100000)
    assert vals["cpu.stat"].startswith("usage_usec ")
    assert int(vals["memory.peak"]) >= int(vals["memory.current"]) >= 0
    size, used, avail = (int(x) for x in lines[5].split()[1:4])
    assert size > 0 and 0 <= used <= size and avail <= size
    delete(server, sb["id"])


@pytest.mark.parametrize("path", ["/system/metrics", "/env"])
def test_surface_toolbox_calls_need_a_started_sandbox(server, path):
    sb = started(server)
    server.json("POST", "/api/sandbox/%s/stop" % sb["id"], expect=200)
    server.wait_state(sb["id"], ("stopped",))
    method = "GET" if path == "/system/metrics" else "POST"
    status, _, _ = server.request(method, "/toolbox/%s%s" % (sb["id"], path), {"set": {}})
    assert status == 400
    delete(server, sb["id"])


def test_concurrent_commands_all_start_while_the_cgroup_files_are_rewritten(server):
    """Each start rewrites the sandbox's cgroup files; starts at the same time must not trip
    over each other (they once made every other one fail to exec)."""
    sb = started(server)
    results = [None] * 12

    def run(i):
        results[i] = execute(server, sb["id"], "echo %d" % i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [{"exitCode": 0, "result": "%d\n" % i} for i in range(len(results))]
    delete(server, sb["id"])


def test_volumes_and_their_files_survive_a_restart(server_factory, tmp_path):
    data = str(tmp_path / "data")
    first = server_factory("--list-lag-ms", "0", data_dir=data)
    vol = new_volume(first, "vol-kept")
    sb = started(first, volumes=[{"volumeId": vol["id"], "mountPath": "/kept"}])
    assert execute(first, sb["id"], "echo stays > /kept/f")["exitCode"] == 0
    first.stop()
    second = server_factory("--list-lag-ms", "0", data_dir=data)
    assert second.json("GET", "/api/volumes/" + vol["id"])[1]["state"] == "ready"
    assert second.json("GET", "/api/volumes/by-name/vol-kept")[1]["id"] == vol["id"]
    assert execute(second, sb["id"], "cat /kept/f")["result"] == "stays\n"
    status, body = second.json("DELETE", "/api/volumes/" + vol["id"])
    assert status == 409


def test_the_preview_endpoints_the_proxy_asks(server):
    priv = started(server)
    pub = started(server, public=True)
    sid = priv["id"]
    try:
        missing = "00000000-0000-4000-8000-000000000000"
        assert server.json("GET", "/api/preview/%s/public" % pub["id"]) == (200, True)
        status, body = server.json("GET", "/api/preview/%s/public" % sid)
        assert (status, body["message"]) == (404, "Sandbox with ID %s not found" % sid)
        _, link = server.json("GET", "/api/sandbox/%s/ports/3000/preview-url" % sid)
        assert server.json("GET", "/api/preview/%s/validate/%s" % (sid, link["token"])) == \
            (200, True)
        assert server.json("GET", "/api/preview/%s/validate/wrong" % sid)[0] == 404
        assert server.json("GET", "/api/preview/%s/access" % sid) == (200, True)
        assert server.json("GET", "/api/preview/%s/access" % missing)[0] == 404
        _, signed = server.json("GET", "/api/sandbox/%s/ports/3000/signed-preview-url" % sid)
        status, headers, data = server.request(
            "GET", "/api/preview/%s/3000/sandbox-id" % signed["token"])
        assert (status, data) == (200, sid.encode())
        status, body = server.json("GET", "/api/preview/%s/3001/sandbox-id" % signed["token"])
        assert (status, body["message"]) == (403, "Invalid or expired token")
        server.request("POST", "/api/sandbox/%s/ports/3000/signed-preview-url/%s/expire"
                       % (sid, signed["token"]))
        assert server.json("GET", "/api/preview/%s/3000/sandbox-id" % signed["token"])[0] == 403
        status, body = server.json(
            "GET", "/api/sandbox/%s/ports/3000/signed-preview-url?expiresInSeconds=0" % sid)
        assert (status, body["message"]) == (
            400, "expiresInSeconds must be between 1 second and 24 hours")
    finally:
        delete(server, sid)
        delete(server, pub["id"])


def test_the_preview_token_is_new_after_each_start(server):
    up = _Upstream()
    sb = started(server)
    sid = sb["id"]
    try:
        _, link = server.json("GET", "/api/sandbox/%s/ports/%d/preview-url" % (sid, up.port))
        assert re.fullmatch(r"[0-9a-z_-]{32}", link["token"])
        assert server.json("GET", "/api/sandbox/%s/ports/1/preview-url" % sid)[1]["token"] == \
            link["token"]
        server.json("POST", "/api/sandbox/%s/stop" % sid, expect=200)
        server.wait_state(sid, ("stopped",))
        server.json("POST", "/api/sandbox/%s/start" % sid, expect=200)
        server.wait_state(sid, ("started",))
        _, again = server.json("GET", "/api/sandbox/%s/ports/%d/preview-url" % (sid, up.port))
        assert again["token"] != link["token"]
        old = {"X-Daytona-Preview-Token": link["token"]}
        assert _via_preview(server, link["url"], headers=old)[0] == 401
        new = {"X-Daytona-Preview-Token": again["token"]}
        assert _via_preview(server, again["url"], headers=new)[0] == 201
        assert server.json("GET", "/api/preview/%s/validate/%s" % (sid, link["token"]))[0] == 404
    finally:
        up.close()
        delete(server, sid)
