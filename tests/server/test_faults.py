"""Fault injection: rule decisions (unit) and the /_local/faults knob end to end."""

import http.client
import json
import random
import socket
import threading
import time

import pytest

from daytona_local.faults import FaultRule, FaultSet, FaultSpecError


def decisions(rule, n):
    return [rule.decide() for _ in range(n)]


def test_schedule_is_consumed_per_matching_request_then_stops():
    r = FaultRule("f1", {"pattern": "x", "schedule": [True, False, True]})
    assert decisions(r, 6) == [True, False, True, False, False, False]
    assert (r.hits, r.injected) == (6, 2)


def test_count_caps_injections():
    r = FaultRule("f1", {"pattern": "x", "count": 2})
    assert decisions(r, 4) == [True, True, False, False]
    r = FaultRule("f1", {"pattern": "x", "count": 1, "schedule": [False, True, True]})
    assert decisions(r, 3) == [False, True, False]


def test_rate_is_probabilistic_and_reproducible():
    r1 = FaultRule("f1", {"pattern": "x", "rate": 0.3}, rng=random.Random(7))
    r2 = FaultRule("f1", {"pattern": "x", "rate": 0.3}, rng=random.Random(7))
    d1, d2 = decisions(r1, 2000), decisions(r2, 2000)
    assert d1 == d2
    assert 450 < sum(d1) < 750
    assert decisions(FaultRule("f", {"pattern": "x", "rate": 0.0}), 50) == [False] * 50
    assert decisions(FaultRule("f", {"pattern": "x", "rate": 1.0}), 50) == [True] * 50


def test_match_by_regex_and_method():
    r = FaultRule("f1", {"pattern": r"/files\?path=/a", "method": "get"})
    assert r.matches("GET", "/toolbox/x/files?path=/a/b")
    assert not r.matches("POST", "/toolbox/x/files?path=/a/b")
    assert not r.matches("GET", "/toolbox/x/files?path=/b")


def test_match_by_body():
    r = FaultRule("f1", {"pattern": "/cmd$", "body_match": "UP_EOF"})
    assert r.matches("POST", "/v2/sandboxes/sessions/s/cmd", lambda: b'{"args":["x UP_EOF"]}')
    assert not r.matches("POST", "/v2/sandboxes/sessions/s/cmd", lambda: b'{"args":["find"]}')
    assert not r.matches("POST", "/v2/sandboxes/sessions/s/cmd", lambda: None)   # unreadable
    assert not r.matches("POST", "/v2/sandboxes/sessions/s/cmd")
    with pytest.raises(FaultSpecError):
        FaultRule("f1", {"pattern": "x", "body_match": "("})


def test_faultset_first_injecting_rule_wins_and_later_rules_do_not_advance():
    fs = FaultSet()
    a = fs.add({"pattern": "sandbox", "schedule": [False, True]})
    b = fs.add({"pattern": "sandbox", "schedule": [True, True, True]})
    assert fs.pick("GET", "/api/sandbox").id == b.id      # a declines, b injects
    assert fs.pick("GET", "/api/sandbox").id == a.id      # a injects; b not consulted
    assert b.hits == 1 and a.hits == 2
    assert fs.pick("GET", "/api/other") is None
    assert fs.remove(a.id) and not fs.remove(a.id)
    fs.clear()
    assert fs.list() == []


@pytest.mark.parametrize("spec", [
    {"pattern": "(", "action": "status"},
    {"pattern": "x", "action": "explode"},
    {"pattern": "x", "rate": 2},
    {"pattern": "x", "schedule": [1, 0]},
    {"pattern": "x", "count": -1},
    {"pattern": "x", "status": 99},
    "not an object",
])
def test_invalid_specs(spec):
    with pytest.raises(FaultSpecError):
        FaultRule("f", spec)


# --------------------------------------------------------------------------- end to end
def add_fault(server, spec):
    st, _, body = server.local("POST", "/faults", spec)
    assert st == 201, body
    return json.loads(body)["id"]


def test_status_fault_with_retry_after_and_hit_counts(server):
    fid = add_fault(server, {"pattern": "^/api/sandbox$", "method": "GET", "action": "status",
                             "status": 429, "retry_after": 2, "schedule": [True, False]})
    st, h, body = server.request("GET", "/api/sandbox")
    assert st == 429 and h["retry-after"] == "2"
    b = json.loads(body)
    assert b["statusCode"] == 429 and b["message"] == "ThrottlerException: Too Many Requests"
    assert set(b) == {"path", "timestamp", "statusCode", "error", "message"}
    assert server.request("GET", "/api/sandbox")[0] == 200
    assert server.request("POST", "/api/sandbox", {"name": "x" * 300 + "<"})[0] == 400  # no match
    st, _, body = server.local("GET", "/faults")
    (f,) = json.loads(body)
    assert (f["id"], f["hits"], f["injected"]) == (fid, 2, 1)
    assert server.local("DELETE", "/faults/" + fid)[0] == 204
    assert server.local("DELETE", "/faults/" + fid)[0] == 404


