"""Shared fixtures for the daytona-local server tests.

`server` (session scope) runs scripts/daytona-local on a free port with a temporary data
directory and --transition-ms 20. After every test that used it, faults, latency and timing are
reset. `start_server(...)` starts extra servers (e.g. to test a restart on the same --data).
"""

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCHER = os.path.join(ROOT, "scripts", "daytona-local")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

API_KEY = "test-key"
TRANSITION_MS = 20
LIST_LAG_MS = 1000      # the server's default --list-lag-ms


class LocalServer:
    def __init__(self, proc, api_url, data_dir, api_key):
        self.proc = proc
        self.api_url = api_url                       # http://127.0.0.1:PORT/api
        self.base_url = api_url[:-len("/api")]       # http://127.0.0.1:PORT
        self.data_dir = data_dir
        self.api_key = api_key
        u = urllib.parse.urlsplit(self.base_url)
        self.host, self.port = u.hostname, u.port
        self.toolbox_url = self.base_url + "/toolbox"

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, headers dict with lower-case names, body bytes). path is absolute
        ("/api/sandbox"). body: bytes/str as is, anything else JSON-encoded. The API key is
        sent unless headers contains "Authorization" (None drops it)."""
        hdrs = {"Authorization": "Bearer " + self.api_key}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        for k, v in (headers or {}).items():
            hdrs.pop(k, None)
            if v is not None:
                hdrs[k] = v
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, expect=None):
        """request() and decode the JSON body; asserts the status if expect is given."""
        status, _, data = self.request(method, path, body, headers)
        if expect is not None:
            assert status == expect, (status, data)
        return status, (json.loads(data) if data else None)

    def local(self, method, path, body=None):
        return self.request(method, "/_local" + path, body, {"Authorization": None})

    def reset(self):
        self.local("DELETE", "/faults")
        self.local("PUT", "/latency", {"ms": 0})
        self.local("PUT", "/timing", {"transition_ms": TRANSITION_MS, "minute_ms": 60000,
                                      "list_lag_ms": LIST_LAG_MS})

    def wait_state(self, sid, states, timeout=10):
        deadline = time.time() + timeout
        while True:
            status, body = self.json("GET", "/api/sandbox/" + sid)
            state = body.get("state") if status == 200 else status
            if state in states:
                return body if status == 200 else status
            if time.time() > deadline:
                raise AssertionError("sandbox %s stuck in %s" % (sid, state))
            time.sleep(0.01)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(data_dir, *extra, api_key=API_KEY, transition_ms=TRANSITION_MS):
    args = [LAUNCHER, "--port", "0", "--data", data_dir, "--transition-ms", str(transition_ms),
            "--quiet", "--api-key", api_key] + list(extra)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("http://"):
        proc.kill()
        raise RuntimeError("server did not start: %r %s" % (line, proc.stderr.read()))
    return LocalServer(proc, line, data_dir, api_key)


@pytest.fixture(scope="session")
def server_factory():
    started = []
    dirs = []

    def make(*extra, data_dir=None, **kw):
        if data_dir is None:
            data_dir = tempfile.mkdtemp(prefix="daytona-local-test-")
            dirs.append(data_dir)
        s = start_server(data_dir, *extra, **kw)
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def _session_server(server_factory):
    return server_factory()


@pytest.fixture
def server(_session_server):
    yield _session_server
    _session_server.reset()
