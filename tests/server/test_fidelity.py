"""The real service's quirks that the local server reproduces by default (FIDELITY.md D1-D12,
reliability report L1-L4), each with the knob that turns it off or tunes it."""

import json
import time

import pytest

from daytona_local.faults import FaultRule
from test_toolbox import Box, multipart_body


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
