"""Shared fixtures for the vercel-local unit tests.

`vercel_server` (module scope) runs scripts/vercel-local on a free port with a temporary data
directory.
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.parse

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

TOKEN = "unit-token"
TEAM = "team_unit"
PROJECT = "prj_unit"


class VercelServer:
    def __init__(self, proc, api_url, data_dir):
        self.proc, self.api_url, self.data_dir = proc, api_url, data_dir
        self.project = PROJECT
        u = urllib.parse.urlsplit(api_url)
        self.host, self.port = u.hostname, u.port

    def request(self, method, path, body=None, headers=None, token=TOKEN):
        """(status, headers dict, body bytes) of one request to /api + path."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        h = {"content-type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        sep = "&" if "?" in path else "?"
        conn.request(method, "/api" + path + sep + "teamId=" + TEAM, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data

    def json(self, method, path, body=None, **kw):
        status, headers, data = self.request(method, path, body, **kw)
        return status, json.loads(data) if data else None

    def create(self, name, **extra):
        body = {"projectId": PROJECT, "ports": [], "name": name}
        body.update(extra)
        status, out = self.json("POST", "/v3/sandboxes", body)
        assert status == 200, out
        return out


@pytest.fixture(scope="module")
def vercel_server():
    data = tempfile.mkdtemp(prefix="vercel-unit.")
    proc = subprocess.Popen([os.path.join(ROOT, "scripts", "vercel-local"), "--port", "0",
                             "--data", os.path.join(data, "data"), "--token", TOKEN,
                             "--team", TEAM, "--project", PROJECT, "--transition-ms", "0",
                             "--quiet"],
                            stdout=subprocess.PIPE, stderr=open(os.path.join(data, "log"), "w"))
    url = proc.stdout.readline().decode().strip()
    assert url.startswith("http://"), url
    yield VercelServer(proc, url, os.path.join(data, "data"))
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    shutil.rmtree(data, ignore_errors=True)
