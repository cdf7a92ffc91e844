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
