# SPDX-License-Identifier: Apache-2.0
"""Sandboxes as directories: create, the control files, lifecycle commands, errors."""
import errno
import json
import os
import uuid

import pytest

import control_api
from conftest import SANDBOX_HOME, ctl, create_sandbox, read


SANDBOX_ENTRIES = {"ctl", "status", "info", "error", "stdout", "stderr", "exit", "cmd", "fs", "work",
                   "usage", "env", "ports", "build-log"}


def test_create_by_ctl_and_entries(mount, server):
    name = create_sandbox(mount)
    assert name in os.listdir(mount.path)
    # Vercel's sandboxes have no build log (ports/ lists the ports declared at create)
    want = SANDBOX_ENTRIES - ({"build-log"} if server.provider == "vercel" else set())
    assert set(os.listdir(mount.p(name))) == want
    assert read(mount.p(name, "status")) == "started\n"
    info = json.loads(read(mount.p(name, "info")))
    if server.provider == "vercel":
        # Vercel's object: the sandbox and its current session
        assert info["sandbox"]["name"] == name and info["session"]["status"] == "running"
    else:
        assert info["name"] == name and info["state"] == "started"
    assert read(mount.p(name, "error")) == ""
    # The API agrees.
    assert control_api.sandbox(server, name)["state"] == "started"
    # Its id resolves to the same sandbox (a Vercel sandbox's id is its name).
    assert read(mount.p(info.get("id", name), "status")) == "started\n"
    assert os.readlink(mount.p(name, "work")) == "fs" + SANDBOX_HOME


def test_create_by_mkdir(mount, server):
    name = f"mk-{uuid.uuid4().hex[:8]}"
    os.mkdir(mount.p(name))
    assert control_api.sandbox(server, name)["state"] == "started"
    assert read(mount.p(name, "status")) == "started\n"
    with pytest.raises(FileExistsError):
        os.mkdir(mount.p(name))


@pytest.mark.provider("daytona", reason="create's options in Daytona's words (env., label., autostop, public) "
                     "read back from Daytona's object; Vercel has no autostop or public, and its words (tag., "
                     "timeout, vcpus, port, persistent, env.) are test_vercel's test_create_with_vercel_words")
def test_create_with_options(mount, server):
    name = f"opt-{uuid.uuid4().hex[:8]}"
    ctl(mount.p("ctl"), f"create {name} env.GREETING=hi label.team=core autostop=30 public")
    sb = server.api("GET", f"/sandbox/{name}")
    assert sb["env"].get("GREETING") == "hi"
    assert sb["labels"].get("team") == "core"
    assert sb["autoStopInterval"] == 30
    assert sb["public"] is True


def test_root_lists_every_page(mount, server):
    # More sandboxes than one page holds (the mount asks 200 a page of
    # Daytona; Vercel gives at most 100).
    names = set()
    for i in range(205):
        n = f"bulk-{i:03d}-{uuid.uuid4().hex[:4]}"
        control_api.create(server, n)
        names.add(n)
    import time
    time.sleep(6)   # past dir_timeout, so the root is listed again
    listed = set(os.listdir(mount.path))
    assert names <= listed


def test_malformed_commands(mount, sandbox):
    with pytest.raises(OSError) as e:
        ctl(mount.p(sandbox, "ctl"), "strat")
    assert e.value.errno == errno.EINVAL
    assert "strat" in read(mount.p(sandbox, "error"))
    with pytest.raises(OSError) as e:
        ctl(mount.p(sandbox, "ctl"), "resize cpu=lots")
    assert e.value.errno == errno.EINVAL
    assert "cpu" in read(mount.p(sandbox, "error"))
    with pytest.raises(OSError) as e:
        ctl(mount.p("ctl"), "create")
    assert e.value.errno == errno.EINVAL
    assert read(mount.p("error")) != ""
    with pytest.raises(OSError) as e:
        ctl(mount.p("ctl"), "create ctl")
    assert e.value.errno == errno.EINVAL
    assert "reserved" in read(mount.p("error"))


