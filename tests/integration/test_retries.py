# SPDX-License-Identifier: Apache-2.0
"""Transient faults and the answers that only look final (doc/SEMANTICS.md, sections 1,
10 and 11): what is retried, what counts as done, and what a ctl line too long leaves."""
import errno
import os
import time
import urllib.error
import uuid

import pytest

from conftest import SANDBOX_HOME, ctl, read, write
from sandbox_view import Faults, SandboxView


def fault(server, **rule):
    server.local("POST", "/_local/faults", rule)


@pytest.fixture
def no_faults(server):
    yield
    server.local("DELETE", "/_local/faults")


# ---- ctl lines over 1 MiB (B5) -------------------------------------------------------------

def write_long_line(path, line, nxt):
    """Writes line (over 1 MiB) the way a program does (write until done), then the line nxt
    in the same open; the errno each write got (None: none)."""
    fd = os.open(path, os.O_WRONLY)
    got = [None, None]
    try:
        try:
            off = 0
            while off < len(line):
                off += os.write(fd, line[off:])
        except OSError as e:
            got[0] = e.errno
        try:
            os.write(fd, nxt)
        except OSError as e:
            got[1] = e.errno
    finally:
        os.close(fd)    # close runs what is left of a line: here, nothing
    return got


def test_a_sandbox_ctl_line_over_1_mib_is_refused_whole_and_nothing_of_it_runs_at_close(mount, sandbox):
    def numbers():
        return {n for n in os.listdir(mount.p(sandbox, "cmd")) if n.isdigit()}

    before = numbers()
    line = b"exec echo HEAD-RAN; echo " + b"x" * (1 << 20) + b"; echo TAIL-RAN\n"
    assert write_long_line(mount.p(sandbox, "ctl"), line, b"exec echo NEXT-RAN\n") == [errno.EFBIG, None]
    new = sorted(numbers() - before)
    # Only the line written after the refused one ran.
    assert len(new) == 1, new
    assert read(mount.p(sandbox, "cmd", new[0], "command")) == "echo NEXT-RAN\n"
    assert read(mount.p(sandbox, "cmd", new[0], "exit")) == "0\n"
    assert read(mount.p(sandbox, "cmd", new[0], "stdout")) == "NEXT-RAN\n"


def test_a_root_ctl_line_over_1_mib_is_refused_whole(mount):
    name = "efbig-" + uuid.uuid4().hex[:8]
    line = f"create {name} label.k=".encode() + b"y" * (1 << 20) + b"\n"
    assert write_long_line(mount.p("ctl"), line, f"create {name}\n".encode()) == [errno.EFBIG, None]
    # The next line ran alone: the sandbox exists, without the refused line's label.
    assert name in os.listdir(mount.p())
    assert "yyyy" not in read(mount.p(name, "info"))
    ctl(mount.p(name, "ctl"), "delete")


def test_a_ctl_line_over_1_mib_says_so_in_the_error_file(mount, sandbox):
    """Each ctl's error file tells why its line failed; a line refused for its length left the
    error of an earlier line there, which misled."""
    ctl(mount.p(sandbox, "ctl"), "exec sleep 30")
    cmd = os.readlink(mount.p(sandbox, "cmd", "last"))
    try:
        for ctlpath, errpath, verb in [(mount.p("ctl"), mount.p("error"), "create"),
                                       (mount.p(sandbox, "ctl"), mount.p(sandbox, "error"), "exec"),
                                       (mount.p(sandbox, "cmd", cmd, "ctl"), mount.p(sandbox, "error"), "kill")]:
            with pytest.raises(OSError):
                ctl(ctlpath, "bogus-verb")    # an earlier error, which must not stay
            assert "bogus-verb" in read(errpath)
            line = f"{verb} ".encode() + b"z" * (1 << 20) + b"\n"
            assert write_long_line(ctlpath, line, b"") == [errno.EFBIG, None]
            said = read(errpath)
            assert "bogus-verb" not in said and "refused" in said, (ctlpath, said)
            if "cmd" in ctlpath:
                assert ("command %s:" % cmd) in said
    finally:
        ctl(mount.p(sandbox, "cmd", cmd, "ctl"), "kill")


# ---- answers of the toolbox proxy that only look final (D1, D5) ------------------------------

