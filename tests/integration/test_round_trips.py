# SPDX-License-Identifier: Apache-2.0
"""Short commands in one round trip (-o exec_wait_ms, doc/SEMANTICS.md).

The request that starts a command waits up to exec_wait_ms (default 200) for
it to end; a command that does comes back ended, with its exit status and its
streams (up to 64 KiB each, in base64), and `cat exit`, `cat stdout`,
`cat stderr` and cmd/N/* are then served from memory. These tests count the
requests in the local server's log: one command (Daytona's POST
/process/execute, Vercel's POST cmd; routes.py) and nothing
else. Longer commands detach as before (live output, stdin, kill), output
over the limit is read from the sandbox's files, exact, and the files are
written all the same, so a remount sees the same history.
"""
import json
import os
import threading
import time

import pytest

import routes
from conftest import Mount, create_sandbox, ctl, read

INLINE_MAX = 64 * 1024
EXEC = routes.route("exec")
DOWNLOAD = routes.route("download")


def rb(path):
    with open(path, "rb") as f:
        return f.read()


def sandbox_id(mount, sb):
    """What the sandbox's requests carry in their path: Daytona's id of the
    sandbox, Vercel's id of its current session."""
    info = json.loads(read(mount.p(sb, "info")))
    return info["session"]["id"] if "session" in info else info["id"]


def toolbox_requests(server, sid):
    """The requests to one sandbox since the last stats reset (routes.py)."""
    return routes.sandbox_requests(server, sid)


def only_the_launch(reqs):
    return reqs == [EXEC]


@pytest.fixture(scope="module")
def sid(mount, sandbox):
    # A first command: the sandbox's toolbox is warm, its history known.
    ctl(mount.p(sandbox, "ctl"), "exec true")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    return sandbox_id(mount, sandbox)


def newest(mount, sb):
    return mount.p(sb, "cmd", os.readlink(mount.p(sb, "cmd", "last")))


def test_exec_true_then_exit_is_one_request(mount, sandbox, sid, server):
    server.reset()
    ctl(mount.p(sandbox, "ctl"), "exec true")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    reqs = toolbox_requests(server, sid)
    assert only_the_launch(reqs), reqs
    # and everything else about it is known too
    d = newest(mount, sandbox)
    assert read(os.path.join(d, "status")) == "exited\n"
    assert read(os.path.join(d, "command")) == "true\n"
    assert read(os.path.join(d, "exit")) == "0\n"
    assert rb(mount.p(sandbox, "stdout")) == b""
    assert rb(os.path.join(d, "stderr")) == b""
    reqs = toolbox_requests(server, sid)
    assert only_the_launch(reqs), reqs


def test_binary_output_is_exact_in_one_request(mount, sandbox, sid, server):
    """Bytes that are not UTF-8 (NUL, 0xff, a broken sequence) and no final
    newline: the launch's answer is JSON text, so they travel in base64."""
    server.reset()
    ctl(mount.p(sandbox, "ctl"),
        r"exec printf 'a\000b\377\303(\n\000end'; printf '\376err\r' >&2; exit 3")
    assert read(mount.p(sandbox, "exit")) == "3\n"
    assert rb(mount.p(sandbox, "stdout")) == b"a\x00b\xff\xc3(\n\x00end"
    assert rb(mount.p(sandbox, "stderr")) == b"\xfeerr\r"
    d = newest(mount, sandbox)
    assert rb(os.path.join(d, "stdout")) == b"a\x00b\xff\xc3(\n\x00end"
    assert os.stat(os.path.join(d, "stdout")).st_size == 11
    assert os.stat(os.path.join(d, "stderr")).st_size == 5
    reqs = toolbox_requests(server, sid)
    assert only_the_launch(reqs), reqs


