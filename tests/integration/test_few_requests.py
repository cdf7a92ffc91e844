# SPDX-License-Identifier: Apache-2.0
"""Requests kept low on every provider (issue 12 on Daytona, issue 15 on Vercel).

The same actions, counted in the local server's request log, on Daytona and
on Vercel: a short command and its exit and output in one request; the small
files of a listed directory in one request (Daytona's bulk download,
Vercel's one command that prints them); closes at the same time in one
request (Daytona's bulk upload, Vercel's one command that carries their
bytes and copies each into place: inode, mode and links kept). The files are
made by a command in the sandbox, so that the mount knows nothing of them
until it lists their directory.
"""
import hashlib
import os
import subprocess
import threading
import uuid

import pytest

from conftest import PROVIDER, SANDBOX_HOME, Mount, create_sandbox, ctl, read

# The route of a command, and of the sandbox's file and command calls.
EXEC = "/cmd" if PROVIDER == "vercel" else "/process/execute"
SANDBOX_CALL = "/sessions/" if PROVIDER == "vercel" else "/toolbox/"


def sandbox_requests(server):
    """(method, route) of the requests to sandboxes since the last reset (the
    control plane's are the registry's business)."""
    out = []
    for e in server.local("GET", "/_local/log"):
        path = e["path"].split("?")[0]
        if SANDBOX_CALL not in path:
            continue
        if PROVIDER == "vercel":
            route = "/" + path.split("/sessions/", 1)[1].split("/", 1)[1]
        else:
            route = "/" + path.split("/toolbox/", 1)[1].split("/", 1)[1]
        out.append((e["method"], route))
    return out