RUNNER_NO_CONTAINER = {"statusCode": 404, "code": "NOT_FOUND",
                       "message": "not found: sandbox container not found: Error response from daemon: "
                                  "No such container: 5b8e0c"}
PROXY_THROTTLED = {"statusCode": 401, "code": "UNAUTHORIZED",
                   "message": "authentication failed: Bearer token validation error: ThrottlerException: "
                              "Too Many Requests"}


@pytest.fixture(scope="module")
def fresh(server, tmp_root, sandbox):
    """A mount of its own whose waits end after 3 s and that keeps no listings or attributes
    (so that each look is a request), but "no such file" as usual: (mount, toolbox)."""
    from conftest import Mount
    m = Mount(server, tmp_root, extra_opts=("wait_timeout=3", "dir_timeout=0", "attr_timeout=0"),
              name="mnt-retries")
    yield m, SandboxView(server, sandbox)
    m.unmount()


def injected(server):
    return sum(r["injected"] for r in server.local("GET", "/_local/faults"))


@pytest.mark.parametrize("status,body", [(404, RUNNER_NO_CONTAINER), (401, PROXY_THROTTLED)],
                         ids=["runner-has-no-container", "proxy-throttled"])
@pytest.mark.provider("daytona", reason="answers of Daytona's proxy (a runner without the container, a throttled "
                     "auth check) in front of the toolbox; Vercel has no such hop")
def test_a_toolbox_refusal_by_the_proxy_is_retried_until_it_passes(server, sandbox, fresh, no_faults,
                                                                    status, body):
    m, toolbox = fresh
    name = "refused-" + uuid.uuid4().hex[:8]
    toolbox.upload("/home/daytona/" + name, b"there all along\n")
    fault(server, pattern="^/toolbox/", status=status, body=body, count=3)
    # Not "no such file" (404) nor "permission denied" (401): the sandbox never saw the request.
    assert read(m.p(sandbox, "work", name)) == "there all along\n"
    assert injected(server) == 3
    assert os.stat(m.p(sandbox, "work", name)).st_size == 16


@pytest.mark.parametrize("status,body,err", [(404, RUNNER_NO_CONTAINER, errno.EHOSTDOWN),
                                             (401, PROXY_THROTTLED, errno.EAGAIN)],
                         ids=["runner-has-no-container", "proxy-throttled"])
@pytest.mark.provider("daytona", reason="answers of Daytona's proxy (a runner without the container, a throttled "
                     "auth check) in front of the toolbox; Vercel has no such hop")
def test_a_toolbox_refusal_that_persists_is_reported_as_such_and_not_cached(server, sandbox, fresh, no_faults,
                                                                           status, body, err):
    m, toolbox = fresh
    name = "persist-" + uuid.uuid4().hex[:8]
    toolbox.upload("/home/daytona/" + name, b"x\n")
    fault(server, pattern="^/toolbox/", status=status, body=body)
    with pytest.raises(OSError) as e:
        os.stat(m.p(sandbox, "work", name))
    assert e.value.errno == err
    assert injected(server) > 1          # retried, for up to wait_timeout (3 s here)
    server.local("DELETE", "/_local/faults")
    # No negative entry was kept (negative_timeout is 2 s): the file is there at once.
    assert read(m.p(sandbox, "work", name)) == "x\n"


# ---- deferred changes meet transient faults (B4) ---------------------------------------------

def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@pytest.fixture
def d(mount, sandbox):
    name = "b4-" + uuid.uuid4().hex[:8]
    os.mkdir(mount.p(sandbox, "work", name))
    return name


TRANSIENT = {"500": {"action": "status", "status": 500},
             "502": {"action": "status", "status": 502},
             "drop": {"action": "drop"},
             # the batch ran, its answer is cut: it is sent again, and runs again
             "reset_mid_body": {"action": "reset_mid_body"}}


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_a_deferred_delete_survives_a_transient_fault(mount, sandbox, server, no_faults, d, kind, view):
    toolbox = view
    p = mount.p(sandbox, "work", d, "gone")
    write(p, "delete me\n")
    os.listdir(mount.p(sandbox, "work", d))
    server.local("DELETE", "/_local/faults")
    Faults(server).add("batch", count=1, **TRANSIENT[kind])
    os.unlink(p)
    fsync_dir(mount.p(sandbox, "work", d))        # sends the batch: no error to report
    assert injected(server) == 1
    assert toolbox.download(f"{SANDBOX_HOME}/{d}/gone") is None
    assert not os.path.exists(p)
    assert "gone" not in read(mount.p(sandbox, "error"))


