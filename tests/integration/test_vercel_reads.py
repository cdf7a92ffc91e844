# SPDX-License-Identifier: Apache-2.0
"""Whole-file reads on Vercel (doc/SEMANTICS.md, "Vercel", Files): fs/read
has no range, so any download from offset 0 is the whole file's transfer.
A reader whose first read is small (dd bs=4k, O_DIRECT, a program's small
buffer) cost two requests for a file above that read: the first read was a
download cut at its size, the second started the stream. Now the first read
streams, and the whole file is one fs/read. Run with
DAYTONAFS_TEST_PROVIDER=vercel (skipped otherwise)."""
import os
import subprocess

import pytest

from conftest import Mount

pytestmark = pytest.mark.provider("vercel", reason="Vercel's fs/read has no range")

SIZES = [70 * 1024, 100 * 1024, 300 * 1024, 3 * 1024 * 1024]


def log(server):
    return server.local("GET", "/_local/log")


def route(r):
    return r["method"] + " " + "/".join(r["path"].split("?")[0].rsplit("/", 2)[-2:])


@pytest.fixture(scope="module")
def files(mount, sandbox):
    """One file of each size, each alone in its directory (so that no bulk
    prefetch of small neighbours takes it)."""
    data = {}
    for s in SIZES:
        d = mount.p(sandbox, "work", f"reads-{s}")
        os.makedirs(d, exist_ok=True)
        data[s] = os.urandom(s)
        with open(os.path.join(d, "f"), "wb") as f:
            f.write(data[s])
    mount.settle()
    return data


def cold_mount(server, tmp_root, sandbox, name):
    """A fresh mount that has listed each file's directory: what is asked
    of the server after this is the read alone."""
    m = Mount(server, tmp_root, name=name)
    for s in SIZES:
        os.listdir(m.p(sandbox, "work", f"reads-{s}"))
    return m


@pytest.mark.parametrize("chunk", [4096, 64 * 1024])
def test_whole_file_in_small_direct_reads_is_one_request(server, tmp_root, sandbox, files, chunk):
    m = cold_mount(server, tmp_root, sandbox, f"mnt-reads-direct-{chunk}")
    try:
        for s in SIZES:
            server.reset()
            fd = os.open(m.p(sandbox, "work", f"reads-{s}", "f"), os.O_RDONLY | os.O_DIRECT)
            try:
                got = bytearray()
                while True:
                    b = os.read(fd, chunk)
                    if not b:
                        break
                    got += b
            finally:
                os.close(fd)
            assert bytes(got) == files[s]
            assert [route(r) for r in log(server)] == ["POST fs/read"], (s, chunk)
    finally:
        m.unmount()


def test_dd_of_a_cold_file_is_one_request(server, tmp_root, sandbox, files):
    m = cold_mount(server, tmp_root, sandbox, "mnt-reads-dd")
    try:
        for s in SIZES:
            server.reset()
            out = subprocess.run(["dd", "if=" + m.p(sandbox, "work", f"reads-{s}", "f"), "bs=4096"],
                                 capture_output=True, check=True, timeout=120).stdout
            assert out == files[s]
            assert [route(r) for r in log(server)] == ["POST fs/read"], s
    finally:
        m.unmount()


def test_a_header_then_a_far_read_stay_exact(server, tmp_root, sandbox, files):
    """A reader that takes a header and then jumps (file(1), a database): the
    stream the first read started gives way to a ranged read, and both
    reads return exactly the bytes asked for."""
    s = 3 * 1024 * 1024
    m = cold_mount(server, tmp_root, sandbox, "mnt-reads-jump")
    try:
        fd = os.open(m.p(sandbox, "work", f"reads-{s}", "f"), os.O_RDONLY | os.O_DIRECT)
        try:
            assert os.pread(fd, 4096, 0) == files[s][:4096]
            far = s - 8192
            assert os.pread(fd, 4096, far) == files[s][far:far + 4096]
            assert os.pread(fd, 4096, 8192) == files[s][8192:12288]
        finally:
            os.close(fd)
    finally:
        m.unmount()
