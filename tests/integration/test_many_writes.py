# SPDX-License-Identifier: Apache-2.0
"""Many small writes (issue 12, goal 4): what tar x, cp -r and editors cost in
requests. A file's close costs its upload and nothing else; what the mount
can answer itself (the directory a file was just created in) costs nothing."""
import io
import os
import tarfile
import uuid

import pytest

from conftest import read, sh


@pytest.fixture
def d(mount, sandbox):
    """A fresh directory on the mount, /home/daytona/NAME in the sandbox,
    listed once (so its attributes and listing are cached)."""
    name = "m-" + uuid.uuid4().hex[:8]
    path = mount.p(sandbox, "work", name)
    os.mkdir(path)
    os.listdir(os.path.dirname(path))
    os.listdir(path)
    return path


def routes(server):
    """The sandbox's requests (the toolbox's) since the last reset."""
    return {k: v for k, v in server.stats()["routes"].items() if v and "/toolbox/" in k}


def make_tar(path, n, subdir="src"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ti = tarfile.TarInfo(subdir)
        ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1700000000
        tar.addfile(ti)
        for i in range(n):
            data = (b"line %d of file %d\n" % (i, i)) * (i % 7 + 1)
            ti = tarfile.TarInfo("%s/f%03d.c" % (subdir, i))
            ti.size, ti.mode, ti.mtime = len(data), 0o644, 1700000000 + i
            tar.addfile(ti, io.BytesIO(data))
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def test_a_directory_a_file_was_just_created_in_is_stat_without_a_request(mount, sandbox, server, d):
    # Before: the directory's attributes were dropped by the create, and its
    # stat cost a command (which first had to send the queued changes below it).
    st0 = os.stat(d)
    server.reset()
    with open(os.path.join(d, "new.txt"), "w") as f:
        f.write("hello\n")
    st1 = os.stat(d)
    assert routes(server) == {"POST /toolbox/{id}/files/bulk-upload": 1}
    assert st1.st_nlink == st0.st_nlink
    assert st1.st_mtime_ns > st0.st_mtime_ns
    # a new directory changes the link count: asked again
    os.mkdir(os.path.join(d, "sub"))
    assert os.stat(d).st_nlink == st0.st_nlink + 1


def test_tar_x_costs_one_upload_per_file_and_a_few_commands(mount, sandbox, server, d, tmp_path):
    n = 60
    tar = str(tmp_path / "a.tar")
    make_tar(tar, n)
    server.reset()
    sh(["tar", "-x", "--no-same-owner", "--no-same-permissions", "-f", tar, "-C", d])
    mount.settle()
    r = routes(server)
    assert r.pop("POST /toolbox/{id}/files/bulk-upload") == n, r
    # the mkdir, and the files' times in a batch or few
    assert r.pop("POST /toolbox/{id}/process/execute") <= 4, r
    assert not r, r   # no /files/info, no listing
    with tarfile.open(tar) as t:
        for m in t.getmembers():
            if m.isfile():
                p = os.path.join(d, m.name)
                assert read(p, "rb") == t.extractfile(m).read()
                assert os.stat(p).st_mtime == m.mtime
