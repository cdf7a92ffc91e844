"""vercel-local over HTTP: fs/write archives, NDJSON streams, timeouts and resume, the knobs."""
import gzip
import io
import json
import tarfile
import urllib.request



def tar_gz(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.SYMTYPE
                info.linkname = "elsewhere"
                tf.addfile(info)
            else:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue())


def run(srv, sid, script, **extra):
    body = {"command": "sh", "args": ["-c", script], "wait": True, "logs": True}
    body.update(extra)
    status, headers, data = srv.request("POST", "/v2/sandboxes/sessions/%s/cmd" % sid, body)
    assert status == 200, data
    assert headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in data.split(b"\n") if line]


def stdout(lines):
    return "".join(x["data"] for x in lines if x.get("stream") == "stdout")


def local(srv, method, path, body=None):
    req = urllib.request.Request("http://%s:%d%s" % (srv.host, srv.port, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
    return json.loads(data) if data else None


def test_fs_write_extracts_relative_to_x_cwd_with_modes_and_long_names(vercel_server):
    sid = vercel_server.create("tar-ok")["session"]["id"]
    long_name = "sub/" + "\u00e9" * 60 + "/" + "n" * 120
    body = tar_gz([("a.txt", b"A", 0o600), (long_name, b"L", 0o755)])
    status, _, data = vercel_server.request(
        "POST", "/v2/sandboxes/sessions/%s/fs/write" % sid, body,
        {"content-type": "application/gzip", "x-cwd": "/vercel/sandbox/dest"})
    assert (status, data) == (200, b"{}")
    out = stdout(run(vercel_server, sid, "cd dest && stat -c '%%a %%s %%U' a.txt '%s'" % long_name))
    assert out == "600 1 ubuntu\n755 1 ubuntu\n"


def test_fs_write_with_a_bad_entry_writes_nothing(vercel_server):
    sid = vercel_server.create("tar-bad")["session"]["id"]
    body = tar_gz([("first.txt", b"1", 0o644), ("link", None, 0o777)])
    status, _, data = vercel_server.request(
        "POST", "/v2/sandboxes/sessions/%s/fs/write" % sid, body,
        {"content-type": "application/gzip"})
    assert status == 400 and json.loads(data)["error"]["code"] == "bad_request"
    assert stdout(run(vercel_server, sid, "ls -A")) == ""


def test_ndjson_stream_framing_with_large_output(vercel_server):
    sid = vercel_server.create("ndjson")["session"]["id"]
    lines = run(vercel_server, sid, "head -c 300000 /dev/zero | tr '\\0' x; echo; echo e >&2")
    assert lines[0]["command"]["exitCode"] is None
    assert lines[-1]["command"]["exitCode"] == 0
    assert all(set(x) == {"stream", "data"} for x in lines[1:-1])
    assert stdout(lines) == "x" * 300000 + "\n"
    cmd_id = lines[0]["command"]["id"]
    status, headers, data = vercel_server.request(
        "GET", "/v2/sandboxes/sessions/%s/cmd/%s/logs" % (sid, cmd_id))
    assert headers["content-type"] == "application/x-ndjson" and data.endswith(b"\n")
    replay = [json.loads(x) for x in data.split(b"\n") if x]
    assert stdout(replay) == stdout(lines)
    assert [x for x in replay if x["stream"] == "stderr"] == [{"stream": "stderr", "data": "e\n"}]


def test_ndjson_first_line_is_the_command_as_started_even_when_it_has_ended(vercel_server):
    """The first line has exitCode null even for a command that ended before the stream began
    (one that could not start has, at once): the SDK requires it. The conformance suite's
    'wait:true streams NDJSON' met a fast `sh -c` that had already ended (1 run in CI)."""
    sid = vercel_server.create("ndjson-first")["session"]["id"]
    body = {"command": "no-such-program-here", "args": [], "wait": True, "logs": True}
    status, headers, data = vercel_server.request("POST", "/v2/sandboxes/sessions/%s/cmd" % sid, body)
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in data.split(b"\n") if line]
    assert lines[0]["command"]["exitCode"] is None and "durationMs" not in lines[0]["command"]
    assert lines[-1]["command"]["exitCode"] == 127
    assert lines[-1]["command"]["id"] == lines[0]["command"]["id"]


def test_timeout_stops_then_resume_gives_a_new_session_with_the_files(vercel_server):
    created = vercel_server.create("timeout", timeout=60000)
    sid = created["session"]["id"]
    run(vercel_server, sid, "echo kept > f")
    try:
        # every timeout is due at once; the lifecycle thread or this reconcile pass stops it
        local(vercel_server, "PUT", "/_local/timing", {"minute_ms": 0})
        local(vercel_server, "POST", "/_local/reconcile")
    finally:
        local(vercel_server, "PUT", "/_local/timing", {"minute_ms": 60000})
    status, out = vercel_server.json("GET", "/v2/sandboxes/sessions/" + sid)
    assert out["session"]["status"] == "stopped"
    status, out = vercel_server.json("POST", "/v2/sandboxes/sessions/%s/cmd" % sid,
                                     {"command": "true"})
    assert (status, out["error"]["code"]) == (410, "sandbox_stopped")
    status, out = vercel_server.json(
        "GET", "/v2/sandboxes/timeout?resume=true&projectId=" + vercel_server.project)
    assert status == 200 and out["resumed"] is True
    new_sid = out["session"]["id"]
    assert new_sid != sid and out["sandbox"]["currentSessionId"] == new_sid
    assert stdout(run(vercel_server, new_sid, "cat f")) == "kept\n"


def test_a_status_fault_answers_with_vercel_error_body(vercel_server):
    local(vercel_server, "POST", "/_local/faults",
          {"pattern": "/v2/sandboxes$|/v2/sandboxes\\?", "status": 429, "retry_after": 7,
           "count": 1})
    status, headers, data = vercel_server.request("GET", "/v2/sandboxes")
    assert status == 429 and headers["retry-after"] == "7"
    assert json.loads(data)["error"]["code"] == "rate_limited"
    status, _, _ = vercel_server.request("GET", "/v2/sandboxes")
    assert status == 200
    local(vercel_server, "DELETE", "/_local/faults")


def test_a_fault_with_body_match_hits_only_the_commands_whose_body_matches(vercel_server):
    """Every command is POST .../cmd: a test that faults only the command that uploads (or
    lists) names it by its body; the command that is not faulted runs, with its body whole."""
    sid = vercel_server.create("body-match")["session"]["id"]
    local(vercel_server, "POST", "/_local/faults",
          {"pattern": "/cmd(\\?|$)", "method": "POST", "body_match": "UPLOAD_MARK", "status": 503})
    try:
        assert stdout(run(vercel_server, sid, "echo listing")) == "listing\n"
        status, _, data = vercel_server.request(
            "POST", "/v2/sandboxes/sessions/%s/cmd" % sid,
            {"command": "sh", "args": ["-c", "echo UPLOAD_MARK > marked"], "wait": True})
        assert status == 503 and json.loads(data)["error"]["code"] == "internal_server_error"
        assert stdout(run(vercel_server, sid, "ls marked 2>&1; echo done")).endswith("done\n")
        assert "No such file" in stdout(run(vercel_server, sid, "ls marked 2>&1"))
        rule = local(vercel_server, "GET", "/_local/faults")[0]
        assert (rule["body_match"], rule["hits"], rule["injected"]) == ("UPLOAD_MARK", 1, 1)
    finally:
        local(vercel_server, "DELETE", "/_local/faults")


def test_fs_read_serves_any_file_name_and_refuses_special_files(vercel_server):
    sid = vercel_server.create("read-names")["session"]["id"]
    run(vercel_server, sid, "printf euro > 'price-\u20ac.txt'; mkfifo pipe")
    status, headers, data = vercel_server.request(
        "POST", "/v2/sandboxes/sessions/%s/fs/read" % sid, {"path": "price-\u20ac.txt"})
    assert (status, data) == (200, b"euro")
    assert "filename*=UTF-8''price-%E2%82%AC.txt" in headers["content-disposition"]
    # a fifo without a writer would block a plain open() for ever
    status, _, data = vercel_server.request(
        "POST", "/v2/sandboxes/sessions/%s/fs/read" % sid, {"path": "pipe"})
    assert status == 400 and json.loads(data)["error"]["code"] == "bad_request"


def test_stats_reset_does_not_count_a_request_answered_before_it(vercel_server):
    """A request is recorded just after its answer is sent: a reset that a client sends
    right after that answer must not leave the request in the counts it starts (scripts/bench
    resets before each measurement and would count the previous request in it)."""
    for i in range(20):
        vercel_server.create("reset-race-%d" % i)
        local(vercel_server, "POST", "/_local/stats/reset")
        stats = local(vercel_server, "GET", "/_local/stats")
        assert stats["requests"] == 0, (i, stats)
        assert local(vercel_server, "GET", "/_local/log") == [], i


def test_file_api_acts_as_the_default_user(vercel_server):
    """fs/write, fs/mkdir and fs/read run as the sandbox's default user (CONTRACT.md §6, §7): a
    directory it may not write, or a file it may not read, is refused (403), and a refused
    write leaves nothing behind (no file, no temporary file)."""
    srv = vercel_server
    sid = srv.create("as-user")["session"]["id"]
    # (root's files go in a sticky directory: vercel-local's root has no CAP_DAC_OVERRIDE)
    setup = ("mkdir ro && chmod 555 ro && mkdir -m 1777 sticky && "
             "sudo sh -c 'umask 077; echo r > sticky/theirs; mkdir sticky/rootdir; "
             "echo secret > sticky/rootonly; chmod 755 sticky/rootdir; chmod 644 sticky/theirs'")
    lines = run(srv, sid, setup + " 2>&1")
    assert lines[-1]["command"]["exitCode"] == 0, stdout(lines)
    for name in ("ro/new.txt", "sticky/rootdir/new.txt", "sticky/rootdir/sub/new.txt"):
        status, _, data = srv.request(
            "POST", "/v2/sandboxes/sessions/%s/fs/write" % sid, tar_gz([(name, b"x", 0o644)]),
            {"content-type": "application/gzip", "x-cwd": "/vercel/sandbox"})
        assert status == 403, (name, data)
        assert json.loads(data)["error"]["code"] == "forbidden"
    out = stdout(run(srv, sid, "ls -A ro sticky/rootdir; cat sticky/theirs"))
    assert out == "ro:\n\nsticky/rootdir:\nr\n"
    status, _ = srv.json("POST", "/v2/sandboxes/sessions/%s/fs/mkdir" % sid, {"path": "ro/d"})
    assert status == 403
    status, _, _ = srv.request("POST", "/v2/sandboxes/sessions/%s/fs/read" % sid, {"path": "sticky/rootonly"})
    assert status == 403
    # what the user may do still works, and its files are the user's
    status, _, _ = srv.request(
        "POST", "/v2/sandboxes/sessions/%s/fs/write" % sid, tar_gz([("sticky/mine", b"m", 0o644)]),
        {"content-type": "application/gzip", "x-cwd": "/vercel/sandbox"})
    assert status == 200
    assert stdout(run(srv, sid, "stat -c %U sticky/mine")) == "ubuntu\n"


def test_routes_of_the_declared_ports_come_with_create_get_and_session(vercel_server):
    # CONTRACT.md section 4: SandboxAndSessionResponse and SessionAndRoutesResponse carry
    # routes [{url, subdomain, port}], one per port the create declared, in its order.
    made = vercel_server.create("routes-x", ports=[8080, 3000])
    routes = made["routes"]
    assert [r["port"] for r in routes] == [8080, 3000]
    for r in routes:
        assert set(r) == {"url", "subdomain", "port"}
        assert r["url"] == "https://%s.vercel.run" % r["subdomain"]
    assert len({r["subdomain"] for r in routes}) == 2
    from conftest import PROJECT
    status, got = vercel_server.json("GET", "/v2/sandboxes/routes-x?projectId=" + PROJECT)
    assert status == 200 and got["routes"] == routes
    status, sess = vercel_server.json("GET", "/v2/sandboxes/sessions/%s" % made["session"]["id"])
    assert status == 200 and sess["routes"] == routes
    assert vercel_server.create("routes-none")["routes"] == []
