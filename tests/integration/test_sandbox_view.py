# SPDX-License-Identifier: Apache-2.0
"""The test helper sandbox_view against the mount, on either provider: what the view writes
the mount reads and the other way round, and a fault by kind hits only that kind."""
import os
import uuid

from conftest import SANDBOX_HOME, write


def test_the_view_and_the_mount_agree(mount, sandbox, view):
    name = "view-" + uuid.uuid4().hex[:8]
    local, remote = mount.p(sandbox, "work", name), SANDBOX_HOME + "/" + name
    os.mkdir(local)
    write(os.path.join(local, "a"), "from the mount\n")
    os.chmod(os.path.join(local, "a"), 0o640)
    os.sync()
    assert view.read(remote + "/a") == b"from the mount\n"
    assert view.stat(remote + "/a") == {"size": 15, "mode": 0o640, "dir": False}
    assert view.stat(remote)["dir"] and view.stat(remote + "/none") is None
    assert view.read(remote + "/none") is None
    view.write(remote + "/b", b"from the view\n")
    view.mkdir(remote + "/sub")
    assert view.list(remote) == ["a", "b", "sub"]
    view.move(remote + "/b", remote + "/sub/c")
    view.remove(remote + "/a")
    assert view.list(remote) == ["sub"] and view.list(remote + "/sub") == ["c"]


def test_a_fault_by_kind_hits_that_kind_only(mount, sandbox, view, sandbox_faults):
    name = "vf-" + uuid.uuid4().hex[:8]
    local = mount.p(sandbox, "work", name)
    os.mkdir(local)
    uploads = sandbox_faults.counter("upload")
    commands = sandbox_faults.counter("execute")
    fid = sandbox_faults.add("upload", status=503, count=1)
    write(os.path.join(local, "f"), "retried\n")
    fd = os.open(os.path.join(local, "f"), os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert sandbox_faults.injected(fid) == 1
    assert sandbox_faults.hits(uploads) == 2            # the faulted upload and its retry
    assert view.read(SANDBOX_HOME + f"/{name}/f") == b"retried\n"
    before = sandbox_faults.hits(commands)
    os.listdir(os.path.join(local))
    assert sandbox_faults.hits(uploads) == 2
    assert sandbox_faults.hits(commands) >= before