def test_output_files_before_any_command(mount):
    name = create_sandbox(mount, "fresh")
    assert read(mount.p(name, "stdout")) == ""
    assert read(mount.p(name, "stderr")) == ""
    assert read(mount.p(name, "exit")) == ""
    assert os.listdir(mount.p(name, "cmd")) == []


def test_control_files_refuse_what_they_are_not(mount, sandbox):
    with pytest.raises(PermissionError):
        open(mount.p(sandbox, "status"), "w")
    with pytest.raises(OSError) as e:
        os.unlink(mount.p(sandbox, "status"))
    assert e.value.errno == errno.EPERM
    with pytest.raises(OSError) as e:
        os.rmdir(mount.p(sandbox))
    assert e.value.errno in (errno.EPERM, errno.ENOTEMPTY)
    with pytest.raises(FileNotFoundError):
        os.stat(mount.p("no-such-sandbox-xyz"))
    with pytest.raises(FileNotFoundError):
        os.stat(mount.p(sandbox, "nope"))


@pytest.mark.provider("daytona", reason="archive, which Vercel lacks, and Daytona's states (archived, restart); "
                     "Vercel's stop and start (EHOSTDOWN while stopped, a new session, the files kept) are "
                     "test_vercel's test_stopped_session_is_ehostdown_until_start")
def test_stop_start_and_file_access_while_stopped(mount, server):
    name = create_sandbox(mount, "life")
    sbctl = mount.p(name, "ctl")
    with open(mount.p(name, "work", "keep.txt"), "w") as f:
        f.write("kept\n")
    ctl(sbctl, "stop")
    assert read(mount.p(name, "status")) == "stopped\n"
    assert server.api("GET", f"/sandbox/{name}")["state"] == "stopped"
    # Browsing a stopped sandbox does not start it: a clear error instead.
    with pytest.raises(OSError) as e:
        os.listdir(mount.p(name, "fs", "home", "daytona"))
    assert e.value.errno == errno.EHOSTDOWN
    msg = read(mount.p(name, "error"))
    assert "stopped" in msg and "echo start >" in msg
    assert server.api("GET", f"/sandbox/{name}")["state"] == "stopped"
    ctl(sbctl, "start")
    assert read(mount.p(name, "status")) == "started\n"
    assert read(mount.p(name, "work", "keep.txt")) == "kept\n"
    assert read(mount.p(name, "error")) == ""
    # A second start of a started sandbox is fine; stop then archive then start.
    ctl(sbctl, "stop")
    ctl(sbctl, "archive")
    assert read(mount.p(name, "status")) == "archived\n"
    ctl(sbctl, "start")
    assert read(mount.p(name, "status")) == "started\n"
    assert read(mount.p(name, "work", "keep.txt")) == "kept\n"
    ctl(sbctl, "restart")
    assert read(mount.p(name, "status")) == "started\n"


@pytest.mark.provider("daytona", reason="archive of a started sandbox (Daytona's 409); Vercel has no archive")
def test_state_conflict_is_ebusy(mount, server):
    name = create_sandbox(mount, "conf")
    # archive needs a stopped sandbox: the API refuses, the write fails.
    with pytest.raises(OSError) as e:
        ctl(mount.p(name, "ctl"), "archive")
    assert e.value.errno == errno.EBUSY
    assert "archive" in read(mount.p(name, "error"))


def test_labels(mount, server):
    """label and unlabel: Daytona's labels, Vercel's tags (tag and untag are the same commands)."""
    name = create_sandbox(mount, "lab")
    sbctl = mount.p(name, "ctl")
    ctl(sbctl, "label a=1 b=2")
    ctl(sbctl, "unlabel a")
    labels = control_api.sandbox(server, name)["labels"]
    assert labels.get("b") == "2" and "a" not in labels


@pytest.mark.provider("daytona", reason="Daytona's autostop/autoarchive/autodelete intervals and resize; a Vercel "
                     "session has a timeout instead (extend: test_vercel's test_extend) and no resize")
