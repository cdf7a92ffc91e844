# SPDX-License-Identifier: Apache-2.0
"""A rename that fails after the rename pin (src/fuse/rename_pin.c) made
libfuse hide its destination: the destination stays as it was, in the
sandbox and through the mount, with its data, its inode number and its
attributes settable through a descriptor."""
import errno
import os
import threading
import time
import uuid

import pytest

from conftest import LIVE_MOUNTS, SANDBOX_HOME, Mount, create_sandbox, ctl, read
from sandbox_view import Faults, SandboxView

HOME = SANDBOX_HOME


@pytest.fixture
def wbm(server, tmp_root):
    """A mount whose closed files wait (-o writeback=600), a sandbox on it and its file API."""
    m = Mount(server, tmp_root, extra_opts=["writeback=600"], name="rp-" + uuid.uuid4().hex[:6])
    sb = create_sandbox(m, "rp")
    os.listdir(m.p(sb, "work"))
    Faults(server).clear()
    yield m, sb, SandboxView(server, sb)
    server.local("DELETE", "/_local/faults")
    for live in [x for x in LIVE_MOUNTS if x.path == m.path]:
        live.unmount()


def rename_fails_in_the_sandbox(server, src, dst):
    """rename(src, dst), whose command in the sandbox fails (HTTP 400 on
    Daytona's /process/execute)."""
    server.local("POST", "/_local/faults", {"pattern": "/process/execute", "action": "status", "status": 400,
                                           "rate": 1.0})
    try:
        with pytest.raises(OSError):
            os.rename(src, dst)
    finally:
        server.local("DELETE", "/_local/faults")


def work_with_a_and_old_b(m, sb):
    """work/ through the mount m, where a command made a ("a") and b ("old")."""
    d = m.p(sb, "work")
    ctl(m.p(sb, "ctl"), "exec printf old > b; printf a > a")
    assert read(m.p(sb, "exit")).strip() == "0"
    assert sorted(os.listdir(d)) == ["a", "b"]
    return d


@pytest.mark.provider("daytona", reason="the fault is on Daytona's /process/execute")
def test_a_failed_rename_onto_a_file_whose_upload_waits_keeps_it(wbm, server):
    """The pin's open made libfuse hide b, and the mount took that hide of a
    closed file whose upload waited for an unlink: it dropped b's data and
    queued its delete, which the failed rename never undid. b was gone from
    the sandbox and the mount."""
    m, sb, view = wbm
    d = m.p(sb, "work")
    ctl(m.p(sb, "ctl"), "exec printf old > b")
    assert read(m.p(sb, "exit")).strip() == "0"
    assert "b" in os.listdir(d)
    with open(os.path.join(d, "b"), "w") as f:
        f.write("precious-edit")
    with open(os.path.join(d, "a"), "w") as f:
        f.write("a")
    rename_fails_in_the_sandbox(server, os.path.join(d, "a"), os.path.join(d, "b"))
    assert read(os.path.join(d, "b")) == "precious-edit"
    m.settle()
    assert read(os.path.join(d, "b")) == "precious-edit"
    assert view.download(HOME + "/b") == b"precious-edit"
    assert sorted(os.listdir(d)) == ["a", "b"]


def test_a_rename_of_ctl_onto_a_new_file_whose_upload_waits_keeps_it(wbm):
    """The same through a rename that fails before it reaches the sandbox
    (EPERM: ctl is virtual), onto a file made through the mount."""
    m, sb, view = wbm
    d = m.p(sb, "work")
    b = os.path.join(d, "b")
    with open(b, "w") as f:
        f.write("precious-new")
    with pytest.raises(OSError) as e:
        os.rename(m.p(sb, "ctl"), b)
    assert e.value.errno == errno.EPERM
    assert read(b) == "precious-new"
    m.settle()
    assert read(b) == "precious-new"
    assert view.download(HOME + "/b") == b"precious-new"
    assert os.listdir(d) == ["b"]