def test_toolbox_status_fault_has_toolbox_shape(server):
    add_fault(server, {"pattern": "^/toolbox/", "status": 503})
    st, _, body = server.request("GET", "/toolbox/abc/files")
    b = json.loads(body)
    assert st == 503 and b["code"] == "INTERNAL_SERVER_ERROR" and b["method"] == "GET"
    server.local("DELETE", "/faults")
    add_fault(server, {"pattern": "^/toolbox/", "status": 502})
    st, _, body = server.request("GET", "/toolbox/abc/files")
    assert (st, body) == (502, b"")


def test_status_fault_with_a_given_body(server):
    body = {"code": "NOT_FOUND", "message": "not found: sandbox container not found: x"}
    add_fault(server, {"pattern": "^/toolbox/", "status": 404, "body": body, "count": 1})
    st, h, got = server.request("GET", "/toolbox/abc/files")
    assert st == 404 and json.loads(got) == body
    add_fault(server, {"pattern": "^/toolbox/", "status": 401, "body": "plain words", "count": 1})
    st, h, got = server.request("GET", "/toolbox/abc/files")
    assert (st, got) == (401, b"plain words")
    st, _, got = server.local("POST", "/faults", {"pattern": "x", "action": "drop", "body": "b"})
    assert st == 400


def test_drop_closes_without_response(server):
    add_fault(server, {"pattern": "/api/sandbox", "action": "drop", "count": 1})
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        server.request("GET", "/api/sandbox")
    assert server.request("GET", "/api/sandbox")[0] == 200


def test_slow_throttles_body(server):
    add_fault(server, {"pattern": "^/api/sandbox/", "action": "slow", "bytes_per_sec": 4000})
    st, body = server.json("POST", "/api/sandbox", {}, expect=200)
    t0 = time.monotonic()
    st, _, data = server.request("GET", "/api/sandbox/" + body["id"])
    elapsed = time.monotonic() - t0
    assert st == 200 and json.loads(data)["id"] == body["id"]
    assert elapsed >= len(data) / 4000 * 0.8


def test_hold_acts_only_after_its_wait(server):
    """A held request has done nothing until its wait is over (unlike slow, whose command has
    run before its answer trickles): a sandbox it creates is not there meanwhile."""
    add_fault(server, {"pattern": "^/api/sandbox$", "method": "POST", "action": "hold",
                       "seconds": 1.5, "count": 1})
    made = []
    t = threading.Thread(target=lambda: made.append(
        server.json("POST", "/api/sandbox", {"name": "held-by-a-fault"}, expect=200)))
    t0 = time.monotonic()
    t.start()
    time.sleep(0.7)
    assert server.request("GET", "/api/sandbox/held-by-a-fault")[0] == 404
    t.join(10)
    assert time.monotonic() - t0 >= 1.5
    assert made and made[0][1]["name"] == "held-by-a-fault"
    assert server.request("GET", "/api/sandbox/held-by-a-fault")[0] == 200


def test_hold_seconds_are_checked():
    with pytest.raises(FaultSpecError):
        FaultRule("f1", {"pattern": "x", "action": "hold", "seconds": -1})
    with pytest.raises(FaultSpecError):
        FaultRule("f1", {"pattern": "x", "action": "hold", "seconds": "2"})


def test_reset_mid_body_sends_half_then_closes(server):
    st, body = server.json("POST", "/api/sandbox", {}, expect=200)
    add_fault(server, {"pattern": "^/api/sandbox/", "action": "reset_mid_body", "count": 1})
    s = socket.create_connection((server.host, server.port), timeout=5)
    s.sendall(("GET /api/sandbox/%s HTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n"
               % (body["id"], server.api_key)).encode())
    data = b""
    while True:
        d = s.recv(65536)
        if not d:
            break
        data += d
    head, _, partial = data.partition(b"\r\n\r\n")
    length = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
                 .split(b":")[1])
    assert head.startswith(b"HTTP/1.1 200") and len(partial) == length // 2
    assert server.request("GET", "/api/sandbox/" + body["id"])[0] == 200     # count exhausted


def test_faults_do_not_touch_local_and_bad_spec_is_400(server):
    add_fault(server, {"pattern": ".*", "status": 500})
    assert server.local("GET", "/health")[0] == 200
    assert server.request("GET", "/api/sandbox")[0] == 500
    server.local("DELETE", "/faults")
    st, _, body = server.local("POST", "/faults", {"pattern": "x", "action": "nope"})
    assert st == 400 and b"action" in body


def test_latency_knob(server):
    assert server.local("PUT", "/latency", {"ms": 300})[0] == 204
    t0 = time.monotonic()
    assert server.request("GET", "/api/sandbox")[0] == 200
    assert time.monotonic() - t0 >= 0.29
    t0 = time.monotonic()
    assert server.local("GET", "/health")[0] == 200          # /_local is never delayed
    assert time.monotonic() - t0 < 0.25
    assert server.local("PUT", "/latency", {"ms": -1})[0] == 400