def test_output_at_the_limit_is_inline_and_over_it_is_read(mount, sandbox, sid, server):
    for size, inline in ((INLINE_MAX, True), (INLINE_MAX + 1, False), (300000, False)):
        server.reset()
        ctl(mount.p(sandbox, "ctl"),
            f"exec head -c {size} /dev/urandom > /tmp/rt-{size}; cat /tmp/rt-{size}; "
            f"head -c 100 /tmp/rt-{size} >&2")
        assert read(mount.p(sandbox, "exit")) == "0\n"
        out = rb(mount.p(sandbox, "stdout"))
        err = rb(mount.p(sandbox, "stderr"))
        reqs = toolbox_requests(server, sid)
        want = rb(mount.p(sandbox, "fs", "tmp", f"rt-{size}"))
        assert len(want) == size
        assert out == want
        assert err == want[:100]
        assert reqs[0] == EXEC, reqs
        if inline:
            assert only_the_launch(reqs), reqs
        else:
            # the sizes came back with the end: stdout is downloaded (stderr
            # still came inline), and nothing is listed
            assert len(reqs) >= 2
            assert all(r == DOWNLOAD for r in reqs[1:]), reqs


def test_long_command_detaches_and_streams_live(mount, sandbox, sid, server):
    ctl(mount.p(sandbox, "ctl"), "exec echo first; sleep 1.5; echo second")
    d = newest(mount, sandbox)
    # the write returned while it runs
    assert read(os.path.join(d, "status")) == "running\n"
    with open(os.path.join(d, "stdout"), "rb") as f:
        assert f.readline() == b"first\n"
        # the first line arrived while the command still runs
        assert read(os.path.join(d, "status")) == "running\n"
        assert f.read() == b"second\n"
    assert read(os.path.join(d, "exit")) == "0\n"
    assert read(os.path.join(d, "status")) == "exited\n"


def test_stdin_and_kill_still_work(mount, sandbox, sid, server):
    ctl(mount.p(sandbox, "ctl"), "exec wc -c")
    d = newest(mount, sandbox)
    assert read(os.path.join(d, "status")) == "running\n"
    with open(os.path.join(d, "stdin"), "wb") as f:
        f.write(b"\x00\xff" * 1000)
    assert read(os.path.join(d, "exit")) == "0\n"
    assert read(os.path.join(d, "stdout")).strip() == "2000"

    ctl(mount.p(sandbox, "ctl"), "exec sleep 30")
    d = newest(mount, sandbox)
    assert read(os.path.join(d, "status")) == "running\n"
    ctl(os.path.join(d, "ctl"), "kill")
    assert read(os.path.join(d, "exit")) == "143\n"
    assert read(os.path.join(d, "status")) == "killed\n"
    # an ended command cannot be killed
    ctl(mount.p(sandbox, "ctl"), "exec true")
    d = newest(mount, sandbox)
    with pytest.raises(OSError) as e:
        ctl(os.path.join(d, "ctl"), "kill")
    assert e.value.errno == 3      # ESRCH
    with pytest.raises(OSError):
        with open(os.path.join(d, "stdin"), "wb") as f:
            f.write(b"late")


def test_poll_and_tail_of_a_fast_command(mount, sandbox, sid):
    ctl(mount.p(sandbox, "ctl"), "exec seq 3")
    with open(mount.p(sandbox, "stdout"), "rb") as f:
        import select
        p = select.poll()
        p.register(f.fileno(), select.POLLIN)
        assert p.poll(5000)
        assert f.read() == b"1\n2\n3\n"


def test_history_and_fresh_mount(mount, sandbox, sid, server, tmp_root):
    """The files in the sandbox are written as before: another mount sees the
    same command, exit and output. A fresh mount's first exec is one request
    too: the launcher sends the sandbox's history back with it."""
    ctl(mount.p(sandbox, "ctl"), "exec printf 'kept\\377'; exit 9")
    assert read(mount.p(sandbox, "exit")) == "9\n"
    n = os.path.basename(newest(mount, sandbox))
    before = sorted(x for x in os.listdir(mount.p(sandbox, "cmd")) if x != "last")
    m2 = Mount(server, tmp_root, extra_opts=("dir_timeout=60",), name="mnt-rt")
    try:
        c2 = m2.p(sandbox, "cmd", n)
        assert read(os.path.join(c2, "exit")) == "9\n"
        assert rb(os.path.join(c2, "stdout")) == b"kept\xff"
        assert read(os.path.join(c2, "status")) == "exited\n"

        m3 = Mount(server, tmp_root, extra_opts=("dir_timeout=60",), name="mnt-rt3")
        try:
            os.stat(m3.p(sandbox, "ctl"))
            server.reset()
            ctl(m3.p(sandbox, "ctl"), "exec echo fresh")
            assert read(m3.p(sandbox, "stdout")) == "fresh\n"
            assert read(m3.p(sandbox, "exit")) == "0\n"
            listed = sorted(x for x in os.listdir(m3.p(sandbox, "cmd")) if x != "last")
            reqs = toolbox_requests(server, sid)
            assert only_the_launch(reqs), reqs
            n3 = os.readlink(m3.p(sandbox, "cmd", "last"))
            assert int(n3) > int(n)
            assert sorted(before + [n3], key=int) == sorted(listed, key=int)
        finally:
            m3.unmount()
        # the first mount finds it (another mount's command: one look)
        assert read(mount.p(sandbox, "cmd", n3, "stdout")) == "fresh\n"
    finally:
        m2.unmount()


