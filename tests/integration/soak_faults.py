# SPDX-License-Identifier: Apache-2.0
"""The faults of the soak (test_faults_soak.py), through the local server's
POST /_local/faults, and the bound they put on one operation.

Every kind gets its own rule on both the control plane and the toolbox, each
at the same rate r, chosen so that their union is the target rate:
1 - (1 - r) ** kinds = rate (the server tries the rules in order and the first
that injects wins). Each rule's pattern carries a regex comment with the seed
and the kind: the server seeds a rule's random generator from its pattern, so
that the rules draw independently, and a seed gives the same decisions for the
same sequence of requests.
"""

PATTERN = r"^/(api|toolbox)/"
SLOW_BYTES_PER_SEC = 512 * 1024
RETRY_AFTER_S = 1

KINDS = [
    ("500", {"action": "status", "status": 500}),
    ("502", {"action": "status", "status": 502}),
    ("503", {"action": "status", "status": 503}),
    ("429", {"action": "status", "status": 429, "retry_after": RETRY_AFTER_S}),
    ("drop", {"action": "drop"}),
    ("reset_mid_body", {"action": "reset_mid_body"}),
    ("slow", {"action": "slow", "bytes_per_sec": SLOW_BYTES_PER_SEC}),
]

# From src/http.c: the backoff before retry i (0-based) is at most
# min(200 ms * 2^i, 10 s), and a Retry-After is waited out instead when longer.
BACKOFF_BASE_MS, BACKOFF_CAP_MS = 200, 10000
# The most requests one syscall of the workload makes one after another
# (doc/SEMANTICS.md: a lookup lists the parent or asks files/info, then the
# operation itself; a rename uploads the staged source first).
CALLS_PER_SYSCALL = 3


def per_rule_rate(rate):
    return 1.0 - (1.0 - rate) ** (1.0 / len(KINDS))


def install(server, rate, seed):
    """Adds one rule per kind; returns {rule id: kind}."""
    server.local("DELETE", "/_local/faults")
    r = per_rule_rate(rate)
    ids = {}
    for kind, spec in KINDS:
        rule = dict(spec, pattern=f"{PATTERN}(?#soak seed {seed} {kind})", rate=r)
        ids[server.local("POST", "/_local/faults", rule)["id"]] = kind
    return ids


def injected(server, ids):
    """Faults injected so far, by kind, and the requests the rules saw."""
    by_kind = {kind: 0 for kind, _ in KINDS}
    seen = 0
    for rule in server.local("GET", "/_local/faults"):
        if rule["id"] in ids:
            by_kind[ids[rule["id"]]] += rule["injected"]
            seen = max(seen, rule["hits"])     # the first rule sees every matching request
    return by_kind, seen


def request_bound_s(timeout_s, retries):
    """The longest one request of the mount may take, retries included: every
    attempt may run into the timeout (the total for a request, the time without
    progress for a transfer), and every retry waits its backoff or Retry-After."""
    waits = 0.0
    for i in range(retries):
        backoff = min(BACKOFF_BASE_MS * 2 ** i, BACKOFF_CAP_MS) / 1000.0
        waits += max(backoff, RETRY_AFTER_S)
    return (retries + 1) * timeout_s + waits


def syscall_bound_s(timeout_s, retries, max_size):
    """The bound on one syscall: a few requests in a row, plus the time a slow
    body of the largest file takes (a transfer's timeout only counts the time
    without progress)."""
    slow = 2 * max_size / SLOW_BYTES_PER_SEC
    return CALLS_PER_SYSCALL * request_bound_s(timeout_s, retries) + slow
