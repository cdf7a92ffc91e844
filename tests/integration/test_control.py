# SPDX-License-Identifier: Apache-2.0
"""The control plane as the mount sees it: sandbox names that cannot be shown
as they are, a hostile or broken list, secrets in /proc, the start-up check,
old daemons, an eventually consistent list, a missing toolbox address, and
paused sandboxes (doc/SEMANTICS.md: "The sandbox list", "Sandbox names",
section 8).

Against the local server where it can play the part, else against the fake
in fake_daytona.py (127.0.0.1 only)."""
import errno
import json
import os
import subprocess
import urllib.request

import pytest

from conftest import API_KEY, Mount, _binary, ctl, create_sandbox, read
from fake_daytona import FakeDaytona

SB1 = "11111111-2222-3333-4444-555555555555"
SB2 = "22222222-3333-4444-5555-666666666666"


@pytest.fixture
def fake():
    f = FakeDaytona()
    yield f
    f.stop()


@pytest.fixture
def fake_mount(fake, tmp_path):
    """A mount on the fake, made by the test (so it can set the fake up first)."""
    made = []

    def make(*opts):
        m = Mount(fake, str(tmp_path), extra_opts=("dir_timeout=0", "attr_timeout=0", "retries=1") + opts)
        made.append(m)
        return m
    yield make
    for m in made:
        m.unmount()


def raw_create(server, name):
    """POST /api/sandbox with any name, as another client could; returns the id."""
    req = urllib.request.Request(server.api_url + "/sandbox", data=json.dumps({"name": name}).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Authorization": "Bearer " + API_KEY})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["id"]


def info_id(path):
    return json.loads(read(os.path.join(path, "info")))["id"]


# ---- B8: the key is not in /proc/PID/environ ----------------------------------------

def test_key_not_in_proc_environ(mount):
    env = open(f"/proc/{mount.proc.pid}/environ", "rb").read()
    assert API_KEY.encode() not in env
    assert b"DAYTONA_API_URL=" in env     # the rest of the environment is untouched


# ---- B9: the start-up check reads the answer ----------------------------------------

@pytest.mark.parametrize("mode", ["html", "wrongshape"])
def test_startup_refuses_what_is_not_a_sandbox_list(fake, tmp_path, mode):
    fake.list_mode = mode
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAYTONA_")}
    env.update({"DAYTONA_API_KEY": API_KEY, "DAYTONA_API_URL": fake.api_url, "HOME": str(tmp_path)})
    p = subprocess.Popen([_binary(), "-f", "-o", "cache_dir=" + str(tmp_path / "c"), str(mnt)], env=env,
                         stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        subprocess.run(["fusermount3", "-u", str(mnt)])
        p.kill()
        pytest.fail("daytonafs mounted a URL that does not answer with a sandbox list")
    assert p.returncode != 0
    assert "DAYTONA_API_URL" in err and "not a sandbox list" in err, err
    assert not os.path.ismount(mnt)