def test_a_resent_batch_with_a_mode_and_a_delete_of_one_file_reports_nothing(mount, sandbox, server, no_faults,
                                                                             d, view):
    toolbox = view
    p = mount.p(sandbox, "work", d, "f")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"x")
        st = os.fstat(fd)     # the owner the mount gives it (on Vercel the sandbox's user, 1000)
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, 0o600)  # set while written: sent after the upload, deferred
    finally:
        os.close(fd)
    Faults(server).add("batch", action="reset_mid_body", count=1)
    os.unlink(p)              # in the same batch as the mode
    fsync_dir(mount.p(sandbox, "work", d))
    assert injected(server) == 1
    assert toolbox.download(f"{SANDBOX_HOME}/{d}/f") is None


# ---- requests the proxy re-sends (D7) ---------------------------------------------------------

@pytest.mark.provider("daytona", reason="Daytona's proxy re-sends a file-API move (D7); a Vercel rename is a command")
def test_a_move_answered_404_that_was_done_counts_as_done(mount, sandbox, server, no_faults, d):
    """The proxy re-sends a move once after a stale connection; the second finds no source and
    answers 404. Here the move is done through the API, then the mount's own move gets the 404."""
    toolbox = SandboxView(server, sandbox)
    a, b = mount.p(sandbox, "work", d, "a"), mount.p(sandbox, "work", d, "b")
    write(a, "moved\n")
    assert sorted(os.listdir(mount.p(sandbox, "work", d))) == ["a"]
    os.stat(a)                          # the mount knows a, and that b is absent
    with pytest.raises(FileNotFoundError):
        os.stat(b)
    toolbox.move(f"/home/daytona/{d}/a", f"/home/daytona/{d}/b")
    fault(server, pattern="/files/move", status=404, count=1)
    os.rename(a, b)
    assert injected(server) == 1        # the mount's move met the 404
    assert read(b) == "moved\n"
    assert not os.path.exists(a)
    assert toolbox.download(f"/home/daytona/{d}/b") == b"moved\n"
    assert "move" not in read(mount.p(sandbox, "error"))


# ---- renames on a volume (D9) -----------------------------------------------------------------

def ready_volume(server, name):
    """The volume called name, created if missing, once it is ready."""
    try:
        vol = server.api("GET", "/volumes/by-name/" + name)
    except urllib.error.HTTPError as e:
        if e.code != 404:
            raise
        vol = server.api("POST", "/volumes", {"name": name})
    deadline = time.monotonic() + 10
    while vol["state"] != "ready":
        assert time.monotonic() < deadline, vol
        time.sleep(0.02)
        vol = server.api("GET", "/volumes/" + vol["id"])
    return vol


