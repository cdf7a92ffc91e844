"""scripts/bench's round-trip counting: on made-up lifetimes and sshfs logs, and on the
local server's own request log (/_local/log) for requests sent one after another or
together."""

import importlib.machinery
import importlib.util
import os
import json
import threading

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
        for method in ("start", "stop", "reset", "stats", "round_trips", "ensure_sandbox", "sandbox_tree",
                       "mount_env", "mount_opts", "download_url", "list_url", "upload_args", "execute_entry"):
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
    assert s.list_url("bench") == "http://x/toolbox/%s/files?path=/home/daytona/bench" % sid
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
