# SPDX-License-Identifier: Apache-2.0
"""exec through ctl: separate streams, exit status, live output."""
import os
import subprocess
import time

import pytest

from conftest import Mount, ctl, read


def test_stdout_stderr_exit(mount, sandbox):
    ctl(mount.p(sandbox, "ctl"),
        'exec python3 -c "import sys; print(1); print(2, file=sys.stderr); sys.exit(3)"')
    assert read(mount.p(sandbox, "stdout")) == "1\n"
    assert read(mount.p(sandbox, "stderr")) == "2\n"
    assert read(mount.p(sandbox, "exit")) == "3\n"
    last = os.readlink(mount.p(sandbox, "cmd", "last"))
    cmd = mount.p(sandbox, "cmd", last)
    assert read(os.path.join(cmd, "stdout")) == "1\n"
    assert read(os.path.join(cmd, "exit")) == "3\n"
    assert read(os.path.join(cmd, "status")) == "exited\n"
    assert "sys.exit(3)" in read(os.path.join(cmd, "command"))


def test_the_newest_commands_files_have_its_size_at_once(mount, sandbox):
    """NAME/stdout, stderr and exit stand for the newest command: after the
    next exec, stat (and fstat, which wc -c < and tail -c trust) gave the
    last command's size for up to a second, the kernel's cached attributes
    of the same inode (found by an exploring helper)."""
    out, err = mount.p(sandbox, "stdout"), mount.p(sandbox, "stderr")
    for first, second in (("seq 1 100000; seq 1 10 >&2", "echo hello-world"),
                          ("echo x", "seq 1 20000; echo e >&2")):
        sizes = []
        for command in (first, second):
            ctl(mount.p(sandbox, "ctl"), "exec " + command)
            assert read(mount.p(sandbox, "exit")) == "0\n"
            sizes.append((os.stat(out).st_size, os.stat(err).st_size))
            with open(out, "rb") as f:
                sizes.append((os.fstat(f.fileno()).st_size, len(f.read())))
        n = os.readlink(mount.p(sandbox, "cmd", "last"))
        want_out = len(read(mount.p(sandbox, "cmd", n, "stdout")))
        want_err = len(read(mount.p(sandbox, "cmd", n, "stderr")))
        assert sizes[2:] == [(want_out, want_err), (want_out, want_out)]


def test_o_nonblock_reads_of_a_running_command_are_eagain(mount, sandbox):
    """Like a pipe's: a read of exit, or of stdout with nothing past the
    offset, is EAGAIN with O_NONBLOCK (it blocked until the command ended:
    found by an exploring helper); without it, it waits as before."""
    ctl(mount.p(sandbox, "ctl"), "exec echo first; sleep 3; echo second")
    n = os.readlink(mount.p(sandbox, "cmd", "last"))
    d = mount.p(sandbox, "cmd", n)
    fe = os.open(os.path.join(d, "exit"), os.O_RDONLY | os.O_NONBLOCK)
    fo = os.open(os.path.join(d, "stdout"), os.O_RDONLY | os.O_NONBLOCK)
    try:
        t = time.monotonic()
        try:
            os.read(fe, 16)
            assert False, "a read of a running command's exit returned"
        except BlockingIOError:
            pass
        deadline = time.monotonic() + 10
        got = b""
        while got != b"first\n":
            assert time.monotonic() < deadline
            try:
                got += os.read(fo, 100)
            except BlockingIOError:
                time.sleep(0.05)
        try:
            os.read(fo, 100)
            assert False, "a read past the output of a running command returned"
        except BlockingIOError:
            pass
        assert time.monotonic() - t < 2.5
        os.set_blocking(fe, True)
        assert os.read(fe, 16) == b"0\n"        # waits for the end
        os.set_blocking(fo, True)
        assert os.read(fo, 100) == b"second\n"
        assert os.read(fo, 100) == b""
    finally:
        os.close(fe)
        os.close(fo)