def test_intervals_resize(mount, server):
    name = create_sandbox(mount, "lab")
    sbctl = mount.p(name, "ctl")
    ctl(sbctl, "autostop 45")
    ctl(sbctl, "autoarchive 60")
    ctl(sbctl, "autodelete -1")
    sb = server.api("GET", f"/sandbox/{name}")
    assert sb["autoStopInterval"] == 45 and sb["autoArchiveInterval"] == 60 and sb["autoDeleteInterval"] == -1
    ctl(sbctl, "stop")
    ctl(sbctl, "resize cpu=2 memory=2 disk=5")
    sb = server.api("GET", f"/sandbox/{name}")
    assert (sb["cpu"], sb["memory"], sb["disk"]) == (2, 2, 5)


def test_snapshot_and_snapshots_dir(mount, server):
    name = create_sandbox(mount, "snap")
    with open(mount.p(name, "work", "seed.txt"), "w") as f:
        f.write("from the snapshot\n")
    before = set(os.listdir(mount.p(".snapshots")))
    snap = f"snap-{uuid.uuid4().hex[:6]}"
    ctl(mount.p(name, "ctl"), f"snapshot {snap}")
    if server.provider == "vercel":
        # Vercel names its snapshots itself (NAME is not kept), and taking
        # one stops the session
        assert read(mount.p(name, "status")) == "stopped\n"
        made = set(os.listdir(mount.p(".snapshots"))) - before
        assert len(made) == 1, made
        snap = made.pop()
        assert json.loads(read(mount.p(".snapshots", snap)))["id"] == snap
    else:
        assert read(mount.p(name, "status")) == "started\n"
        assert snap in os.listdir(mount.p(".snapshots"))
        assert json.loads(read(mount.p(".snapshots", snap)))["name"] == snap
    # A new sandbox from it has the file.
    child = f"child-{uuid.uuid4().hex[:6]}"
    ctl(mount.p("ctl"), f"create {child} snapshot={snap}")
    assert read(mount.p(child, "work", "seed.txt")) == "from the snapshot\n"
    # rm of the snapshot file deletes the snapshot.
    os.unlink(mount.p(".snapshots", snap))
    import time
    for _ in range(50):
        if snap not in os.listdir(mount.p(".snapshots")):
            break
        time.sleep(0.1)
    assert snap not in os.listdir(mount.p(".snapshots"))


def test_a_snapshot_holds_the_changes_still_waiting(mount, server):
    """touch and rm say 0 at once and reach the sandbox later (an empty new
    file's upload and a delete wait half a second): a snapshot taken right
    after sends them first. Before, the snapshot had the deleted file and not
    the new one (and on Vercel, whose snapshot stops the sandbox, the new
    file's upload then kept failing)."""
    name = create_sandbox(mount, "snapw")
    with open(mount.p(name, "work", "seed.txt"), "w") as f:
        f.write("x\n")
    open(mount.p(name, "work", "marker"), "w").close()
    os.unlink(mount.p(name, "work", "seed.txt"))
    before = set(os.listdir(mount.p(".snapshots")))
    snap = f"snapw-{uuid.uuid4().hex[:6]}"
    ctl(mount.p(name, "ctl"), f"snapshot {snap}")
    if server.provider == "vercel":
        snap = (set(os.listdir(mount.p(".snapshots"))) - before).pop()
    assert read(mount.p(name, "error")) == ""
    child = f"snapc-{uuid.uuid4().hex[:6]}"
    ctl(mount.p("ctl"), f"create {child} snapshot={snap}")
    assert sorted(os.listdir(mount.p(child, "work"))) == ["marker"]
    for sb in (child, name):
        ctl(mount.p(sb, "ctl"), "delete")
    os.unlink(mount.p(".snapshots", snap))


def test_delete(mount, server):
    name = create_sandbox(mount, "del")
    ctl(mount.p(name, "ctl"), "delete")
    assert name not in os.listdir(mount.path)
    with pytest.raises(FileNotFoundError):
        os.stat(mount.p(name, "status"))
    assert not control_api.exists(server, name)