def test_exec_wait_ms_0_detaches_at_once(server, tmp_root):
    m = Mount(server, tmp_root, extra_opts=("exec_wait_ms=0",), name="mnt-nowait")
    try:
        sb = create_sandbox(m, "nowait")
        try:
            sid = sandbox_id(m, sb)
            ctl(m.p(sb, "ctl"), "exec true")
            assert read(m.p(sb, "exit")) == "0\n"
            server.reset()
            ctl(m.p(sb, "ctl"), "exec echo x")
            assert read(m.p(sb, "stdout")) == "x\n"
            assert read(m.p(sb, "exit")) == "0\n"
            reqs = toolbox_requests(server, sid)
            # the launch, then at least a listing and a download
            assert reqs[0] == EXEC
            assert len(reqs) >= 3, reqs
        finally:
            ctl(m.p(sb, "ctl"), "delete")
    finally:
        m.unmount()


@pytest.mark.parametrize("opts", [(), ("exec_wait_ms=0",)], ids=["inline", "detached"])
def test_output_a_background_child_adds_after_the_end_appears(server, tmp_root, opts):
    """A command that ends while a child it started in the background writes on:
    the streams are the files in the sandbox. The output the launch brought is
    served from memory only until the sizes are listed again; every read is
    whole at the size the kernel was given (never a part of the late line)."""
    m = Mount(server, tmp_root, extra_opts=opts, name="mnt-late-" + ("d" if opts else "i"))
    try:
        sb = create_sandbox(m, "late")
        try:
            ctl(m.p(sb, "ctl"), "exec (sleep 1; echo late) & echo early")
            assert read(m.p(sb, "exit")) == "0\n"
            seen = [rb(m.p(sb, "stdout"))]
            assert seen[0] in (b"early\n", b"early\nlate\n"), seen
            deadline = time.time() + 15
            while seen[-1] != b"early\nlate\n" and time.time() < deadline:
                time.sleep(0.3)
                size = os.stat(m.p(sb, "stdout")).st_size
                with open(m.p(sb, "stdout"), "rb") as f:
                    data = f.read()
                assert data in (b"early\n", b"early\nlate\n"), (seen, data)
                assert len(data) >= size, (data, size)   # nothing short of the size given
                seen.append(data)
            assert seen[-1] == b"early\nlate\n", seen
            assert os.stat(m.p(sb, "stdout")).st_size == len(b"early\nlate\n")
        finally:
            ctl(m.p(sb, "ctl"), "delete")
    finally:
        m.unmount()


def test_a_read_after_the_end_stops_at_the_size_given(server, tmp_root):
    """Until an ended command is listed again (poll_max), its streams are the size
    seen at the end: a read of a stream a background child has grown since returns
    those bytes, then EOF, never some of the late bytes past st_size (a line cut)."""
    m = Mount(server, tmp_root, extra_opts=("exec_wait_ms=0", "poll_max=60000"), name="mnt-cut")
    try:
        sb = create_sandbox(m, "cut")
        try:
            ctl(m.p(sb, "ctl"), "exec (sleep 1; echo late) & echo early")
            assert read(m.p(sb, "exit")) == "0\n"
            time.sleep(2.5)   # the late line is in the sandbox's file now
            size = os.stat(m.p(sb, "stdout")).st_size
            assert size == len(b"early\n")
            assert rb(m.p(sb, "stdout")) == b"early\n"
            with open(m.p(sb, "stdout"), "rb") as f:
                assert f.read(3) == b"ear"
                assert f.read(4096) == b"ly\n"
                assert f.read(4096) == b""
        finally:
            ctl(m.p(sb, "ctl"), "delete")
    finally:
        m.unmount()
