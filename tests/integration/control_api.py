# SPDX-License-Identifier: Apache-2.0
"""The control plane of the provider under test, straight to the local server
(as another client would), in the mount's words: a sandbox's state, its
labels (Vercel's tags), and create and delete by name.

Daytona: /api/sandbox (scripts/daytona_local). Vercel: /v2/sandboxes and
/v3/sandboxes with teamId and projectId (scripts/vercel_local/api.py,
../shared/vercel-api/CONTRACT.md); a Vercel sandbox is its name, its state
that of its current session.
"""
import json
import urllib.error
import urllib.parse
import urllib.request

from conftest import API_KEY, VERCEL_PROJECT, VERCEL_TEAM

# Vercel's session statuses as the mount shows them (src/provider/vercel/vercel_provider.c).
VERCEL_STATES = {"running": "started", "pending": "starting", "stopping": "stopping",
                 "snapshotting": "stopping", "stopped": "stopped", "failed": "error", "aborted": "error"}


def vapi(server, method, path, body=None, **query):
    """Vercel's API with the team and project the mounts use."""
    q = dict(teamId=VERCEL_TEAM, projectId=VERCEL_PROJECT, **query)
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"{server.api_url}{path}?{urllib.parse.urlencode(q)}", data=data,
                                 method=method, headers={"Content-Type": "application/json",
                                                         "Authorization": "Bearer " + API_KEY})
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
        return json.loads(raw) if raw else None


def sandbox(server, name):
    """{"state": the mount's word, "labels": {...}} of a sandbox; raises
    urllib.error.HTTPError 404 when there is none."""
    if server.provider == "vercel":
        got = vapi(server, "GET", f"/v2/sandboxes/{name}")
        status = (got.get("session") or {}).get("status") or got["sandbox"].get("status")
        return {"state": VERCEL_STATES.get(status, status), "labels": got["sandbox"].get("tags") or {}}
    sb = server.api("GET", f"/sandbox/{name}")
    return {"state": sb["state"], "labels": sb.get("labels") or {}}


def create(server, name):
    """Makes a sandbox by name through the API (not the mount)."""
    if server.provider == "vercel":
        vapi(server, "POST", "/v3/sandboxes", {"name": name, "projectId": VERCEL_PROJECT})
    else:
        server.api("POST", "/sandbox", {"name": name})


def delete(server, name):
    if server.provider == "vercel":
        vapi(server, "DELETE", f"/v2/sandboxes/{name}")
    else:
        server.api("DELETE", f"/sandbox/{name}")


def exists(server, name):
    try:
        sandbox(server, name)
        return True
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return False
        raise