def test_poll_of_exit_is_ready_when_the_command_ends(mount, sandbox):
    """poll(2) of a running command's exit said readable at once, and its O_NONBLOCK read then
    gave EAGAIN: an event loop spun (found by an exploring helper). It is ready once the
    command has ended, as its read."""
    import select
    ctl(mount.p(sandbox, "ctl"), "exec sleep 2; exit 5")
    n = os.readlink(mount.p(sandbox, "cmd", "last"))
    for name in (os.path.join("cmd", n, "exit"), "exit"):
        fd = os.open(mount.p(sandbox, name), os.O_RDONLY | os.O_NONBLOCK)
        try:
            p = select.poll()
            p.register(fd, select.POLLIN)
            t = time.monotonic()
            if name != "exit":                     # (NAME/exit: the command has ended now)
                assert p.poll(500) == []
                assert time.monotonic() - t >= 0.4
            assert p.poll(10000) == [(fd, select.POLLIN)]
            assert os.read(fd, 16) == b"5\n"
        finally:
            os.close(fd)


def test_o_nonblock_reads_of_a_command_nobody_waits_for_see_its_output(server, tmp_root, mount, sandbox):
    """A command another mount started, which no poller here looks at: a
    read that may not wait looked only at what this mount knew, and gave
    EAGAIN for ever (never the output, never the end). It looks at the
    command again itself now (found on review)."""
    ctl(mount.p(sandbox, "ctl"), "exec sleep 2; echo hi; sleep 2")
    n = os.readlink(mount.p(sandbox, "cmd", "last"))
    m2 = Mount(server, tmp_root, name="mnt-nonblock-2")
    try:
        fo = os.open(m2.p(sandbox, "cmd", n, "stdout"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            got, deadline = b"", time.monotonic() + 20
            while True:
                assert time.monotonic() < deadline, got
                try:
                    b = os.read(fo, 100)
                except BlockingIOError:
                    time.sleep(0.1)
                    continue
                if not b:
                    break
                got += b
            assert got == b"hi\n"
        finally:
            os.close(fo)
    finally:
        m2.unmount()


def test_output_streams_while_running(mount, sandbox):
    ctl(mount.p(sandbox, "ctl"), "exec for i in 1 2 3; do echo line$i; sleep 1; done")
    t0 = time.time()
    p = subprocess.Popen(["cat", mount.p(sandbox, "stdout")], stdout=subprocess.PIPE, text=True)
    seen = []
    for line in p.stdout:
        seen.append((line.strip(), time.time() - t0))
    p.wait(10)
    assert [s for s, _ in seen] == ["line1", "line2", "line3"]
    # Lines arrive as printed, not all at the end.
    assert seen[0][1] < 1.5, seen
    assert seen[2][1] - seen[0][1] > 1.5, seen
    assert read(mount.p(sandbox, "exit")) == "0\n"


def test_exec_invalidates_metadata(mount, sandbox):
    work = mount.p(sandbox, "work")
    os.listdir(work)
    ctl(mount.p(sandbox, "ctl"), "exec touch fresh-from-command")
    read(mount.p(sandbox, "exit"))
    assert "fresh-from-command" in os.listdir(work)


def test_command_changes_are_seen_at_once_after_it_ends(mount, sandbox):
    work = mount.p(sandbox, "work")
    victim, newborn = os.path.join(work, "victim.txt"), os.path.join(work, "newborn.txt")
    with open(victim, "w") as f:
        f.write("12345")
    # Both are now cached, by us and by the kernel: one as present, one as absent.
    assert os.stat(victim).st_size == 5
    assert not os.path.exists(newborn)
    ctl(mount.p(sandbox, "ctl"), "exec rm victim.txt && printf 1234567 > newborn.txt")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    assert not os.path.exists(victim)
    assert os.stat(newborn).st_size == 7
    assert read(newborn) == "1234567"


def test_output_a_left_behind_process_appends_is_seen(mount, sandbox):
    """A background child appends after the command has ended: once the
    sizes seen at the end are poll_max (1 s) old, a read gives both lines,
    never the inline copy alone as if it were the whole stream."""
    ctl(mount.p(sandbox, "ctl"), "exec sh -c '(sleep 0.05; echo late) & echo early'")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    first = read(mount.p(sandbox, "stdout"))
    assert first in ("early\n", "early\nlate\n"), first
    time.sleep(1.6)
    assert read(mount.p(sandbox, "stdout")) == "early\nlate\n"
    last = os.readlink(mount.p(sandbox, "cmd", "last"))
    assert read(mount.p(sandbox, "cmd", last, "stdout")) == "early\nlate\n"


def test_sigterm_ends_the_mount_while_a_reader_waits_for_a_command(server, tmp_root, sandbox):
    # A read of a running command's exit waits for its end. On SIGTERM the
    # mount went away at once but the process stayed until the command
    # ended (libfuse joins its workers): systemctl stop waited for its
    # timeout. The wait now gives up when the session ends.
    import signal
    import threading
    from conftest import Mount
    m = Mount(server, tmp_root, name="mnt-sigterm")
    try:
        ctl(m.p(sandbox, "ctl"), "exec sleep 60")
        errs = []

        def reader():
            try:
                read(m.p(sandbox, "exit"))
            except OSError as e:
                errs.append(e.errno)
        t = threading.Thread(target=reader, daemon=True)
        t.start()
        time.sleep(1.0)
        assert t.is_alive()                    # waiting for the command's end
        m.proc.send_signal(signal.SIGTERM)
        start = time.time()
        m.proc.wait(15)
        assert time.time() - start < 10
        t.join(5)
        assert not t.is_alive() and errs
    finally:
        m.unmount(check=False)


def test_a_commands_record_is_its_users_alone(mount, sandbox):
    """exec env.K=V writes K='V' into the record's run script, and env. invites secrets: the
    record (mode 0755, run 0644) could be read by any user of the sandbox. Each record, and
    STATE_DIR/cmd, are 0700 now, as the env file is 0600 (found by an exploring helper)."""
    ctl(mount.p(sandbox, "ctl"), "exec env.DFS_SECRET=hunter2 -- true")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    n = os.readlink(mount.p(sandbox, "cmd", "last"))
    # (the wrapper script holds the value; the helper reads it from the record's env)
    ctl(mount.p(sandbox, "ctl"), 'exec d=/tmp/.daytonafs/cmd; stat -c %a "$d" "$d/' + n + '"; '
                                 'cat "$d/' + n + '/run" "$d/' + n + '/env" 2>/dev/null | grep -c hunter2')
    assert read(mount.p(sandbox, "stdout")) == "700\n700\n1\n"


def test_a_failed_launch_leaves_no_hole_for_another_mount_to_fill(server, tmp_root, mount, sandbox):
    """A launch that fails before it makes its record (no such cwd) kept its number taken in
    this mount: the next command got the one after, and another mount, whose history was older,
    started its command later in the hole, below this mount's newest. Its NAME/exit then read
    this mount's command's status, not its own (found by an exploring helper)."""
    from conftest import Mount
    other = Mount(server, tmp_root, extra_opts=("dir_timeout=0", "attr_timeout=0"), name="mnt-hole")
    try:
        ctl(other.p(sandbox, "ctl"), "exec true")
        assert read(other.p(sandbox, "exit")) == "0\n"
        ctl(mount.p(sandbox, "ctl"), "exec true")
        assert read(mount.p(sandbox, "exit")) == "0\n"
        with pytest.raises(OSError):
            ctl(mount.p(sandbox, "ctl"), "exec cwd=/nonexistent-dir -- true")
        ctl(mount.p(sandbox, "ctl"), "exec exit 11")
        assert read(mount.p(sandbox, "exit")) == "11\n"
        ctl(other.p(sandbox, "ctl"), "exec exit 22")
        assert read(other.p(sandbox, "exit")) == "22\n"
        mine = int(os.readlink(other.p(sandbox, "cmd", "last")))
        assert read(other.p(sandbox, "cmd", str(mine), "exit")) == "22\n"
        assert sorted(int(x) for x in os.listdir(other.p(sandbox, "cmd")) if x.isdigit())[-1] == mine
    finally:
        other.unmount()