@pytest.mark.provider("daytona", reason="Daytona's volumes and its file-API move; Vercel has neither")
def test_a_rename_on_a_volume_is_a_real_rename_not_the_toolbox_move(mount, server):
    """The toolbox's move copies and deletes where rename(2) fails (EXDEV between a volume and
    the rest): on a volume's mount path the mount renames by command (mv -f -T)."""
    name = "vol-" + uuid.uuid4().hex[:8]
    ready_volume(server, "cache")       # the API refuses a sandbox naming a missing volume
    ctl(mount.p("ctl"), f"create {name} volume=cache:/home/daytona/vol")
    try:
        work = mount.p(name, "work")
        os.makedirs(os.path.join(work, "vol", "sub"))
        os.mkdir(os.path.join(work, "plain"))
        write(os.path.join(work, "vol", "a"), "on the volume\n")
        write(os.path.join(work, "plain", "a"), "not on it\n")
        os.listdir(os.path.join(work, "vol"))
        os.listdir(os.path.join(work, "plain"))
        server.reset()
        os.rename(os.path.join(work, "vol", "a"), os.path.join(work, "vol", "sub", "b"))
        os.rename(os.path.join(work, "plain", "a"), os.path.join(work, "vol", "c"))     # onto it
        routes = server.stats()["routes"]
        assert routes.get("POST /toolbox/{id}/files/move", 0) == 0, routes
        assert routes.get("POST /toolbox/{id}/process/execute", 0) >= 2, routes
        assert read(os.path.join(work, "vol", "sub", "b")) == "on the volume\n"
        assert read(os.path.join(work, "vol", "c")) == "not on it\n"
        # Elsewhere, the toolbox's move as before.
        write(os.path.join(work, "plain", "d"), "x")
        os.listdir(os.path.join(work, "plain"))
        server.reset()
        os.rename(os.path.join(work, "plain", "d"), os.path.join(work, "plain", "e"))
        assert server.stats()["routes"].get("POST /toolbox/{id}/files/move", 0) == 1
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_a_deferred_delete_that_keeps_failing_is_reported_after_wait_timeout(server, sandbox, fresh, no_faults):
    m, toolbox = fresh
    name = "b4-" + uuid.uuid4().hex[:8]
    os.mkdir(m.p(sandbox, "work", name))
    p = m.p(sandbox, "work", name, "stays")
    write(p, "kept\n")
    os.listdir(m.p(sandbox, "work", name))
    Faults(server).add("batch", status=500)
    os.unlink(p)
    with pytest.raises(OSError) as e:
        fsync_dir(m.p(sandbox, "work", name))      # after wait_timeout (3 s) of re-sends
    assert e.value.errno == errno.EIO
    assert injected(server) > 2
    server.local("DELETE", "/_local/faults")
    # Reported as a refused delete is: the file is still in the sandbox, and shows again.
    assert toolbox.download(f"{SANDBOX_HOME}/{name}/stays") == b"kept\n"
    assert read(p) == "kept\n"


@pytest.mark.provider("daytona", reason="Daytona's file-API move, a request that is never sent twice")
def test_a_request_that_timed_out_on_a_reused_connection_is_not_sent_again(server, tmp_root, sandbox,
                                                                            no_faults):
    """A move held at the server past the mount's timeout, on a connection curl had reused:
    the retry took it for a connect timeout (curl reports a connect time of 0 for a reused
    connection) and sent it again; a rename back made meanwhile was undone when the held one
    ran (found by an exploring helper; a create was sent twice so). It is sent once: the
    rename fails with the timeout, and the held move is the only one that lands."""
    from conftest import Mount
    m = Mount(server, tmp_root, extra_opts=("timeout=2",), name="mnt-timeout")
    try:
        d = m.p(sandbox, "work", "to-" + uuid.uuid4().hex[:8])
        os.mkdir(d)
        a, b = os.path.join(d, "a"), os.path.join(d, "b")
        write(a, "data\n")
        assert os.listdir(d) == ["a"]        # the connection is warm
        fault(server, pattern="/files/move", action="hold", seconds=4, count=1)
        with pytest.raises(OSError):
            os.rename(a, b)
        time.sleep(4)                        # the held move has run
        moves = sum(r["hits"] for r in server.local("GET", "/_local/faults") if "move" in r["pattern"])
        assert moves == 1
    finally:
        m.unmount()


@pytest.mark.provider("daytona", reason="Daytona's proxy re-sends a request once (FIDELITY D7)")
def test_a_kill_the_proxy_sends_twice_says_it_killed(mount, sandbox, server, no_faults):
    """The proxy re-sends a request after a stale connection, and the first may have run: the
    second run of a kill found the command ended by the first and said so, and the kill that
    worked failed with ESRCH (found by an exploring helper). The kill claims its token, as a
    launch does: the replay prints the first run's answer."""
    ctl(mount.p(sandbox, "ctl"), "exec sleep 60")
    n = os.readlink(mount.p(sandbox, "cmd", "last"))
    # (the kill script alone: the poller's requests of the running command go by)
    fault(server, pattern="/process/execute", body_match="daytonafs-killed", action="replay", count=1)
    ctl(mount.p(sandbox, "cmd", n, "ctl"), "kill")
    assert injected(server) == 1
    assert read(mount.p(sandbox, "cmd", n, "status")) == "killed\n"
    assert read(mount.p(sandbox, "cmd", n, "exit")) in ("143\n", "137\n")
