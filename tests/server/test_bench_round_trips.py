"""scripts/bench's round-trip counting: on made-up lifetimes and sshfs logs, and on the
local server's own request log (/_local/log) for requests sent one after another or
together."""

import importlib.machinery
import importlib.util
import os
import json
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_bench():
    path = os.path.join(ROOT, "scripts", "bench")
    loader = importlib.machinery.SourceFileLoader("bench_script", path)
    spec = importlib.util.spec_from_loader("bench_script", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


bench = load_bench()


def test_round_trips_counts_groups_of_overlapping_lifetimes():
    assert bench.round_trips([], 0) == 0
    assert bench.round_trips([(0.0, 1.0), (2.0, 3.0), (4.0, 5.0)], 0) == 3
    # overlapping directly or through another: one round trip
    assert bench.round_trips([(0.0, 1.0), (0.5, 2.0), (1.5, 3.0)], 0) == 1
    # unsorted input; a request inside another's lifetime
    assert bench.round_trips([(4.0, 5.0), (0.0, 3.0), (1.0, 2.0)], 0) == 2


def test_round_trips_slack_joins_near_requests_and_keeps_chained_ones_apart():
    # 50 ms one way: sent together but arriving 10 ms apart, sub-ms at the server
    together = [(0.0, 0.0005), (0.010, 0.0105)]
    assert bench.round_trips(together, 0) == 2
    assert bench.round_trips(together, 0.025) == 1
    # sent after the answer: 100 ms after the first ended at the server
    chained = [(0.0, 0.001), (0.101, 0.102)]
    assert bench.round_trips(chained, 0.025) == 2


def test_sftp_round_trips_from_sshfs_debug_log():
    log = "\n".join([
        "[00001] LSTAT",
        "  [00001]          ATTRS       45bytes (0ms)",
        "[00002] OPEN",
        "  [00002]         HANDLE       29bytes (0ms)",
        "[00003] READ",
        "[00004] READ",
        "some other line",
        "  [00003]           DATA    32781bytes (0ms)",
        "[00005] READ",                     # sent while 4 is outstanding: same round trip
        "  [00004]           DATA    32781bytes (0ms)",
        "  [00005]           DATA    32781bytes (0ms)",
        "[00006] CLOSE",
        "  [00006]         STATUS       28bytes (0ms)",
    ])
    assert bench.sftp_round_trips(log) == 4


def test_log_round_trips_from_the_servers_request_log(server):
    """Requests that the server holds 40 ms each: three one after another are three
    round trips, four sent together are one."""
    server.local("PUT", "/latency", {"ms": 40})

    def get():
        st, _, _ = server.request("GET", "/api/sandbox")
        assert st == 200

    def log():
        st, _, data = server.local("GET", "/log")
        assert st == 200
        return json.loads(data)

    server.local("POST", "/stats/reset")
    for _ in range(3):
        get()
        # The server writes a request's end into its log just after the
        # answer went out; on a loaded machine that can be late enough to
        # overlap the start of a request sent at once after it. A pause
        # keeps "one after another" what the log shows, whatever the load.
        time.sleep(0.15)
    entries = log()
    assert len(entries) == 3
    assert bench.log_round_trips(entries, 0) == 3

    server.local("POST", "/stats/reset")
    threads = [threading.Thread(target=get) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    entries = log()
    assert len(entries) == 4
    assert bench.log_round_trips(entries, 0) == 1


def test_select_workloads_takes_names_and_aliases_in_the_benchs_order():
    assert bench.select_workloads("exec,grep") == ["smallfiles", "exec"]
    assert bench.select_workloads(" tar , grep,smallfiles ") == ["smallfiles"]
    assert bench.select_workloads("cat,write,read") == ["seqread", "seqwrite", "catsmall"]
    assert bench.select_workloads(",".join(bench.WORKLOADS)) == bench.WORKLOADS
    for bad in ("nope", "exec,nope", "", " , "):
        try:
            bench.select_workloads(bad)
        except ValueError:
            continue
        raise AssertionError("accepted %r" % bad)
    # Every alias names a workload.
    assert set(bench.ALIASES.values()) <= set(bench.WORKLOADS)


def test_only_and_provider_options():
    args = bench.parse_args(["--only", "exec,grep", "--binary", "/bin/true", "--no-sshfs", "--quick"])
    assert args.workloads == ["smallfiles", "exec"]
    assert args.provider == "daytona"
    args = bench.parse_args(["--workloads", "ls", "--binary", "/bin/true", "--no-sshfs"])
    assert args.workloads == ["ls"]
    assert args.workloads and bench.parse_args(["--binary", "/bin/true", "--no-sshfs"]).workloads == bench.WORKLOADS
    for argv in (["--only", "nope"], ["--provider", "nope"]):
        try:
            bench.parse_args(argv + ["--binary", "/bin/true", "--no-sshfs"])
        except SystemExit as e:
            assert e.code == 2
            continue
        raise AssertionError("accepted %r" % argv)


def test_every_provider_offers_what_the_bench_uses():
    for name, cls in bench.PROVIDERS.items():
        assert cls.name == name
        assert cls.home.startswith("/")
        assert cls.read_routes and all(" /" in r for r in cls.read_routes)
        for method in ("start", "stop", "reset", "stats", "round_trips", "ensure_sandbox", "sandbox_tree",
                       "own", "unsupported", "mount_env", "mount_opts", "download_entry", "ranged_entries",
                       "list_entry", "upload_args", "execute_entry"):
            assert callable(getattr(cls, method, None)), (name, method)


def curl_config_value(line):
    """The value of a curl config line `key = "value"`, unescaped as curl does."""
    _, _, quoted = line.partition(" = ")
    assert quoted[0] == '"' and quoted[-1] == '"'
    out, it = [], iter(quoted[1:-1])
    for c in it:
        out.append(next(it) if c == "\\" else c)
    return "".join(out)


def test_daytona_limit_requests():
    """The curl limit's requests of the Daytona provider, as the bench builds them."""
    s = bench.Server("/nonexistent")
    sid = "sb-1"
    s.sandbox_id = sid
    s.base = "http://x"
    assert s.download_url("bench/a b.bin") == "http://x/toolbox/%s/files/download?path=/home/daytona/bench/a b.bin" % sid
    assert s.download_entry("bench/a b.bin") == ['url = "%s"' % s.download_url("bench/a b.bin")]
    assert s.ranged_entries("f", [(0, 4096), (8192, 10)]) == [
        ['url = "%s"' % s.download_url("f"), 'range = "0-4095"'],
        ['url = "%s"' % s.download_url("f"), 'range = "8192-8201"']]
    assert s.list_entry("bench") == ['url = "http://x/toolbox/%s/files?path=/home/daytona/bench"' % sid]
    args = s.upload_args("bench/w.bin", "/tmp/src")
    assert args[-1] == "http://x/toolbox/%s/files/bulk-upload" % sid
    assert "files[0].path=/home/daytona/bench/w.bin" in args
    entry = s.execute_entry("echo out; echo err >&2")
    assert curl_config_value(entry[0]) == "http://x/toolbox/%s/process/execute" % sid
    body = json.loads(curl_config_value(entry[2]))
    assert body == {"command": "sh -c 'echo out; echo err >&2'"}
    assert json.loads(curl_config_value(s.execute_entry("true")[2])) == {"command": "true"}


def test_read_ahead_kb_of_a_path_that_is_no_mount_or_has_no_bdi():
    # / is on a disk whose bdi may or may not be listed; a missing path is None.
    assert bench.read_ahead_kb("/nonexistent/path") is None
    kb = bench.read_ahead_kb("/")
    assert kb is None or kb >= 0


def vercel_entry(entry):
    """(url, method, content type, JSON body) of a Vercel curl entry."""
    d = dict((line.partition(" = ")[0], curl_config_value(line)) for line in entry)
    return d["url"], d.get("request"), d.get("header"), json.loads(d["data"]) if "data" in d else None


def test_vercel_limit_requests():
    """The curl limit's requests of the Vercel provider: Vercel's API per
    ../shared/vercel-api/CONTRACT.md (fs/read with a path, no ranges, no
    listing: a command; POST cmd with wait and logs)."""
    s = bench.VercelServer("/nonexistent")
    s.api_url, s.session_id = "http://x/api", "sbx_1"
    at = "http://x/api/v2/sandboxes/sessions/sbx_1/%s?teamId=" + s.team
    read = s.download_entry('bench/a "b".bin')
    assert vercel_entry(read) == (at % "fs/read", "POST", "Content-Type: application/json",
                                  {"path": '/vercel/sandbox/bench/a "b".bin'})
    # No Range in fs/read: one whole-file read serves any number of ranges.
    assert s.ranged_entries('bench/a "b".bin', [(0, 4096), (8192, 4096)]) == [read]
    url, method, _, body = vercel_entry(s.list_entry("bench"))
    assert (url, method) == (at % "cmd", "POST")
    assert body["command"] == "ls" and body["args"] == ["-la", "/vercel/sandbox/bench"]
    assert body["wait"] is True and body["logs"] is True
    _, _, _, body = vercel_entry(s.execute_entry("echo out; echo err >&2"))
    assert (body["command"], body["args"], body["wait"], body["logs"]) == \
        ("sh", ["-c", "echo out; echo err >&2"], True, True)
    assert vercel_entry(s.execute_entry("true"))[3]["command"] == "true"
    opts = s.mount_opts()
    # No client-side quota: the times are the mount's, the quota follows from req/act.
    assert opts == ["provider=vercel", "api_url=http://x/api", "rate_limit=0"]
    env = s.mount_env()
    assert env["VERCEL_TOKEN"] == bench.API_KEY and env["VERCEL_TEAM_ID"] == s.team
    assert env["VERCEL_PROJECT_ID"] == s.project
    # Daytona's credentials and an OIDC token of the caller's environment are dropped.
    assert env["DAYTONA_API_KEY"] is None and env["VERCEL_OIDC_TOKEN"] is None


def test_vercel_upload_is_one_stored_tar_gz_of_the_file():
    work = tempfile.mkdtemp(prefix="bench-vercel-")
    try:
        s = bench.VercelServer(work)
        s.api_url, s.session_id = "http://x/api", "sbx_1"
        src = os.path.join(work, "src.bin")
        data = os.urandom(100000)
        with open(src, "wb") as f:
            f.write(data)
        args = s.upload_args("bench/w.bin", src)
        assert args[-1] == "http://x/api/v2/sandboxes/sessions/sbx_1/fs/write?teamId=" + s.team
        assert "Content-Type: application/gzip" in args and "x-cwd: /vercel/sandbox" in args
        tgz = args[args.index("--data-binary") + 1][1:]
        with tarfile.open(tgz, "r:gz") as t:
            names = t.getnames()
            assert names == ["bench/w.bin"]
            assert t.extractfile("bench/w.bin").read() == data
        # Stored, not compressed (as daytonafs sends it): the archive is no smaller than the file.
        assert os.path.getsize(tgz) >= len(data)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_vercel_workloads_it_cannot_run_say_why():
    s = bench.VercelServer("/nonexistent")
    why = s.unsupported("seqwrite", dict(bench.PROFILES[0]))
    assert why and "1 GiB" in why
    assert s.unsupported("seqwrite", dict(bench.QUICK[0])) is None
    for w in bench.WORKLOADS:
        if w != "seqwrite":
            assert s.unsupported(w, dict(bench.PROFILES[0])) is None, w
    assert bench.Server("/nonexistent").unsupported("seqwrite", dict(bench.PROFILES[0])) is None


def test_vercel_server_of_the_bench_counts_its_limit_requests():
    """The bench's VercelServer against scripts/vercel-local: the sandbox, the
    host tree daytonafs and sshfs share, and the curl limit's entries served as
    one request each, counted by /_local/stats with their round trips."""
    work = tempfile.mkdtemp(prefix="bench-vercel-")
    s = bench.VercelServer(work)
    try:
        s.start(0)
        assert s.ensure_sandbox() == bench.SANDBOX
        tree = s.sandbox_tree()
        os.makedirs(os.path.join(tree, "bench"))
        s.own(os.path.join(tree, "bench"))
        if os.geteuid() == 0:
            assert os.stat(os.path.join(tree, "bench")).st_uid == s.user_id
        with open(os.path.join(tree, "bench", "f.txt"), "w") as f:
            f.write("x" * 5000)
        b = bench.Bench.__new__(bench.Bench)
        cases = [
            ([s.download_entry("bench/f.txt")], "POST /api/v2/sandboxes/sessions/{sid}/fs/read"),
            (s.ranged_entries("bench/f.txt", [(0, 10), (4096, 10)]), "POST /api/v2/sandboxes/sessions/{sid}/fs/read"),
            ([s.list_entry("bench")], "POST /api/v2/sandboxes/sessions/{sid}/cmd"),
            ([s.execute_entry("echo out; echo err >&2")] * 3, "POST /api/v2/sandboxes/sessions/{sid}/cmd"),
        ]
        for entries, route in cases:
            s.reset()
            b.curl_many(entries)
            reqs, nbytes, full = s.stats()
            assert full["routes"] == {route: len(entries)}, full
            assert reqs == len(entries)
            # curl's transfers follow one another: one round trip each
            assert s.round_trips(0, reqs) == len(entries)
        s.reset()
        b.curl("-o", "/dev/null", *s.upload_args("bench/up.bin", os.path.join(tree, "bench", "f.txt")))
        reqs, _, full = s.stats()
        assert full["routes"] == {"POST /api/v2/sandboxes/sessions/{sid}/fs/write": 1}
        with open(os.path.join(tree, "bench", "up.bin")) as f:
            assert f.read() == "x" * 5000
        # A second start on the same data (the next latency) resumes the sandbox, files kept.
        s.stop()
        s.start(0)
        s.ensure_sandbox()
        assert os.path.exists(os.path.join(s.sandbox_tree(), "bench", "up.bin"))
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_vercel_server_of_the_bench_behind_the_latency_proxy():
    """At a latency above 0 the mount and curl reach vercel-local through the
    latency proxy (its API URL is the proxy's), and requests sent one after
    another through it are as many round trips."""
    work = tempfile.mkdtemp(prefix="bench-vercel-")
    s = bench.VercelServer(work)
    try:
        s.start(30)
        assert s.proxy is not None
        assert s.api_url == "http://127.0.0.1:%d/api" % s.proxy.port
        assert s.mount_opts()[1] == "api_url=" + s.api_url
        s.ensure_sandbox()
        b = bench.Bench.__new__(bench.Bench)
        s.reset()
        b.curl_many([s.execute_entry("true")] * 3)
        reqs, _, _ = s.stats()
        assert reqs == 3
        assert s.round_trips(30, reqs) == 3
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_tar_x_with_writeback_is_a_workload_of_its_own_judged_against_the_extracts_baseline():
    assert bench.select_workloads("writeback") == ["tarwb"]
    assert bench.select_workloads("tar,writeback") == ["smallfiles", "tarwb"]
    row = ("small files", "extract (%s)" % bench.Bench.TARWB_OPT)
    assert row in bench.ISSUE12

    class B:
        baseline = {"rates": {"50": {"small files/extract": 6.6}}}

    assert bench.baseline_rate(B, 50, *row) == 6.6
    assert bench.baseline_rate(B, 50, "small files", "extract") == 6.6
    assert bench.baseline_rate(B, 50, "small files", "grep -r") is None
