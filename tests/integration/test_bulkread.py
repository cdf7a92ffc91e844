# SPDX-License-Identifier: Apache-2.0
"""Reads that start at once, and many small files in few requests (issue 12, goals 2 and 3).

Request counts come from the local server's counters. The files are made in
the server's copy of the sandbox (as another client would), so that the mount
knows nothing of them until it lists their directory.
"""
import os
import subprocess
import uuid

import pytest

from conftest import ctl, read, sh


@pytest.fixture(scope="module")
def host_home(server, sandbox):
    sid = server.api("GET", f"/sandbox/{sandbox}")["id"]
    return os.path.join(server.data, "sandboxes", sid, "fs", "home", "daytona")


@pytest.fixture
def no_faults(server):
    server.local("DELETE", "/_local/faults")
    yield
    server.local("DELETE", "/_local/faults")


def forget(mount, sandbox):
    """A command's end drops what the mount cached of the sandbox: what was made
    on the sandbox's side is seen from now on, and nothing of it is cached."""
    ctl(mount.p(sandbox, "ctl"), "exec true")
    assert read(mount.p(sandbox, "exit")) == "0\n"


def make_tree(host_home, ndirs, per_dir, size=lambda i: 100 + i * 37 % 3000):
    """ndirs directories of per_dir small files on the sandbox's side; returns the tree's name."""
    name = "br-" + uuid.uuid4().hex[:8]
    for d in range(ndirs):
        dd = os.path.join(host_home, name, "d%02d" % d)
        os.makedirs(dd)
        for i in range(per_dir):
            k = d * per_dir + i
            body = ("file %d line\n" % k) * (size(k) // 14 + 1)
            if k % 7 == 0:
                body += "needle %d\n" % k
            with open(os.path.join(dd, "f%03d.c" % i), "w") as f:
                f.write(body)
    return name


def test_cold_small_cat_is_one_request(mount, sandbox, server, host_home):
    name = make_tree(host_home, 1, 30)
    forget(mount, sandbox)
    d = mount.p(sandbox, "work", name, "d00")
    os.listdir(d)                          # as a shell's completion would
    server.reset()
    got = sh(["cat", os.path.join(d, "f005.c")]).stdout
    assert got == read(os.path.join(host_home, name, "d00", "f005.c"))
    assert server.stats()["requests"] == 1, server.stats()
    # The files after it came in the same request: reading them costs nothing.
    server.reset()
    for i in range(6, 30):
        assert read(os.path.join(d, "f%03d.c" % i)) == read(os.path.join(host_home, name, "d00", "f%03d.c" % i))
    assert server.stats()["requests"] == 0, server.stats()


def test_cold_cat_of_a_lone_file_is_one_download(mount, sandbox, server, host_home):
    name = "br-" + uuid.uuid4().hex[:8]
    os.makedirs(os.path.join(host_home, name))
    with open(os.path.join(host_home, name, "only.txt"), "w") as f:
        f.write("alone\n")
    forget(mount, sandbox)
    os.listdir(mount.p(sandbox, "work", name))
    server.reset()
    assert read(mount.p(sandbox, "work", name, "only.txt")) == "alone\n"
    assert server.stats()["requests"] == 1
    assert server.count("/files/download") == 1


def test_sequential_read_is_one_download_and_nothing_before_it(mount, sandbox, server, host_home):
    name = "br-" + uuid.uuid4().hex[:8]
    os.makedirs(os.path.join(host_home, name))
    data = os.urandom(24 * 1024 * 1024 + 4321)
    with open(os.path.join(host_home, name, "big.bin"), "wb") as f:
        f.write(data)
    p = mount.p(sandbox, "work", name, "big.bin")
    forget(mount, sandbox)
    os.listdir(os.path.dirname(p))
    server.reset()
    out = subprocess.run(["cat", p], check=True, stdout=subprocess.PIPE).stdout
    assert out == data
    stats = server.stats()
    stats["log"] = [(e["method"], e["path"][-60:], e["status"], e["bytes_out"]) for e in server.local("GET", "/_local/log")]
    assert server.count("/files/download") == 1, stats
    assert stats["requests"] == 1, stats          # no command, no listing, no stat before it


def test_grep_r_fetches_small_files_in_bulk(mount, sandbox, server, host_home):
    name = make_tree(host_home, 4, 50)
    forget(mount, sandbox)
    top = mount.p(sandbox, "work", name)
    server.reset()
    got = subprocess.run(["grep", "-r", "needle", "."], cwd=top, stdout=subprocess.PIPE, text=True).stdout
    want = subprocess.run(["grep", "-r", "needle", "."], cwd=os.path.join(host_home, name),
                          stdout=subprocess.PIPE, text=True).stdout
    # The mount lists names sorted, the host's disk in its own order: the same lines.
    assert sorted(got.splitlines()) == sorted(want.splitlines())
    assert len(got.splitlines()) == len([k for k in range(200) if k % 7 == 0])
    bulk, single = server.count("/files/bulk-download"), server.count("/files/download")
    # A few bulk requests per directory at most, never one per file.
    assert 1 <= bulk <= 8, server.stats()
    assert single <= 4, server.stats()
    # The same grep run in the sandbox agrees.
    ctl(mount.p(sandbox, "ctl"), f"exec cd /home/daytona/{name} && grep -r needle .")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    assert sorted(read(mount.p(sandbox, "stdout")).splitlines()) == sorted(got.splitlines())


def test_tar_of_a_tree_matches(mount, sandbox, server, host_home, tmp_path):
    name = make_tree(host_home, 2, 40)
    forget(mount, sandbox)
    server.reset()
    sh(["tar", "-cf", str(tmp_path / "t.tar"), "-C", mount.p(sandbox, "work"), name])
    assert server.count("/files/bulk-download") <= 4
    assert server.count("/files/download") <= 4
    os.mkdir(tmp_path / "x")
    sh(["tar", "-xf", str(tmp_path / "t.tar"), "-C", str(tmp_path / "x")])
    for d in ("d00", "d01"):
        for f in sorted(os.listdir(os.path.join(host_home, name, d))):
            assert read(str(tmp_path / "x" / name / d / f)) == read(os.path.join(host_home, name, d, f))


def test_a_file_changed_after_the_prefetch_is_read_fresh(mount, sandbox, server, host_home):
    name = make_tree(host_home, 1, 10, size=lambda i: 200)
    forget(mount, sandbox)
    d = mount.p(sandbox, "work", name, "d00")
    os.listdir(d)
    server.reset()
    read(os.path.join(d, "f000.c"))        # fetches the others with it
    assert server.count("/files/bulk-download") == 1
    old = read(os.path.join(host_home, name, "d00", "f004.c"))
    new = old.upper()                      # the same size
    f4 = f"/home/daytona/{name}/d00/f004.c"
    ctl(mount.p(sandbox, "ctl"), f"exec tr a-z A-Z < {f4} > {f4}.tmp && cat {f4}.tmp > {f4} && rm {f4}.tmp")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    assert read(os.path.join(d, "f004.c")) == new
    # Written through the mount: read back as written, not as prefetched.
    read(os.path.join(d, "f005.c"))
    server.reset()
    read(os.path.join(d, "f006.c"))        # a new batch: f007 ... f009
    with open(os.path.join(d, "f008.c"), "w") as f:
        f.write("rewritten\n")
    assert read(os.path.join(d, "f008.c")) == "rewritten\n"


def test_a_file_removed_after_the_listing_gives_enoent(mount, sandbox, server, host_home):
    name = make_tree(host_home, 1, 5)
    forget(mount, sandbox)
    d = mount.p(sandbox, "work", name, "d00")
    os.listdir(d)
    os.unlink(os.path.join(host_home, name, "d00", "f002.c"))
    assert read(os.path.join(d, "f000.c")) == read(os.path.join(host_home, name, "d00", "f000.c"))
    with pytest.raises(FileNotFoundError):
        read(os.path.join(d, "f002.c"))
    assert read(os.path.join(d, "f003.c")) == read(os.path.join(host_home, name, "d00", "f003.c"))


FAULTS = {"500": {"action": "status", "status": 500},
          "drop": {"action": "drop"},
          "reset_mid_body": {"action": "reset_mid_body"},
          "404": {"action": "status", "status": 404}}


@pytest.mark.parametrize("kind", list(FAULTS))
def test_bulk_faults_fall_back_without_a_wrong_byte(mount, sandbox, server, host_home, no_faults, kind):
    # Large enough (about 150 KiB) that a cut comes mid-body.
    name = make_tree(host_home, 1, 60, size=lambda i: 2500)
    forget(mount, sandbox)
    d = mount.p(sandbox, "work", name, "d00")
    os.listdir(d)
    server.local("POST", "/_local/faults", {"pattern": "/files/bulk-download", "rate": 1.0, **FAULTS[kind]})
    server.reset()
    for i in range(60):
        assert read(os.path.join(d, "f%03d.c" % i)) == read(os.path.join(host_home, name, "d00", "f%03d.c" % i))
    assert server.count("/files/bulk-download") >= 1
    assert server.count("/files/download") >= 1     # the fallback


def test_memory_stays_bounded(mount, sandbox, server, host_home):
    # 360 files of up to 200 KiB: far more than the store holds.
    name = "br-" + uuid.uuid4().hex[:8]
    for dd in range(3):
        p = os.path.join(host_home, name, "d%d" % dd)
        os.makedirs(p)
        for i in range(120):
            with open(os.path.join(p, "f%03d" % i), "wb") as f:
                f.write(bytes([65 + i % 26]) * (1000 * (i % 200)))
    forget(mount, sandbox)
    out = subprocess.run(["grep", "-r", "-c", "Z", "."], cwd=mount.p(sandbox, "work", name),
                         stdout=subprocess.PIPE, text=True).stdout
    assert len(out.splitlines()) == 360
    hwm = 0
    for line in open(f"/proc/{mount.proc.pid}/status"):
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) // 1024
    assert hwm < 400, f"peak RSS {hwm} MiB"   # the sanitizer build; scripts/bench measures the release one
