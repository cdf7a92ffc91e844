"""Fault injection rules for daytona-local (POST /_local/faults).

A rule matches a request by a regular expression searched in the raw path (with query), an
optional method and an optional "body_match", a regular expression searched in the request body
(UTF-8, undecodable bytes kept as surrogates; only a body of at most 1 MiB with a Content-Length
can match). body_match tells apart requests that share a route: Vercel's commands are all POST
.../cmd, and a test faults only the command that uploads, or lists. Whether a matching request is hit is decided, in this order, by:
  * count     - once `count` injections happened, the rule stops injecting;
  * schedule  - a list of booleans consumed one per matching request (True = inject); once the
                list is exhausted the rule injects no more;
  * rate      - probability of injecting (random; each rule has its own stream, seeded from its
                id and pattern, or from an explicit "seed", so runs are reproducible and
                rules on one pattern decide independently);
  * otherwise every matching request is hit.
Rules are evaluated in creation order; the first rule that decides to inject wins, and rules
after it do not see the request (their schedules do not advance).

Actions: status (optional exact body), drop, slow, reset_mid_body, hold, and two that reproduce
the real service's hops (FIDELITY 2.1):
  * hold         - the request waits `seconds` (default 5) at the service before it is acted
                   on, then is served as usual: a queue in front of the service, or a slow
                   uplink. Unlike slow, nothing of it happens until the wait is over (a command
                   has not run; a file is not written);
  * throttle_401 - the toolbox's answer when the proxy's auth check is rate limited: 401 with
                   "unauthorized: authentication failed: Bearer token validation error:
                   ThrottlerException: Too Many Requests" (proxy auth.go + auth_callback.go);
  * replay       - the proxy's retryTransport re-sending a request once after a stale upstream
                   connection: the handler runs twice, the first answer is thrown away (only
                   for bodies of at most 256 KiB with a Content-Length, as retryTransport).
"""

import random
import re
import threading
import zlib

ACTIONS = ("status", "drop", "slow", "reset_mid_body", "hold", "throttle_401", "replay")


class FaultSpecError(ValueError):
    pass


class FaultRule:
    def __init__(self, rid, spec, rng=None):
        if not isinstance(spec, dict):
            raise FaultSpecError("fault must be a JSON object")
        self.id = rid
        pattern = spec.get("pattern", "")
        if not isinstance(pattern, str):
            raise FaultSpecError("pattern must be a string")
        try:
            self.regex = re.compile(pattern)
        except re.error as e:
            raise FaultSpecError("invalid pattern: %s" % e)
        self.pattern = pattern
        body_match = spec.get("body_match")
        if body_match is not None and not isinstance(body_match, str):
            raise FaultSpecError("body_match must be a string or null")
        try:
            self.body_regex = re.compile(body_match) if body_match is not None else None
        except re.error as e:
            raise FaultSpecError("invalid body_match: %s" % e)
        self.body_match = body_match
        method = spec.get("method")
        if method is not None and not isinstance(method, str):
            raise FaultSpecError("method must be a string or null")
        self.method = method.upper() if method else None
        self.action = spec.get("action", "status")
        if self.action not in ACTIONS:
            raise FaultSpecError("action must be one of " + ", ".join(ACTIONS))
        self.status = _int(spec, "status", 503, 100, 599)
        self.retry_after = _num(spec, "retry_after", None)
        self.rate = _num(spec, "rate", None)
        if self.rate is not None and not 0.0 <= self.rate <= 1.0:
            raise FaultSpecError("rate must be between 0 and 1")
        schedule = spec.get("schedule")
        if schedule is not None and (not isinstance(schedule, list)
                                     or not all(isinstance(x, bool) for x in schedule)):
            raise FaultSpecError("schedule must be a list of booleans")
        self.schedule = schedule
        self.count = _int(spec, "count", None, 0, None)
        self.bytes_per_sec = _int(spec, "bytes_per_sec", 65536, 1, None)
        self.seconds = _num(spec, "seconds", 5.0)
        if not 0.0 <= self.seconds <= 600.0:
            raise FaultSpecError("seconds must be between 0 and 600")
        # status only: the exact body to answer (a JSON value, sent as JSON; or a string, sent
        # as text/plain), in place of the service's usual error body for that status
        self.body = spec.get("body")
        if self.body is not None and self.action != "status":
            raise FaultSpecError("body goes only with the status action")
        self.hits = 0          # matching requests seen
        self.injected = 0      # requests actually faulted
        self._pos = 0
        seed = spec.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise FaultSpecError("seed must be an integer")
        self.seed = seed if seed is not None else \
            zlib.crc32(("%s\0%s" % (rid, pattern)).encode("utf-8", "surrogateescape"))
        self._rng = rng or random.Random(self.seed)
        self._lock = threading.Lock()

    def matches(self, method, raw_path, body=None):
        """body: a function giving the request body (bytes, or None when it cannot be read
        without consuming it); called only when a body_match is set and the rest matched."""
        if self.method is not None and self.method != method:
            return False
        if self.regex.search(raw_path) is None:
            return False
        if self.body_regex is None:
            return True
        raw = body() if body is not None else None
        if raw is None:
            return False
        return self.body_regex.search(raw.decode("utf-8", "surrogateescape")) is not None

    def decide(self):
        """Record one matching request; True if it must be faulted."""
        with self._lock:
            self.hits += 1
            if self.count is not None and self.injected >= self.count:
                return False
            if self.schedule is not None:
                if self._pos >= len(self.schedule):
                    return False
                inject = self.schedule[self._pos]
                self._pos += 1
            elif self.rate is not None:
                inject = self._rng.random() < self.rate
            else:
                inject = True
            if inject:
                self.injected += 1
            return inject

    def to_json(self):
        return {"id": self.id, "pattern": self.pattern, "method": self.method,
                "body_match": self.body_match,
                "action": self.action, "status": self.status, "retry_after": self.retry_after,
                "rate": self.rate, "schedule": self.schedule, "count": self.count,
                "bytes_per_sec": self.bytes_per_sec, "seconds": self.seconds, "body": self.body,
                "seed": self.seed,
                "hits": self.hits,
                "injected": self.injected}


def _int(spec, key, default, lo, hi):
    v = spec.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
        raise FaultSpecError("%s must be an integer" % key)
    v = int(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise FaultSpecError("%s out of range" % key)
    return v


def _num(spec, key, default):
    v = spec.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise FaultSpecError("%s must be a number" % key)
    return float(v)


class FaultSet:
    def __init__(self):
        self._rules = []
        self._next = 1
        self._lock = threading.Lock()

    def add(self, spec, rng=None):
        with self._lock:
            rule = FaultRule("f%d" % self._next, spec, rng)
            self._next += 1
            self._rules = self._rules + [rule]     # copy-on-write, see pick()
            return rule

    def list(self):
        with self._lock:
            return [r.to_json() for r in self._rules]

    def clear(self):
        with self._lock:
            self._rules = []

    def remove(self, rid):
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if r.id != rid]
            return len(self._rules) != before

    def pick(self, method, raw_path, body=None):
        """The rule to apply to this request, or None. body: see FaultRule.matches."""
        rules = self._rules            # copy-on-write list: safe to iterate without the lock
        if not rules:
            return None
        for rule in rules:
            if rule.matches(method, raw_path, body) and rule.decide():
                return rule
        return None
