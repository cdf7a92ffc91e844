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
import time
import urllib.request

import pytest

import control_api
from conftest import API_KEY, PROVIDER, _binary, ctl, create_sandbox, mount_maker, read
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
    with mount_maker(fake, str(tmp_path), ("dir_timeout=0", "attr_timeout=0", "retries=1")) as make:
        yield make


def raw_create(server, name):
    """POST /api/sandbox with any name, as another client could; returns the id."""
    req = urllib.request.Request(server.api_url + "/sandbox", data=json.dumps({"name": name}).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "Authorization": "Bearer " + API_KEY})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())["id"]


def info_id(path):
    return json.loads(read(os.path.join(path, "info")))["id"]


# ---- B6: names that cannot be shown as they are ---------------------------------

@pytest.mark.provider("daytona", reason="Daytona's names and ids differ: impostors named as another's id, or with "
                     "NUL or tab, are shown by id; a Vercel sandbox is its name (unique in its project, "
                     "[a-zA-Z0-9_-]), so only ctl and error could shadow: test_reserved_names_never_shadow")
def test_names_never_shadow(mount, server):
    victim = create_sandbox(mount, "victim")
    victim_id = info_id(mount.p(victim))
    made = [raw_create(server, victim + "\u0000x"),   # shows as a second `victim` today
            raw_create(server, victim_id),            # takes over MOUNT/<victim's id>
            raw_create(server, "ctl"), raw_create(server, "error"),
            raw_create(server, "tab\there")]
    try:
        # each impostor is reachable by its id (which also puts it in the mount's
        # list at once, whatever dir_timeout says)
        for sid in made:
            assert info_id(mount.p(sid)) == sid
        names = os.listdir(mount.path)
        for n in (victim, "ctl", "error"):
            assert names.count(n) == 1, (n, names)
        assert victim_id not in names      # the victim shows by name; the impostor by its own id
        # the impostors are there, by id only
        for sid in made:
            assert sid in names
        assert "tab\there" not in names
        # MOUNT/victim and MOUNT/<its id> are the victim; each impostor is reachable by id
        assert info_id(mount.p(victim)) == victim_id
        assert info_id(mount.p(victim_id)) == victim_id
        # a lookup of a name the rule refuses finds nothing, even though the API has it
        with pytest.raises(FileNotFoundError):
            os.stat(mount.p("tab\there"))
        assert read(mount.p("error")) is not None and os.path.isfile(mount.p("ctl"))
    finally:
        for sid in made:
            server.api("DELETE", "/sandbox/" + sid)
        ctl(mount.p(victim, "ctl"), "delete")


def test_reserved_names_never_shadow(mount, server):
    """Sandboxes another client called ctl and error: the root's own files
    stay, listed once. Daytona shows such a sandbox by its id; a Vercel
    sandbox, whose id is its name, has no other name and is not shown (it
    was listed as a second ctl and a second error)."""
    made = ["ctl", "error"]
    for n in made:
        control_api.create(server, n)
    try:
        time.sleep(6)    # past dir_timeout, so the root is listed again
        names = os.listdir(mount.path)
        assert names.count("ctl") == 1 and names.count("error") == 1, names
        assert os.path.isfile(mount.p("ctl")) and os.path.isfile(mount.p("error"))
        read(mount.p("error"))
        if server.provider == "daytona":
            for n in made:
                sid = server.api("GET", f"/sandbox/{n}")["id"]
                assert sid in names and info_id(mount.p(sid)) == sid
    finally:
        for n in made:
            control_api.delete(server, n)


@pytest.mark.parametrize("name", ["a\x1bb", "tab\there", "del\x7f"])
def test_create_refuses_names_that_cannot_be_shown(mount, server, name):
    server.reset()
    with pytest.raises(OSError) as e:
        ctl(mount.p("ctl"), "create '%s'" % name)
    assert e.value.errno == errno.EINVAL
    assert "cannot be a directory of the mount" in read(mount.p("error"))
    assert server.count("/sandboxes" if server.provider == "vercel" else "/sandbox", method="POST") == 0


@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: two sandboxes of one name, which Vercel's unique names rule out")
def test_shared_name_is_shown_by_id(fake, fake_mount):
    fake.add(SB1, "twin")
    fake.add(SB2, "twin")
    m = fake_mount()
    names = sorted(os.listdir(m.path))
    assert names == sorted(["ctl", "error", ".snapshots", ".volumes", SB1, SB2])
    with pytest.raises(FileNotFoundError):
        os.stat(m.p("twin"))
    assert info_id(m.p(SB2)) == SB2


@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: an id of 100 bytes in Daytona's list (a Vercel id is its name, at most 128 bytes: one over 63 is not shown either, not cut)")
def test_item_with_overlong_id_is_refused(fake, fake_mount):
    long_id = "9" * 200      # would be cut to 128 bytes (SP_ID_SIZE) and then used in URLs
    fake.add(long_id, "longid")
    fake.add(SB1, "fine")
    m = fake_mount()
    names = os.listdir(m.path)
    assert "fine" in names
    assert "longid" not in names and long_id[:128] not in names


# ---- B7: a hostile list -----------------------------------------------------------

