# SPDX-License-Identifier: Apache-2.0
"""The kernel side of sequential I/O (fs.c, dfs_tune_kernel): requests of
1 MiB each way and the mount's readahead. Sizes are read from libfuse's debug
output ("read[FH] N bytes from OFF", "write[FH] N bytes to OFF"), one line per
FUSE request; the readahead from the mount's bdi in sysfs."""
import os
import re
import subprocess

import pytest

from conftest import EXEC_ROUTE, PROVIDER, SANDBOX_HOME, Mount, ctl, read

MiB = 1 << 20


def bdi_read_ahead_kb(path):
    dev = os.stat(path).st_dev
    with open("/sys/class/bdi/%d:%d/read_ahead_kb" % (os.major(dev), os.minor(dev))) as f:
        return int(f.read())


def request_sizes(log_path, op, start):
    """Sizes of the FUSE READs or WRITEs libfuse logged after byte start of the log."""
    with open(log_path, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return [int(n) for n in re.findall(r"^%s\[\d+\] (\d+) bytes" % op, text, re.M)]


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="only root may set a bdi's read_ahead_kb")


@root_only
def test_mount_readahead_is_one_mib(mount):
    assert bdi_read_ahead_kb(mount.path) == 1024


@root_only
def test_read_ahead_kb_option(server, tmp_root):
    m = Mount(server, tmp_root, extra_opts=("read_ahead_kb=4096",), name="mnt-ra")
    try:
        assert bdi_read_ahead_kb(m.path) == 4096
    finally:
        m.unmount()
    # 0 leaves the kernel's own (128 KiB on Linux; below 1 MiB in any case).
    m = Mount(server, tmp_root, extra_opts=("read_ahead_kb=0",), name="mnt-ra0")
    try:
        assert bdi_read_ahead_kb(m.path) < 1024
    finally:
        m.unmount()


def test_sequential_requests_are_one_mib(server, tmp_root):
    """dd bs=1M writes arrive as 1 MiB WRITEs (max_write), and a cold cat of a
    file arrives as 1 MiB READs (max_pages and, as root, the readahead) rather
    than the 256 KiB of cat's buffer."""
    m = Mount(server, tmp_root, extra_opts=("debug",), name="mnt-kio")
    try:
        name = "kio-" + os.urandom(4).hex()
        ctl(m.p("ctl"), "create " + name)
        home = m.p(name, "fs", SANDBOX_HOME.lstrip("/"))
        data = os.urandom(16 * MiB)
        src = os.path.join(tmp_root, "kio-src.bin")
        with open(src, "wb") as f:
            f.write(data)
        start = os.path.getsize(m.log.name)
        with open(src, "rb") as fin, open(os.path.join(home, "w.bin"), "wb") as fout:
            while True:
                chunk = fin.read(MiB)
                if not chunk:
                    break
                fout.write(chunk)
        writes = request_sizes(m.log.name, "write", start)
        assert sum(writes) == len(data)
        assert writes == [MiB] * 16, writes

        # A file the mount never cached: made by a command in the sandbox.
        ctl(m.p(name, "ctl"), "exec head -c %d /dev/zero | tr '\\0' x > r.bin" % (64 * MiB))
        assert read(m.p(name, "exit")) == "0\n"
        os.stat(os.path.join(home, "r.bin"))
        server.reset()
        start = os.path.getsize(m.log.name)
        with open(os.path.join(home, "r.bin"), "rb") as f:
            got = b""
            while True:
                chunk = f.read(256 * 1024)     # cat's buffer (coreutils 9)
                if not chunk:
                    break
                got += chunk
        assert got == b"x" * (64 * MiB)
        # The reads, 1 MiB each and a few in flight at once, still share one
        # streamed download (fs_read.c keeps enough behind the furthest read
        # for the kernel's reordering) after the first read's ranged one.
        assert server.count("/files/download") <= 2, server.stats()["routes"]
        reads = request_sizes(m.log.name, "read", start)
        assert reads and max(reads) <= MiB
        if os.geteuid() == 0:
            # All but the readahead's first steps and the tail.
            full = sum(1 for n in reads if n == MiB)
            assert full >= 56, reads
        ctl(m.p(name, "ctl"), "delete")
    finally:
        m.unmount()


def cold_cats_are_one_download(m, prefix):
    """md5sum of a 64 MiB file three times cold (a new mtime drops the page
    cache: auto_cache): the right bytes each time, from at most 2 downloads
    (Vercel: fs/read, which it streams) and no command (Vercel reads what a
    stream cannot serve by commands: it has no ranged download)."""
    name = prefix + os.urandom(4).hex()
    ctl(m.p("ctl"), "create " + name)
    ctl(m.p(name, "ctl"), "exec head -c %d /dev/urandom > r.bin && md5sum r.bin" % (64 * MiB))
    assert read(m.p(name, "exit")) == "0\n"
    want = read(m.p(name, "stdout")).split()[0]
    path = m.p(name, "fs", SANDBOX_HOME.lstrip("/"), "r.bin")
    for i in range(3):
        os.stat(path)
        m.server.reset()
        out = subprocess.run(["md5sum", path], capture_output=True, text=True, check=True).stdout
        assert out.split()[0] == want
        routes = m.server.stats()["routes"]
        assert m.server.count("/fs/read" if PROVIDER == "vercel" else "/files/download") <= 2, routes
        assert m.server.count(EXEC_ROUTE) == 0, routes
        ctl(m.p(name, "ctl"), "exec touch -d @%d r.bin" % (1700000000 + i))
        assert read(m.p(name, "exit")) == "0\n"
    ctl(m.p(name, "ctl"), "delete")


def test_cold_cat_is_one_streamed_download(server, tmp_root):
    """cat of a 64 MiB file the mount never read: with the kernel's 1 MiB
    READs, several in flight and arriving out of order, the streamed download
    must still serve them all (fs_read.c keeps 4 MiB behind the furthest
    read); with only 1 MiB kept, a READ that came late fell behind, the stream
    stopped, and the rest went by ranged downloads (34 requests and 1.5 times
    the bytes for 256 MiB)."""
    m = Mount(server, tmp_root, name="mnt-kcat")
    try:
        cold_cats_are_one_download(m, "kcat-")
    finally:
        m.unmount()


@root_only
def test_cold_cat_with_a_larger_readahead_is_one_streamed_download(server, tmp_root):
    """-o read_ahead_kb=4096: the kernel's READs come 4 MiB windows at a time,
    up to ~9 MiB past the furthest one served and the late ones behind it. The
    stream keeps and looks ahead by four windows (fs_read.c, stream_sizes);
    with the fixed 4 MiB of the default readahead the stream stopped and
    restarted over and over (14 to 67 requests for one cold cat of 64 MiB)."""
    m = Mount(server, tmp_root, extra_opts=("read_ahead_kb=4096",), name="mnt-kra")
    try:
        assert bdi_read_ahead_kb(m.path) == 4096
        cold_cats_are_one_download(m, "kra-")
    finally:
        m.unmount()