def dir_with_old_b(mount, sandbox):
    """A new directory under work/ whose b a command made ("old"): the
    directory through the mount, relative to work/, and b's path."""
    d = mount.p(sandbox, "work", "rp-" + uuid.uuid4().hex[:8])
    os.mkdir(d)
    rel = os.path.relpath(d, mount.p(sandbox, "work"))
    ctl(mount.p(sandbox, "ctl"), "exec printf old > %s/b" % rel)
    assert read(mount.p(sandbox, "exit")).strip() == "0"
    return d, rel, os.path.join(d, "b")


def ctl_renamed_onto_open_b(ctl_path, b):
    """rename(ctl, b) while a descriptor has b ("old") open for reading: it
    fails with EPERM (ctl is virtual) after libfuse hid b, and the
    descriptor still reads b."""
    fd = os.open(b, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as e:
            os.rename(ctl_path, b)
        assert e.value.errno == errno.EPERM
        assert os.read(fd, 100) == b"old"
    finally:
        os.close(fd)


def test_a_failed_rename_leaves_the_destination_usable(mount, sandbox):
    """After a failed rename, libfuse keeps the destination's inode under
    its hidden name: a chmod through a descriptor opened on it then failed
    (ENOENT: no open file had that hidden name), and its inode number
    changed (the mount's numbers followed the hide). The kernel is told to
    forget its entry of the name as well (rename_pin.c), asynchronously, so
    its link count, 0 through libfuse's hidden node, is not asserted."""
    d, rel, b = dir_with_old_b(mount, sandbox)
    st = os.stat(b)
    with pytest.raises(OSError) as e:
        os.rename(mount.p(sandbox, "ctl"), b)
    assert e.value.errno == errno.EPERM
    fd = os.open(b, os.O_RDONLY)
    try:
        os.fchmod(fd, 0o600)
        os.chmod("/proc/self/fd/%d" % fd, 0o640)
        assert os.read(fd, 100) == b"old"
    finally:
        os.close(fd)
    after = os.stat(b)
    assert after.st_ino == st.st_ino
    assert after.st_mode & 0o777 == 0o640
    assert read(b) == "old"
    assert os.listdir(d) == ["b"]
    ctl(mount.p(sandbox, "ctl"), "exec stat -c %%a %s/b" % rel)
    assert read(mount.p(sandbox, "stdout")).strip() == "640"


def test_a_failed_rename_onto_an_open_file_keeps_it(mount, sandbox):
    """libfuse hides an open destination before any rename, pinned or not:
    a rename that then fails must leave the file in the sandbox."""
    d, rel, b = dir_with_old_b(mount, sandbox)
    ctl_renamed_onto_open_b(mount.p(sandbox, "ctl"), b)
    mount.settle()
    assert read(b) == "old"
    ctl(mount.p(sandbox, "ctl"), "exec cat %s/b" % rel)
    assert read(mount.p(sandbox, "stdout")) == "old"


@pytest.mark.provider("daytona", reason="the fault is on Daytona's /process/execute")
def test_a_failed_rename_onto_an_open_file_keeps_it_in_the_sandbox(wbm, server):
    """libfuse hid b (open) before the rename, whose command then failed:
    the mount deleted b from the sandbox, for good (it took libfuse's hide
    for final), and b was gone from its name once the kernel looked again.
    Then it kept b, but not what its descriptor wrote, before the rename or
    after: the hide had made b a file never uploaded again."""
    m, sb, view = wbm
    d = work_with_a_and_old_b(m, sb)
    st = os.stat(os.path.join(d, "b"))
    fd = os.open(os.path.join(d, "b"), os.O_RDWR)
    try:
        os.write(fd, b"n")
        rename_fails_in_the_sandbox(server, os.path.join(d, "a"), os.path.join(d, "b"))
        os.pwrite(fd, b"D", 2)
        assert read(os.path.join(d, "b")) == "nlD"
        # (fstat(fd) shows a link count of 0: libfuse keeps the descriptor's
        # inode hidden, and takes one link off what the mount answers.)
        assert os.fstat(fd).st_size == 3
    finally:
        os.close(fd)
    m.settle()
    assert view.download(HOME + "/b") == b"nlD"
    assert view.download(HOME + "/a") == b"a"
    assert sorted(os.listdir(d)) == ["a", "b"]
    assert read(os.path.join(d, "b")) == "nlD"
    assert os.stat(os.path.join(d, "b")).st_ino == st.st_ino


def test_a_failed_rename_onto_an_open_new_file_keeps_it_and_its_writes(mount, sandbox):
    """A file made through the mount, open and not uploaded yet: libfuse hid
    it before a rename onto it that failed, and it was gone from its name,
    and from the sandbox for good, with all that was written to it."""
    d, rel, _ = dir_with_old_b(mount, sandbox)
    c = os.path.join(d, "c")
    fd = os.open(c, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        os.write(fd, b"written before the rename\n")
        with pytest.raises(OSError) as e:
            os.rename(mount.p(sandbox, "ctl"), c)
        assert e.value.errno == errno.EPERM
        os.write(fd, b"and after it\n")
        assert sorted(os.listdir(d)) == ["b", "c"]
        assert read(c) == "written before the rename\nand after it\n"
    finally:
        os.close(fd)
    assert read(c) == "written before the rename\nand after it\n"
    ctl(mount.p(sandbox, "ctl"), "exec cat %s/c; stat -c %%a %s/c" % (rel, rel))
    assert read(mount.p(sandbox, "stdout")) == "written before the rename\nand after it\n640\n"


@pytest.mark.provider("daytona", reason="the fault is on Daytona's /process/execute")
def test_a_failed_rename_onto_a_file_closed_meanwhile_uploads_what_was_written(mount, sandbox, server):
    """A descriptor closes while a rename onto its file is under way, and
    the rename fails: its close uploaded nothing (the file was hidden then),
    so the end of the rename must. libfuse holds back a close of the
    rename's own destination inode until the rename is answered, but not of
    another inode of the same file: the one a failed rename before left the
    descriptor on (libfuse keeps it under its hidden name)."""
    d, rel, b = dir_with_old_b(mount, sandbox)
    a = os.path.join(d, "a")
    with open(a, "w") as f:
        f.write("a")
    fd = os.open(b, os.O_RDWR)
    with pytest.raises(OSError):
        os.rename(mount.p(sandbox, "ctl"), b)
    # The kernel forgets its entry of b a moment after the failure, and
    # then looks it up again: a new inode, on which the next rename is pinned.
    # (Through the old one, whose hidden name libfuse keeps, stat shows no link.)
    deadline = time.time() + 10
    while os.stat(b).st_nlink == 0 and time.time() < deadline:
        time.sleep(0.05)
    assert os.stat(b).st_nlink == 1
    os.write(fd, b"new")
    closer = threading.Timer(0.5, os.close, [fd])
    server.local("PUT", "/_local/latency", {"ms": 1000})
    try:
        closer.start()
        rename_fails_in_the_sandbox(server, a, b)
    finally:
        closer.join()
        server.local("PUT", "/_local/latency", {"ms": 0})
    assert read(b) == "new"
    ctl(mount.p(sandbox, "ctl"), "exec cat %s/b" % rel)
    assert read(mount.p(sandbox, "stdout")) == "new"


def test_a_descriptor_of_a_file_a_failed_rename_gave_back_changes_that_file(mount, sandbox):
    """After the failed rename, libfuse names the descriptor's inode by the
    hidden name, which pointed at whatever file was at b: fchmod through it
    changed the new b, not the file the descriptor has open (now c)."""
    d, rel, b = dir_with_old_b(mount, sandbox)
    c = os.path.join(d, "c")
    fd = os.open(b, os.O_RDWR)
    try:
        os.write(fd, b"N")
        with pytest.raises(OSError) as e:
            os.rename(mount.p(sandbox, "ctl"), b)
        assert e.value.errno == errno.EPERM
        os.rename(b, c)
        with open(b, "w") as f:
            f.write("other")
        os.fchmod(fd, 0o600)
        os.write(fd, b"e")
        assert os.fstat(fd).st_ino == os.stat(c).st_ino
    finally:
        os.close(fd)
    assert os.stat(b).st_mode & 0o777 == 0o644
    assert os.stat(c).st_mode & 0o777 == 0o600
    assert read(c) == "Ned"
    assert read(b) == "other"
    ctl(mount.p(sandbox, "ctl"), "exec stat -c '%%n %%a' %s/b %s/c; cat %s/c" % (rel, rel, rel))
    assert read(mount.p(sandbox, "stdout")) == "%s/b 644\n%s/c 600\nNed" % (rel, rel)


@pytest.mark.provider("daytona", reason="the listing command's answer is faked on Daytona's /process/execute")
def test_a_failed_rename_onto_an_open_file_keeps_it_where_find_fails(server, tmp_root):
    """Where the sandbox has no find, the mount lists with the file API and
    deletes at once instead of queueing: libfuse's hide of the open b before
    the rename deleted it from the sandbox, and the failed rename left it
    gone."""
    rid = server.local("POST", "/_local/faults", {
        "pattern": "/process/execute", "body_match": "-mindepth 0 -maxdepth 1 -printf",
        "action": "status", "status": 200,
        "body": {"exitCode": 127, "result": "sh: find: not found"}})["id"]
    m = Mount(server, tmp_root, name="rpf-" + uuid.uuid4().hex[:6])
    try:
        sb = create_sandbox(m, "rpf")
        d = m.p(sb, "work")
        os.listdir(d)
        ctl(m.p(sb, "ctl"), "exec printf old > b")
        assert read(m.p(sb, "exit")).strip() == "0"
        os.listdir(d)
        b = os.path.join(d, "b")
        ctl_renamed_onto_open_b(m.p(sb, "ctl"), b)
        assert read(b) == "old"
        m.settle()
        assert SandboxView(server, sb).read(HOME + "/b") == b"old"
        assert server.local("GET", "/_local/faults")[0]["injected"] >= 1, rid
    finally:
        server.local("DELETE", "/_local/faults")
        for live in [x for x in LIVE_MOUNTS if x.path == m.path]:
            live.unmount()


def test_a_descriptor_keeps_its_file_after_two_failed_renames_and_many_hides(mount, sandbox):
    """Each failed rename leaves the descriptor's inode under another hidden
    name. The node remembered only the last, and the ring of hides forgot
    the first after 64 more: fchmod through the descriptor then failed
    (ENOENT)."""
    d, rel, b = dir_with_old_b(mount, sandbox)
    fd = os.open(b, os.O_RDWR)
    try:
        os.write(fd, b"N")
        for _ in range(2):
            with pytest.raises(OSError):
                os.rename(mount.p(sandbox, "ctl"), b)
            deadline = time.time() + 10
            while os.stat(b).st_nlink == 0 and time.time() < deadline:
                time.sleep(0.05)
        for i in range(70):
            p = os.path.join(d, "t%d" % i)
            f = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
            os.unlink(p)
            os.close(f)
        os.fchmod(fd, 0o600)
        assert os.fstat(fd).st_mode & 0o777 == 0o600
    finally:
        os.close(fd)
    assert read(b) == "Nld"
    ctl(mount.p(sandbox, "ctl"), "exec stat -c %%a %s/b; cat %s/b" % (rel, rel))
    assert read(mount.p(sandbox, "stdout")) == "600\nNld"


@pytest.mark.provider("daytona", reason="the fault is on Daytona's /process/execute")
def test_a_failed_rename_onto_a_name_just_unlinked_keeps_the_unlink(wbm, server):
    """b, open, is unlinked (its delete queued), and a rename of a onto b
    then fails: the rename took that queued delete to replace b in one step,
    and with the pin in place never sent it after the failure, so the
    deleted b came back."""
    m, sb, view = wbm
    d = work_with_a_and_old_b(m, sb)
    fd = os.open(os.path.join(d, "b"), os.O_RDONLY)
    try:
        os.unlink(os.path.join(d, "b"))
        rename_fails_in_the_sandbox(server, os.path.join(d, "a"), os.path.join(d, "b"))
        assert os.read(fd, 10) == b"old"
    finally:
        os.close(fd)
    m.settle()
    assert view.read(HOME + "/b") is None
    assert view.download(HOME + "/a") == b"a"
    assert sorted(os.listdir(d)) == ["a"]
