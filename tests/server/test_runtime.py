"""The sandbox runtime (scripts/daytona_local/runtime.py) without the HTTP server: the view's
path resolution, /process/execute semantics, detached processes, stop, sessions, snapshots."""

import errno
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from daytona_local import runtime as rtm  # noqa: E402

HAVE_BWRAP = shutil.which("bwrap") is not None


@pytest.fixture
def data_dir():
    # the host's /var/tmp: a place a sandbox must not see (its /var is its own)
    d = tempfile.mkdtemp(prefix="dl-rt-", dir="/var/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(params=["bwrap", "host"] if HAVE_BWRAP else ["host"])
def rt(request, data_dir):
    r = rtm.Runtime(data_dir, use_bwrap=(request.param == "bwrap"))
    yield r
    for sid in os.listdir(r.sandboxes_dir):
        r.stop(sid)
    r.shutdown()


# unique ids, though the process marker is per server (data dir) and sandbox id since other
# servers' sandboxes of the same id must survive a stop here (test_stop_spares_...)
SB1 = "sb1-" + uuid.uuid4().hex
SB2 = "sb2-" + uuid.uuid4().hex


@pytest.fixture
def sb(rt):
    rt.create(SB1, {"SANDBOX_VAR": "from-sandbox"})
    rt.start(SB1)
    return SB1


def home(rt, sid=SB1):
    return os.path.join(rt.tree(sid), "home", "daytona")


def run(rt, cmd, sid=SB1, **kw):
    return rt.execute(sid, {"SANDBOX_VAR": "from-sandbox"}, cmd, **kw)


# ---------------------------------------------------------------------------------- the view
def test_view_maps_mounts_and_is_read_only_outside(rt, sb):
    v = rt.view(sb)
    r = v.resolve("/home/daytona")
    assert r.host == home(rt) and r.writable and not r.mount_root
    assert v.resolve("x.txt").view == "/home/daytona/x.txt"        # relative to the work dir
    assert v.resolve("/tmp").mount_root and v.resolve("/tmp").writable
    e = v.resolve("/etc/passwd")
    assert e.host == "/etc/passwd" and not e.writable
    # listing "/" must show the sandbox's /home, not the host's
    r, st = v.resolve_entry(v.resolve("/"), "home")
    assert r.host == os.path.join(rt.tree(sb), "home") and r.mount_root
    assert st.st_ino == os.stat(os.path.join(rt.tree(sb), "home")).st_ino
    # the server's data dir (under the host's /var/tmp) is not in the view: /var is the
    # sandbox's own
    assert v.resolve("/var/tmp").host == os.path.join(rt.tree(sb), "var", "tmp")
    with pytest.raises(FileNotFoundError):
        os.stat(v.resolve(rt.data_dir).host)
    with pytest.raises(FileNotFoundError):
        v.resolve(os.path.join(rt.data_dir, "sandboxes"))


def test_symlinks_resolve_inside_the_sandbox(rt, sb):
    h = home(rt)
    os.symlink("/../../..", os.path.join(h, "up"))
    os.symlink("/etc", os.path.join(h, "etc"))
    os.symlink("../../../../../../../..", os.path.join(h, "rel"))
    os.symlink(rt.data_dir + "/sandboxes/%s/fs/home" % sb, os.path.join(h, "data"))
    os.symlink(rt.data_dir, os.path.join(h, "dataroot"))
    os.symlink("/home/daytona/target.txt", os.path.join(h, "abs"))
    os.symlink("loop2", os.path.join(h, "loop1"))
    os.symlink("loop1", os.path.join(h, "loop2"))
    open(os.path.join(h, "target.txt"), "w").write("t")
    v = rt.view(sb)
    assert v.resolve("up").view == "/" and v.resolve("up").host == rt.root_dir
    assert v.resolve("rel").view == "/"
    assert v.resolve("up/home/daytona/target.txt").host == os.path.join(h, "target.txt")
    assert v.resolve("etc/hostname").host == "/etc/hostname"
    assert v.resolve("abs").host == os.path.join(h, "target.txt")        # the sandbox's /home
    assert v.resolve("abs", follow=False).host == os.path.join(h, "abs")
    # a link to the server's data dir lands in the sandbox's own /var, never in the real tree
    with pytest.raises(FileNotFoundError):
        v.resolve("data")
    r = v.resolve("dataroot")
    assert r.host.startswith(rt.tree(sb) + "/var/") and not os.path.exists(r.host)
    # /proc's magic links are followed inside the view too: the test's cwd (the host's
    # checkout) is not in it, and /proc/N/root is the sandbox's /
    if not os.getcwd().startswith(("/usr/", "/etc/", "/opt/")):
        with pytest.raises(FileNotFoundError):
            os.stat(v.resolve("/proc/%d/cwd/" % os.getpid()).host)
    assert v.resolve("/proc/%d/root" % os.getpid()).host == rt.root_dir
    with pytest.raises(OSError) as ei:
        v.resolve("loop1")
    assert ei.value.errno == errno.ELOOP


def test_resolution_errors_like_the_kernel(rt, sb):
    v = rt.view(sb)
    open(os.path.join(home(rt), "f"), "w").close()
    assert v.resolve("missing").host.endswith("/missing")               # last may be missing
    with pytest.raises(OSError) as ei:
        v.resolve("missing/x")
    assert ei.value.errno == errno.ENOENT
    assert v.resolve("a/b/c", missing="any").view == "/home/daytona/a/b/c"
    for p in ("f/x", "f/", "f/."):
        with pytest.raises(OSError) as ei:
            v.resolve(p)
        assert ei.value.errno == errno.ENOTDIR, p
    assert v.resolve("/home/daytona/../daytona/./f").view == "/home/daytona/f"


# ----------------------------------------------------------------------------- /process/execute
def test_execute_merges_output_and_reports_exit_code(rt, sb):
    r = run(rt, "echo out; echo err >&2; echo out2; exit 3")
    assert r.exit_code == 3 and r.output == b"out\nerr\nout2\n"
    r = run(rt, "echo $HOME $USER $SANDBOX_VAR $EXTRA; pwd", envs={"EXTRA": "e"})
    lines = r.output.decode().split("\n")
    if rt.bwrap:
        assert lines[0] == "/home/daytona daytona from-sandbox e"
        assert lines[1] == "/home/daytona"
    else:
        assert lines[0] == home(rt) + " daytona from-sandbox e"
    assert run(rt, "pwd", cwd="/tmp").output.strip() == (
        b"/tmp" if rt.bwrap else os.path.join(rt.tree(sb), "tmp").encode())
    r = run(rt, "echo x", cwd="/no/such/dir")
    assert r.exit_code == -1 and r.output == b"chdir /no/such/dir: no such file or directory"


def test_command_text_goes_to_stdin_of_the_shell(rt, sb):
    r = run(rt, "x=1\nif [ $x = 1 ]; then\n  echo multi-line\nfi\n")
    assert r.output == b"multi-line\n"
    big = "echo start\n" + ": " + "y" * 300000 + "\necho end\n"      # larger than a pipe buffer
    assert run(rt, big).output == b"start\nend\n"


def test_execute_timeout_kills_the_process_group(rt, sb):
    t = time.monotonic()
    r = run(rt, "sleep 30 & echo $! > /tmp/bg.pid; sleep 30" if rt.bwrap else
            "sleep 30 & echo $! > bg.pid; sleep 30", timeout=1)
    assert r.timed_out and time.monotonic() - t < 10
    where = os.path.join(rt.tree(sb), "tmp") if rt.bwrap else home(rt)
    pid = int(open(os.path.join(where, "bg.pid")).read())
    _wait_dead(pid)


def test_files_are_shared_between_file_api_and_commands(rt, sb):
    open(os.path.join(home(rt), "up.txt"), "w").write("uploaded")
    assert run(rt, "cat /home/daytona/up.txt" if rt.bwrap else "cat up.txt").output == b"uploaded"
    run(rt, "echo written > made.txt; echo tmp > /tmp/t.txt" if rt.bwrap
        else "echo written > made.txt")
    assert open(os.path.join(home(rt), "made.txt")).read() == "written\n"
    if rt.bwrap:
        assert open(os.path.join(rt.tree(sb), "tmp", "t.txt")).read() == "tmp\n"


@pytest.mark.skipif(not HAVE_BWRAP, reason="needs bwrap")
def test_sandbox_cannot_write_the_host_or_see_the_data_dir(data_dir):
    rt = rtm.Runtime(data_dir, use_bwrap=True)
    rt.create(SB1)
    r = run(rt, "touch /etc/x /x; test -e %s || echo no-data; echo ok > /home/daytona/ok"
            % rt.data_dir)
    assert r.output.count(b"Read-only file system") == 2
    assert b"no-data" in r.output
    assert os.path.exists(os.path.join(home(rt), "ok"))


def _host_dir_writable(d):
    return os.path.isdir(d) and not os.path.islink(d) and os.access(d, os.W_OK)


@pytest.mark.skipif(not HAVE_BWRAP or not _host_dir_writable("/opt"),
                    reason="needs bwrap and a writable /opt")
def test_a_data_dir_under_a_bound_host_directory_is_masked():
    d = tempfile.mkdtemp(prefix="dl-rt-", dir="/opt")
    try:
        rt = rtm.Runtime(d, use_bwrap=True)
        rt.create(SB1)
        assert rt.masks == [rt.data_dir]
        v = rt.view(SB1)
        m = v.resolve(rt.data_dir)
        assert not m.writable and os.listdir(m.host) == []
        with pytest.raises(FileNotFoundError):
            v.resolve(os.path.join(rt.data_dir, "sandboxes", SB1))
        r = run(rt, "ls -A %s | wc -l; ls %s/sandboxes" % (rt.data_dir, rt.data_dir))
        assert r.output.split(b"\n")[0].strip() == b"0"      # an empty directory
        assert b"No such file" in r.output
        rt.destroy(SB1)
    finally:
        shutil.rmtree(d, ignore_errors=True)


# What a sandbox must never see of the host (FUSE mounts live under its /tmp and /mnt).
HIDDEN = ("/root", "/work", "/mnt", "/media", "/srv", "/boot", "/sys", "/old_root")


@pytest.mark.skipif(not HAVE_BWRAP, reason="needs bwrap")
def test_the_sandbox_sees_only_the_system_directories_and_its_own(data_dir):
    rt = rtm.Runtime(data_dir, use_bwrap=True)
    rt.create(SB1)
    rt.start(SB1)
    v = rt.view(SB1)
    # `ls /` in a command and the file API's listing of / are the same
    listed = run(rt, "ls -A /").output.decode().split()
    assert listed == sorted(os.listdir(v.resolve("/").host))
    assert {"usr", "etc", "bin", "dev", "proc", "home", "tmp", "run", "var"} <= set(listed)
    for p in HIDDEN:
        assert p[1:] not in listed
        with pytest.raises(FileNotFoundError):
            os.stat(v.resolve(p).host)
    # nothing of the host's /tmp, /home or /var
    with tempfile.NamedTemporaryFile(prefix="dl-host-", dir="/tmp") as f:
        name = os.path.basename(f.name)
        r = run(rt, "ls -A /tmp /home /var/tmp; ls /proc/self/root/tmp")
        assert name.encode() not in r.output
        with pytest.raises(FileNotFoundError):
            os.stat(v.resolve("/tmp/" + name).host)
    assert run(rt, "ls -A /home").output == b"daytona\n"
    # no FUSE mount (nor any other host mount) is in the sandbox's mount table
    mounts = run(rt, "cat /proc/self/mountinfo").output.decode()
    assert "fuse" not in mounts and " /work" not in mounts and " /root " not in mounts
    # the same devices as bwrap's --dev
    listed = run(rt, "ls -A /dev").output.decode().split()
    assert listed == sorted(os.listdir(v.resolve("/dev").host))
    assert v.resolve_entry(v.resolve("/dev"), "null")[0].host == "/dev/null"
    rt.destroy(SB1)


@pytest.mark.skipif(not HAVE_BWRAP, reason="needs bwrap")
def test_the_usual_tools_work_in_the_sandbox(data_dir):
    rt = rtm.Runtime(data_dir, use_bwrap=True)
    rt.create(SB1)
    rt.start(SB1)
    r = run(rt, r"""set -e
/usr/bin/python3 -c 'import ssl, json; print(ssl.create_default_context().cert_store_stats()["x509_ca"] > 0)'
ls /etc/ssl/certs | grep -q . && echo certs
perl -e 'print "perl
"'
bash -c 'echo bash'
printf 'aGk=' | base64 -d; echo
mkfifo /tmp/ff && test -p /tmp/ff && echo fifo
setsid true && echo setsid
find /usr/bin -maxdepth 1 -name python3 | head -1
git init -q repo && cd repo && git -c user.email=a@b -c user.name=n commit -q --allow-empty -m m && git log --format=%s
echo persisted > /var/tmp/v.txt && echo x > /run/r.txt
""")
    assert r.exit_code == 0, r.output
    assert r.output.decode().split("\n")[:10] == [
        "True", "certs", "perl", "bash", "hi", "fifo", "setsid", "/usr/bin/python3", "m", ""]
    # /var is the sandbox's own and persistent; /run is emptied by a (re)start
    v = rt.view(SB1)
    assert open(v.resolve("/var/tmp/v.txt").host).read() == "persisted\n"
    assert os.path.exists(v.resolve("/run/r.txt").host)
    rt.stop(SB1)
    rt.start(SB1)
    assert run(rt, "cat /var/tmp/v.txt; ls -A /run").output == b"persisted\nlock\n"
    rt.destroy(SB1)


def test_an_old_tree_gets_the_new_directories(rt):
    os.makedirs(os.path.join(rt.tree(SB1), "home", "daytona"))    # as an older version made it
    os.makedirs(os.path.join(rt.tree(SB1), "tmp"))
    v = rt.view(SB1)
    assert os.path.isdir(v.resolve("/var/tmp").host) and os.path.isdir(v.resolve("/run").host)
    assert run(rt, "echo ok").output == b"ok\n"
    rt.destroy(SB1)


def test_detached_process_survives_and_can_be_killed_later(rt, sb):
    t = time.monotonic()
    r = run(rt, "setsid sh -c 'sleep 100' >/dev/null 2>&1 </dev/null & echo $!")
    assert time.monotonic() - t < 10, "execute must not wait for a detached process"
    pid = int(r.output)
    assert _alive(pid)
    # $! is the child before it has run setsid(1): its group exists only then
    deadline = time.monotonic() + 10
    while os.getpgid(pid) != pid and time.monotonic() < deadline:
        time.sleep(0.01)
    r = run(rt, "kill -0 %d && echo visible; kill -- -%d; echo rc=$?" % (pid, pid))
    assert r.output == b"visible\nrc=0\n"
    _wait_dead(pid)


def test_background_job_holding_the_pipe_delays_until_it_exits(rt, sb):
    t = time.monotonic()
    r = run(rt, "(sleep 1; echo late) & echo early")
    assert r.output == b"early\nlate\n" and time.monotonic() - t >= 0.9


def test_stop_kills_every_process_of_the_sandbox(rt, sb):
    r = run(rt, "setsid sh -c 'sleep 100' >/dev/null 2>&1 </dev/null & "
                "(env -u DAYTONA_LOCAL_SANDBOX sleep 100 >/dev/null 2>&1 &); echo $!")
    pid = int(r.output)
    # the orphaned setsid child may be inside execve() (its environment reads empty for that
    # instant) when we look: look again until it shows
    deadline = time.monotonic() + 5
    while not rtm.find_marked_pids(rt.marker(sb)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert rtm.find_marked_pids(rt.marker(sb))
    rt.stop(sb)
    _wait_dead(pid)
    assert not rtm.find_marked_pids(rt.marker(sb))


@pytest.fixture
def other_server(rt):
    """Another server's runtime on this machine, with a sandbox of the id SB1 that runs a command."""
    other_dir = tempfile.mkdtemp(prefix="dl-rt-", dir="/var/tmp")
    other = rtm.Runtime(other_dir, use_bwrap=rt.bwrap is not None)
    try:
        other.create(SB1, {})
        other.start(SB1)
        r = other.execute(SB1, {}, "(sleep 100 >/dev/null 2>&1 </dev/null &); echo started")
        assert r.output == b"started\n"
        yield other
    finally:
        other.stop(SB1)
        other.shutdown()
        shutil.rmtree(other_dir, ignore_errors=True)


def test_stop_spares_another_servers_sandbox_of_the_same_id(rt, sb, other_server):
    """Vercel's sandboxes are named, so two servers on one machine (two runs of scripts/test-posix
    --provider vercel, both with a sandbox "posix") have sandboxes of the same id: a stop in one
    killed the other's running commands (which the mount then took for commands out of time)."""
    assert rtm.find_marked_pids(other_server.marker(SB1))
    rt.stop(sb)
    time.sleep(0.3)
    assert rtm.find_marked_pids(other_server.marker(SB1)), "the other server's sandbox lost its processes"


def test_shutdown_kills_every_sandboxs_processes_and_spares_another_servers(rt, sb, other_server):
    """A server that exits takes its sandboxes' processes with it, as a machine going down does:
    a command left running (a detached command's wrapper, scripts/try's) outlived the server and
    the tests that started it. Another server's sandbox of the same id keeps its own."""
    rt.create(SB2, {})
    rt.start(SB2)
    pids = []
    for sid in (SB1, SB2):
        r = rt.execute(sid, {}, "setsid sh -c 'sleep 100' >/dev/null 2>&1 </dev/null & echo $!")
        pids.append(int(r.output))
    deadline = time.monotonic() + 5
    while not (rtm.find_marked_pids(rt.marker(SB1)) and rtm.find_marked_pids(rt.marker(SB2))) \
            and time.monotonic() < deadline:
        time.sleep(0.01)
    rt.shutdown()
    for pid in pids:
        _wait_dead(pid)
    assert not rtm.find_marked_pids(rt.marker(SB1))
    assert not rtm.find_marked_pids(rt.marker(SB2))
    assert rtm.find_marked_pids(other_server.marker(SB1)), "the other server's sandbox lost its processes"


def test_invalid_utf8_becomes_replacement_chars():
    assert rtm.go_string(b"a\xffb\xe2\x82") == "a\ufffdb\ufffd\ufffd"
    assert rtm.go_string("\u20ac".encode()) == "\u20ac"


# ------------------------------------------------------------------------------------ sessions
def _exec(session, command, is_async=False, echo=True):
    cmd = session.submit(command, is_async, not echo)
    if not is_async:
        assert cmd.exited.wait(10)
        cmd.drained.wait(2)
    return cmd


def _log(cmd):
    return open(cmd.log_path, "rb").read()


def test_session_state_persists_and_lines_are_labelled(rt, sb):
    s = rt.create_session(sb, "s1", {})
    c = _exec(s, "cd /tmp && export FOO=bar; echo one")
    assert c.exit_code == 0 and _log(c) == b"\x01\x01\x01one\n"
    c = _exec(s, "echo $FOO; basename $PWD; echo e >&2; printf 'no-newline'")
    log = _log(c)
    assert log.replace(b"\x02\x02\x02e\n", b"") == \
        b"\x01\x01\x01bar\n\x01\x01\x01tmp\n\x01\x01\x01no-newline\n"
    assert b"\x02\x02\x02e\n" in log
    c = _exec(s, "printf 'a\\0b\\n'; false")
    assert c.exit_code == 1 and _log(c) == b"\x01\x01\x01ab\n"        # NULs are lost
    c = _exec(s, "echo 'unterminated")
    # a syntax error is output; its status is the shell's: 2 in bash and dash, 126 in zsh
    syntax = {"zsh": 126}.get(os.path.basename(rt.shell), 2)
    assert c.exit_code == syntax and _log(c).startswith(b"\x02\x02\x02")
    assert _exec(s, "echo still-alive").exit_code == 0
    assert [x["exitCode"] for x in s.to_json()["commands"]] == [0, 0, 1, syntax, 0]


def test_session_commands_are_serialised(rt, sb):
    s = rt.create_session(sb, "s1", {})
    a = _exec(s, "sleep 0.5; echo a", is_async=True)
    b = _exec(s, "echo b")
    assert a.exit_code == 0 and b.exit_code == 0
    assert a.exited.is_set()


def test_session_input_and_echo(rt, sb):
    s = rt.create_session(sb, "s1", {})
    c = _exec(s, "read a; read b; echo got $a $b", is_async=True)
    s.send_input(c, "one")
    s.send_input(c, "two\n")
    assert c.exited.wait(5) and c.drained.wait(5)
    assert _log(c) == b"\x01\x01\x01one\n\x01\x01\x01two\n\x01\x01\x01got one two\n"
    with pytest.raises(rtm.SessionError) as ei:
        s.send_input(c, "late")
    assert ei.value.status == 410
    c = _exec(s, "read a; echo $a", is_async=True, echo=False)
    s.send_input(c, "quiet")
    assert c.exited.wait(5) and c.drained.wait(5)
    assert _log(c) == b"\x01\x01\x01quiet\n"


def test_session_exit_and_delete(rt, sb):
    s = rt.create_session(sb, "s1", {})
    with pytest.raises(rtm.SessionError) as ei:
        rt.create_session(sb, "s1", {})
    assert ei.value.status == 409
    assert _exec(s, "exit 7").exit_code == 7
    with pytest.raises(rtm.SessionError):
        s.submit("echo x", False, False)
    s2 = rt.create_session(sb, "s2", {})
    c = _exec(s2, "sleep 100", is_async=True)
    time.sleep(0.2)
    assert rt.delete_session(sb, "s2")
    assert c.exited.wait(5) and c.cancelled
    assert rt.get_session(sb, "s2") is None and not rt.delete_session(sb, "s2")


def test_stop_ends_sessions(rt, sb):
    s = rt.create_session(sb, "s1", {})
    c = _exec(s, "sleep 100", is_async=True)
    time.sleep(0.2)
    rt.stop(sb)
    assert c.exited.wait(5)
    assert rt.list_sessions(sb) == []


# ----------------------------------------------------------------------------------- snapshots
def test_snapshot_seeds_a_new_sandbox(rt, sb):
    open(os.path.join(home(rt), "keep.txt"), "w").write("kept")
    os.makedirs(os.path.join(home(rt), "d"))
    os.symlink("keep.txt", os.path.join(home(rt), "d", "link"))
    os.mkfifo(os.path.join(rt.tree(sb), "tmp", "fifo"))
    size = rt.snapshot(sb, "snap1")
    assert size == 4
    rt.create(SB2, {}, "snap1")
    h2 = home(rt, SB2)
    assert open(os.path.join(h2, "keep.txt")).read() == "kept"
    assert os.readlink(os.path.join(h2, "d", "link")) == "keep.txt"
    # the copy is independent
    open(os.path.join(h2, "keep.txt"), "w").write("changed")
    assert open(os.path.join(home(rt), "keep.txt")).read() == "kept"
    assert run(rt, "cat keep.txt", sid=SB2).output == b"changed"
    rt.delete_snapshot("snap1")
    assert not os.path.exists(os.path.join(rt.snapshots_dir, "snap1"))
    rt.destroy(SB2)
    assert not os.path.exists(rt.sandbox_dir(SB2))


def test_archive_keeps_the_tree_and_start_brings_it_back(rt, sb):
    open(os.path.join(home(rt), "a.txt"), "w").write("a")
    rt.stop(sb)
    rt.archive(sb)
    rt.start(sb)
    assert run(rt, "cat a.txt").output == b"a"


# ----------------------------------------------------------------------------------- helpers
def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pid, timeout=5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not _alive(pid):
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    pytest.fail("process %d still alive" % pid)


# ----------------------------------------------------------------------------------- the shell
def _shell_of(rt, sid):
    return run(rt, "echo ${ZSH_VERSION:+zsh}${BASH_VERSION:+bash}", sid=sid).output


@pytest.mark.parametrize("name", rtm.SHELLS)
def test_shell_is_chosen_explicitly(data_dir, name):
    if shutil.which(name, path=rtm.DEFAULT_PATH) is None:
        pytest.skip("no %s on this host" % name)
    r = rtm.Runtime(data_dir, use_bwrap=False, shell=name)
    try:
        r.create(SB1)
        r.start(SB1)
        assert os.path.basename(r.shell) == name
        got = _shell_of(r, SB1)
        assert got == {"zsh": b"zsh\n", "bash": b"bash\n"}.get(name, b"\n")
    finally:
        r.stop(SB1)
        r.shutdown()


def test_default_shell_is_zsh_when_the_host_has_it():
    zsh = shutil.which("zsh", path=rtm.DEFAULT_PATH)
    assert rtm.pick_shell() == (zsh or rtm.daemon_shell())
    with pytest.raises(ValueError):
        rtm.pick_shell("fish")
