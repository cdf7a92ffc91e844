# SPDX-License-Identifier: Apache-2.0
"""A cold vim save (issue 12 goal 5): the first save through a mount that
never read the file, as scripts/bench's editor workload starts.

vim reads the file in two pieces (8 KiB, then 64 KiB), which the kernel
turns into a READ of 64 KiB and one of the rest rounded up to whole pages.
The first READ downloads a read-ahead window (128 KiB, more than the file);
the second is served from it when the file is whole pages, as the bench's
100 KiB file is. (A file whose last page is partial costs a second download
for that page: a window that ended short is not taken for the end of the
file, which may have grown in the sandbox since.) What the save then sends
is what a save in a row sends (test_editors.py): its fsyncs and the swap
file's close, nothing else.
"""
import json
import os
import stat
import subprocess

import pytest

import routes
from conftest import PROVIDER, SANDBOX_HOME, Mount, create_sandbox, ctl, read

VIM = ["vim", "-es", "-N", "-u", "NONE", "-i", "NONE", "-c", "1s/^/x/", "-c", "wq"]
LINE = "line %06d of an edited file, with some words in it\n"

pytestmark = pytest.mark.skipif(subprocess.run(["sh", "-c", "command -v vim"], capture_output=True).returncode != 0,
                                reason="vim is not installed")


def text_of(size):
    t = "".join(LINE % i for i in range(size // len(LINE) + 1))
    return t[:size - 1] + "\n"


def sandbox_id(mount, sb):
    info = json.loads(read(mount.p(sb, "info")))
    return info["session"]["id"] if "session" in info else info["id"]


def save(path):
    r = subprocess.run(VIM + [path], stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert r.returncode == 0 and not r.stdout and not r.stderr, r


# 100 KiB: whole pages, as scripts/bench's file.
@pytest.mark.parametrize("size", [100 * 1024])
def test_cold_save_downloads_the_file_once(server, mount, tmp_root, size):
    sb = create_sandbox(mount, "cold")
    text = text_of(size)
    rel = os.path.join(SANDBOX_HOME.lstrip("/"), "edits", "edit.txt")
    os.makedirs(os.path.dirname(mount.p(sb, "fs", rel)))
    with open(mount.p(sb, "fs", rel), "w") as f:      # another client wrote it
        f.write(text)
    sid = sandbox_id(mount, sb)
    m = Mount(server, tmp_root, name="mnt-editor-cold-%d" % size)
    try:
        path = m.p(sb, "fs", rel)
        os.stat(os.path.dirname(path))                 # as the bench does: the directory is known
        server.reset()
        save(path)
        reqs = routes.sandbox_requests(server, sid)
        download = routes.route("download")
        assert reqs.count(download) == 1, reqs
        assert reqs.count(routes.route("download_many")) == 0 or PROVIDER == "vercel", reqs
        if PROVIDER == "daytona":
            # The download, the three fsyncs and the swap file's close: no
            # stat, no listing, no command.
            assert reqs == [download] + [routes.route("upload_many")] * 4, reqs
        else:
            # Each upload is a write of its tar and the command that puts it
            # in place (both POST /cmd and fs/write); no other read.
            assert reqs[0] == download and len(reqs) <= 9, reqs
        # Exact bytes, through this mount and through the other client
        # (close-to-open: it sees the save at its next open).
        assert read(path) == "x" + text
        assert read(mount.p(sb, "fs", rel)) == "x" + text
        assert sorted(os.listdir(os.path.dirname(path))) == ["edit.txt"]
    finally:
        m.unmount()
        ctl(mount.p(sb, "ctl"), "delete")


def test_unlink_of_an_open_new_file_keeps_its_directory_known(server, mount):
    # vim probes its directory with .NAME.swp and .NAME.swx, made empty and
    # deleted at once; when the kernel's release of .swx comes after vim's
    # unlink (it is asynchronous), libfuse renames the open file to a hidden
    # name instead, and the mount took that for a name that went without
    # knowing it was a file: the directory's attributes were dropped, and
    # its next stat (the next save's walk down the path) cost a command,
    # after the queued changes in it (two round trips in the middle of a
    # save, in about one bench run of two). Here the file is kept open, so
    # the unlink is always the hidden rename.
    sb = create_sandbox(mount, "hide")
    d = mount.p(sb, "fs", SANDBOX_HOME.lstrip("/"), "probe")
    os.mkdir(d)
    os.stat(d)
    fd = os.open(os.path.join(d, ".f.swx"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        server.reset()
        os.unlink(os.path.join(d, ".f.swx"))
        st = os.stat(d)                         # the kernel asks again after an unlink in it
        assert stat.S_ISDIR(st.st_mode)
        reqs = routes.sandbox_requests(server)
        assert reqs == [], reqs
        assert os.listdir(d) == []
    finally:
        os.close(fd)
    mount.settle()
    assert os.listdir(d) == []
    ctl(mount.p(sb, "ctl"), "delete")