def rb(path):
    with open(path, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def mount(server, tmp_root):
    """This module's own mount: a command waits up to 5 s for its end (not
    200 ms), so that a slow (sanitizer, loaded) run still ends it in the
    launch's request."""
    m = Mount(server, tmp_root, ["exec_wait_ms=5000"], name="fewmnt")
    yield m
    m.unmount()


@pytest.fixture(scope="module")
def sandbox(mount):
    name = create_sandbox(mount, "few")
    yield name
    try:
        ctl(mount.p(name, "ctl"), "delete")
    except OSError:
        pass


@pytest.fixture(scope="module")
def home(mount, sandbox):
    ctl(mount.p(sandbox, "ctl"), "exec true")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    return mount.p(sandbox, "fs", SANDBOX_HOME.lstrip("/"))


def run(mount, sandbox, command):
    ctl(mount.p(sandbox, "ctl"), "exec " + command)
    assert read(mount.p(sandbox, "exit")) == "0\n", read(mount.p(sandbox, "stdout"))


def test_exec_and_its_output_in_one_request(mount, sandbox, home, server):
    server.reset()
    ctl(mount.p(sandbox, "ctl"), "exec true")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    assert sandbox_requests(server) == [("POST", EXEC)]
    server.reset()
    ctl(mount.p(sandbox, "ctl"), r"exec printf 'a\000b\377'; printf 'err\n' >&2; exit 4")
    assert read(mount.p(sandbox, "exit")) == "4\n"
    assert rb(mount.p(sandbox, "stdout")) == b"a\x00b\xff"
    assert rb(mount.p(sandbox, "stderr")) == b"err\n"
    assert sandbox_requests(server) == [("POST", EXEC)]


def test_a_large_output_read_in_order_costs_few_requests(mount, sandbox, home, server):
    """cat of a finished command's 10 MB stdout: cat asks 128 KiB a read,
    and each was a request (a command each on Vercel past the first MiB):
    about 80 of them. Read in order, an ended command's stream comes 4 MiB a
    request now, the rest kept for the reads that follow. Exact bytes."""
    run(mount, sandbox, "head -c 7500000 /dev/urandom | base64 -w 100; md5sum < /dev/null >&2")
    n = os.readlink(mount.p(sandbox, "cmd", "last"))
    run(mount, sandbox, f"md5sum < $(ls -d /tmp/.daytonafs/cmd/{n})/stdout")
    want = read(mount.p(sandbox, "stdout")).split()[0]
    server.reset()
    data = subprocess.run(["cat", mount.p(sandbox, "cmd", n, "stdout")], check=True,
                          stdout=subprocess.PIPE).stdout
    reqs = sandbox_requests(server)
    assert len(data) > 10_000_000 and hashlib.md5(data).hexdigest() == want
    assert len(reqs) <= 5, reqs          # 3 pieces of 4 MiB, and a look at the record


def test_readers_that_stop_half_way_leave_the_read_ahead_to_the_next(mount, sandbox, home, server):
    """head of nine large outputs, each read twice in order (a read-ahead
    each), then cat of a tenth: the buffers of readers that stopped used to
    stay until the command was forgotten, and once 32 MiB were held no read
    ahead was made at all (78 requests again). The least recently used now
    gives way (found on review)."""
    ns = []
    for _ in range(10):
        run(mount, sandbox, "head -c 3750000 /dev/urandom | base64 -w 100")
        ns.append(os.readlink(mount.p(sandbox, "cmd", "last")))
    for n in ns[:9]:
        with open(mount.p(sandbox, "cmd", n, "stdout"), "rb") as f:
            assert len(f.read(128 << 10)) == 128 << 10
            assert len(f.read(128 << 10)) == 128 << 10
    server.reset()
    data = subprocess.run(["cat", mount.p(sandbox, "cmd", ns[9], "stdout")], check=True,
                          stdout=subprocess.PIPE).stdout
    assert len(data) > 5_000_000
    assert len(sandbox_requests(server)) <= 4, sandbox_requests(server)


def content(i):
    return b"file %d\x00\xff" % i + b"x" * (i * 97 % 3000)


def test_small_files_of_a_directory_in_one_request(mount, sandbox, home, server):
    d = "fr-" + uuid.uuid4().hex[:8]
    run(mount, sandbox, f"mkdir {d} && cd {d} && for i in $(seq 0 29); do "
        f"printf 'file %s\\000\\377' $i > f$i; head -c $((i * 97 % 3000)) /dev/zero | tr '\\0' x >> f$i; done")
    names = sorted(os.listdir(os.path.join(home, d)), key=lambda n: int(n[1:]))
    assert len(names) == 30
    server.reset()
    for n in names:
        assert rb(os.path.join(home, d, n)) == content(int(n[1:])), n
    reqs = sandbox_requests(server)
    # the first read fetches the others of the listing with it
    assert len(reqs) == 1, reqs


def test_a_file_changed_after_the_bulk_read_is_read_again(mount, sandbox, home, server):
    """Prefetched content is used only while the listing still gives its
    size: a command's change is seen."""
    d = "fr-" + uuid.uuid4().hex[:8]
    run(mount, sandbox, f"mkdir {d} && cd {d} && for i in 1 2 3 4; do echo old$i > f$i; done")
    os.listdir(os.path.join(home, d))
    assert read(os.path.join(home, d, "f1")) == "old1\n"
    run(mount, sandbox, f"echo newer-and-longer > {d}/f2")
    assert read(os.path.join(home, d, "f2")) == "newer-and-longer\n"
    assert read(os.path.join(home, d, "f3")) == "old3\n"


def test_small_write_keeps_inode_mode_and_links(mount, sandbox, home, server):
    name = "fw-" + uuid.uuid4().hex[:8]
    p = os.path.join(home, name)
    with open(p, "w") as f:
        f.write("first\n")
    os.chmod(p, 0o640)
    run(mount, sandbox, f"ln {name} {name}.link; stat -c %i {name}")
    ino = read(mount.p(sandbox, "stdout")).strip()
    os.stat(p)    # the command's end made the mount look again: it does now
    server.reset()
    with open(p, "w") as f:
        f.write("second\n")
    reqs = sandbox_requests(server)
    # Vercel: one command carries the bytes and copies them into place
    assert len(reqs) == 1, reqs
    assert os.stat(p).st_mode & 0o7777 == 0o640
    # in the sandbox: the same inode, mode and links, the link sees it
    run(mount, sandbox, f"cat {name}.link; stat -c '%i %a %h' {name}")
    assert read(mount.p(sandbox, "stdout")) == f"second\n{ino} 640 2\n"


@pytest.fixture
def slow(server):
    """Requests take 200 ms at the server: closes meet while one is in flight."""
    server.local("PUT", "/_local/latency", {"ms": 200})
    yield
    server.local("PUT", "/_local/latency", {"ms": 0})


def test_parallel_closes_share_requests(mount, sandbox, home, server, slow):
    d = "fp-" + uuid.uuid4().hex[:8]
    os.mkdir(os.path.join(home, d))
    n = 12
    datas = [bytes([i]) * (1000 + i) + b"\x00\xff" for i in range(n)]
    fds = []
    for i in range(n):
        fd = os.open(os.path.join(home, d, "p%02d" % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, datas[i])
        fds.append(fd)
    barrier = threading.Barrier(n)
    errors = []

    def closer(i):
        barrier.wait()
        try:
            os.close(fds[i])
        except OSError as e:
            errors.append(e)

    server.reset()
    threads = [threading.Thread(target=closer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    reqs = sandbox_requests(server)
    # the first goes alone at once; the others, closed while it is in
    # flight, share the next request (or two, if some came late)
    assert 2 <= len(reqs) <= 4, reqs
    run(mount, sandbox, f"cd {d} && for f in p*; do wc -c < $f; done | tr '\\n' ' '")
    assert read(mount.p(sandbox, "stdout")).split() == [str(1002 + i) for i in range(n)]
    for i in range(n):
        assert rb(os.path.join(home, d, "p%02d" % i)) == datas[i]


def test_random_reads_of_a_file_take_it_whole_once(mount, sandbox, home, server, provider):
    """Without a ranged download (Vercel) each random read is a command;
    from the second, once they would cost more than the file, the file
    comes whole in one request and the handle reads the rest from its copy."""
    name = "rr-" + uuid.uuid4().hex[:8]
    run(mount, sandbox, f"seq 1 400000 > {name}")
    want = "".join("%d\n" % i for i in range(1, 400001)).encode()
    p = os.path.join(home, name)
    assert os.stat(p).st_size == len(want)
    import random
    offs = [random.Random(7).randrange(1, len(want) - 4096) for _ in range(20)]
    server.reset()
    fd = os.open(p, os.O_RDONLY)
    try:
        for off in offs:
            assert os.pread(fd, 4096, off) == want[off:off + 4096]
        assert os.pread(fd, 4096, len(want) - 10) == want[-10:]
        assert os.pread(fd, 4096, len(want) + 5) == b""
    finally:
        os.close(fd)
    reqs = sandbox_requests(server)
    if provider == "vercel":
        # the first far read is a command; the second takes the file whole
        assert reqs == [("POST", "/cmd"), ("POST", "/fs/read")], reqs
    else:
        assert 1 <= len(reqs) <= len(offs) + 2, reqs