@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: a hostile cursor in Daytona's list")
def test_repeating_cursor_stops_the_listing(fake, fake_mount):
    fake.add(SB1, "one")
    m = fake_mount()
    fake.list_mode = "cursorcycle"     # c0 -> c1 -> c2 -> c0: never the same cursor twice in a row
    fake.reset()
    with pytest.raises(OSError) as e:
        os.listdir(m.path)
    assert e.value.errno == errno.EIO
    assert fake.count("GET /api/sandbox?") <= 4, fake.count("GET /api/sandbox?")
    assert "cursor" in read(m.p("error"))


@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: 27,165 sandboxes in one page of Daytona's list")
def test_big_list(fake, fake_mount):
    """27,165 sandboxes in one 10 MiB page (the report's big10): all listed. The
    CPU time the refresh costs is printed for the report (pytest -s)."""
    items = [dict(fake.add("%08d-0000-0000-0000-000000000000" % i, "big%06d" % i)) for i in range(27165)]
    m = fake_mount()
    fake.big_body = json.dumps({"items": items, "nextCursor": None}).encode()
    os.listdir(m.path)

    def cpu():
        f = open(f"/proc/{m.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    before = cpu()
    names = os.listdir(m.path)
    print(f"\nbig list: refresh of 27,165 sandboxes took {cpu() - before:.2f} s of CPU")
    assert len(names) == 27165 + 4          # ctl, error, .snapshots, .volumes
    assert "big027164" in names


# ---- B8: the key is not in /proc/PID/environ ----------------------------------------

def test_key_not_in_proc_environ(mount):
    env = open(f"/proc/{mount.proc.pid}/environ", "rb").read()
    assert API_KEY.encode() not in env
    if PROVIDER == "vercel":
        assert b"VERCEL_TEAM_ID=" in env  # the rest of the environment is untouched
    else:
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


# ---- D4: daemons older than v0.156.0 --------------------------------------------------

@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: Daytona's daemon versions")
def test_old_daemon_gets_no_commands(fake, fake_mount):
    fake.add(SB1, "old", daemonVersion="v0.150.0")
    fake.add(SB2, "new", daemonVersion="v0.190.0")
    m = fake_mount()
    with pytest.raises(OSError) as e:
        ctl(m.p("old", "ctl"), "exec echo hi")
    assert e.value.errno == errno.EOPNOTSUPP
    assert "restart the sandbox" in read(m.p("old", "error"))
    # the listing falls back to the file API, which old daemons have
    assert os.listdir(m.p("old", "fs")) == []
    assert fake.commands == []
    os.listdir(m.p("new", "fs"))
    assert fake.commands       # a current daemon gets its commands


# ---- D8: an eventually consistent list -------------------------------------------------

@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: Daytona's eventually consistent list and its GET by id")
def test_list_order_and_missing_entry(fake, fake_mount):
    fake.add(SB1, "keep")
    fake.add(SB2, "lagging")
    m = fake_mount()
    assert {"keep", "lagging"} <= set(os.listdir(m.path))
    assert all("sort=createdAt&order=asc" in r for r in fake.requests if r.startswith("GET /api/sandbox?limit=200"))
    fake.hidden_from_list.add(SB2)     # one listing misses it: still there
    fake.reset()
    assert "lagging" in os.listdir(m.path)
    assert fake.count(f"GET /api/sandbox/{SB2}") == 1
    del fake.sandboxes[SB2]            # now it is really gone: the GET says 404
    assert "lagging" not in os.listdir(m.path)


# ---- D10: no toolboxProxyUrl ----------------------------------------------------------

@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: Daytona's toolboxProxyUrl")
def test_empty_toolbox_url_is_asked_for_once(fake, fake_mount):
    fake.add(SB1, "nourl", toolboxProxyUrl="")
    m = fake_mount()
    fake.reset()
    assert os.listdir(m.p("nourl", "fs")) == []
    os.listdir(m.p("nourl", "fs"))
    assert fake.count(f"GET /api/sandbox/{SB1}/toolbox-proxy-url") == 1
    assert fake.count(f"GET /toolbox/{SB1}/") + fake.count(f"POST /toolbox/{SB1}/") >= 2


# ---- D11: paused sandboxes --------------------------------------------------------------

@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: Daytona's paused state (a Vercel session stops: test_vercel)")
def test_paused_sandbox(fake, fake_mount):
    fake.add(SB1, "napping", state="paused")
    m = fake_mount()
    assert read(m.p("napping", "status")).startswith("paused")
    with pytest.raises(OSError) as e:
        os.listdir(m.p("napping", "fs"))
    assert e.value.errno == errno.EHOSTDOWN
    assert "is paused: start it with" in read(m.p("napping", "error"))


@pytest.mark.provider("daytona", reason="Daytona's client against fake_daytona.py, a fake of Daytona's API, "
                     "whatever the provider under test: Daytona's paused state (Vercel's autostart resumes a stopped session: test_vercel)")
def test_autostart_resumes_a_paused_sandbox(fake, fake_mount):
    fake.add(SB1, "napping", state="paused")
    m = fake_mount("autostart")
    assert os.listdir(m.p("napping", "fs")) == []
    assert fake.count(f"POST /api/sandbox/{SB1}/start") == 1
    assert read(m.p("napping", "status")).startswith("started")
