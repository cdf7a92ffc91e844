# SPDX-License-Identifier: Apache-2.0
"""The sandbox's surface (issue 16): NAME/usage, NAME/env, NAME/ports/,
NAME/build-log and status while create waits, MOUNT/.volumes/, create's
network options, -o exec_timeout and -o activity.

Each asserts content, errno and the requests it costs.
"""
import errno
import json
import os
import socket
import threading
import time
import uuid

import pytest

import routes
from conftest import PROVIDER, VERCEL_PROJECT, Mount, create_sandbox, ctl, read, write
from control_api import vapi

GIB = 1 << 30


def sandbox_id(mount, sb):
    return json.loads(read(mount.p(sb, "info")))["id"]


def run(mount, sb, command):
    """Runs a command through the mount and returns (exit, stdout)."""
    ctl(mount.p(sb, "ctl"), "exec " + command)
    d = mount.p(sb, "cmd", os.readlink(mount.p(sb, "cmd", "last")))
    code = int(read(os.path.join(d, "exit")))
    return code, read(os.path.join(d, "stdout"))


def requests(server, fragment=None):
    return [e for e in server.local("GET", "/_local/log")
            if fragment is None or fragment in e["path"]]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def errno_of(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    return e.value.errno


# ---------------------------------------------------------------------- usage
def test_usage_is_one_request(mount, server, sandbox):
    os.stat(mount.p(sandbox))                      # the registry is filled
    server.reset()
    text = read(mount.p(sandbox, "usage"))
    lines = dict(line.split(" ", 1) for line in text.splitlines())
    for key in ("cpu_load", "disk_used", "disk_total"):
        assert key in lines, (key, text)
    assert len(lines["cpu_load"].split()) == 3
    assert int(lines["disk_total"]) >= int(lines["disk_used"]) > 0
    if server.provider == "daytona":
        # the sandbox's cgroup; vercel-local's commands run in bubblewrap
        # with no cgroup of their own, so there usage has no cpu_time,
        # cpu_limit or memory lines (not checked against a real Vercel VM)
        for key in ("cpu_time", "cpu_limit", "memory_current", "memory_peak", "memory_limit"):
            assert key in lines, (key, text)
        assert float(lines["cpu_time"]) >= 0
        info = json.loads(read(mount.p(sandbox, "info")))
        assert int(lines["memory_limit"]) == int(info["memory"]) * GIB
        assert float(lines["cpu_limit"]) == float(info["cpu"])
        assert int(lines["memory_peak"]) >= int(lines["memory_current"]) >= 0
    assert routes.sandbox_requests(server) == [routes.route("exec")]


# ---------------------------------------------------------------------- exec_timeout
def test_exec_timeout_default_and_override(server, tmp_root):
    m = Mount(server, tmp_root, extra_opts=("exec_timeout=1",), name="mnt-exec-timeout")
    try:
        sb = create_sandbox(m, "to")
        code, _ = run(m, sb, "sleep 30")
        assert code == 124
        ctl(m.p(sb, "ctl"), "exec timeout=20 -- sleep 2; echo done")
        d = m.p(sb, "cmd", os.readlink(m.p(sb, "cmd", "last")))
        assert read(os.path.join(d, "exit")) == "0\n"
        assert read(os.path.join(d, "stdout")) == "done\n"
        # timeout=0 turns the mount's default off for this command
        ctl(m.p(sb, "ctl"), "exec timeout=0 -- sleep 3; echo untimed")
        d = m.p(sb, "cmd", os.readlink(m.p(sb, "cmd", "last")))
        assert read(os.path.join(d, "exit")) == "0\n"
        assert read(os.path.join(d, "stdout")) == "untimed\n"
        ctl(m.p(sb, "ctl"), "delete")
    finally:
        m.unmount()


def test_exec_timeout_bad_value_refused(server, tmp_root):
    import subprocess
    from conftest import _binary, API_KEY
    d = os.path.join(tmp_root, "mnt-bad-timeout")
    os.makedirs(d, exist_ok=True)
    env = dict(os.environ, DAYTONA_API_KEY=API_KEY, DAYTONA_API_URL=server.api_url)
    for opt in ("exec_timeout=-1", "exec_timeout=x", "activity=sometimes"):
        p = subprocess.run([_binary(), "-f", "-o", opt, d], env=env, capture_output=True,
                           text=True, timeout=30)
        assert p.returncode != 0, opt
        assert opt.split("=")[0] in p.stderr, p.stderr


# ---------------------------------------------------------------------- env
def test_env_read_write_and_override(mount, server, tmp_root):
    """Daytona's API gives the sandbox's env; Vercel's never does, so there
    the mount records create's env in the env file (test_vercel has the
    request counts): the same file either way."""
    name = f"env-{uuid.uuid4().hex[:8]}"
    ctl(mount.p("ctl"), f"create {name} env.FROM_CREATE=c1 env.GONE=g")
    env = mount.p(name, "env")
    assert read(env) == "FROM_CREATE=c1\nGONE=g\n"

    server.reset()
    write(env, "FOO=bar baz\nQUOTE=it's\n-GONE\n# a comment\n\n")
    assert routes.sandbox_requests(server) == [routes.route("exec")]   # applied in one command
    assert read(env) == "FROM_CREATE=c1\nFOO=bar baz\nQUOTE=it's\n"

    code, out = run(mount, name, 'echo "$FOO|$QUOTE|$FROM_CREATE|${GONE-unset}"')
    assert (code, out) == (0, "bar baz|it's|c1|unset\n")
    ctl(mount.p(name, "ctl"), "exec env.FOO=per-command -- echo $FOO")
    d = mount.p(name, "cmd", os.readlink(mount.p(name, "cmd", "last")))
    assert read(os.path.join(d, "stdout")) == "per-command\n"

    # a change replaces the old value; another mount sees the same
    write(env, "FOO=second\n")
    m2 = Mount(server, tmp_root, name="mnt-env-2")
    try:
        assert read(m2.p(name, "env")) == "FROM_CREATE=c1\nQUOTE=it's\nFOO=second\n"
        code, out = run(m2, name, "echo $FOO")
        assert out == "second\n"
    finally:
        m2.unmount()

    # bad lines: EINVAL at close, nothing applied, the message in error
    for bad in ("1X=2\n", "no equals sign\n", "-\n"):
        assert errno_of(write, env, bad) == errno.EINVAL
        assert "env:" in read(mount.p(name, "error"))
    assert "FOO=second\n" in read(env)
    # read and write at once is not a thing
    assert errno_of(os.open, env, os.O_RDWR) == errno.EACCES
    ctl(mount.p(name, "ctl"), "delete")


# ---------------------------------------------------------------------- ports
def serve_a_port(mount, sandbox):
    """Starts a web server in the sandbox on a free port and waits until
    NAME/ports/ lists it; the port."""
    port = free_port()
    ctl(mount.p(sandbox, "ctl"), f"exec python3 -m http.server {port} --bind 127.0.0.1")
    deadline = time.time() + 20
    while str(port) not in os.listdir(mount.p(sandbox, "ports")):
        assert time.time() < deadline, "the port never showed"
        time.sleep(0.2)
    return port


@pytest.mark.provider("daytona", reason="a Vercel sandbox's ports/ lists the ports declared at create (their "
                     "routes), not listeners: test_vercel.test_ports_are_the_declared_routes")
def test_ports_lists_listeners_in_one_request(mount, server, sandbox):
    port = serve_a_port(mount, sandbox)
    server.reset()
    names = os.listdir(mount.p(sandbox, "ports"))
    assert str(port) in names
    reqs = routes.sandbox_requests(server)
    # One command lists them. The mount's look at the running server command
    # may fall in between: a listing on Daytona, a command on Vercel (not
    # told apart by route).
    if server.provider == "daytona":
        assert reqs.count(routes.route("exec")) == 1, reqs
        assert set(reqs) <= {routes.route("exec"), routes.route("list")}, reqs
    else:
        assert 1 <= len(reqs) <= 2 and set(reqs) == {routes.route("exec")}, reqs
    assert all(n.isdigit() and 0 < int(n) < 65536 for n in names)
    ctl(mount.p(sandbox, "ctl"), "kill")


@pytest.mark.provider("daytona", reason="Daytona's preview URLs and tokens (info's id); Vercel's ports are routes "
                     "given at create (test_vercel.test_ports_are_the_declared_routes); the listing of listeners is "
                     "test_ports_lists_listeners_in_one_request")
def test_ports_lists_listeners_and_gives_preview_urls(mount, server, sandbox):
    sid = sandbox_id(mount, sandbox)
    port = serve_a_port(mount, sandbox)
    server.reset()
    names = os.listdir(mount.p(sandbox, "ports"))
    assert len(requests(server, "/process/execute")) == 1
    assert all(n.isdigit() and 0 < int(n) < 65536 for n in names)

    server.reset()
    lines = read(mount.p(sandbox, "ports", str(port))).splitlines()
    assert len(requests(server, "/preview-url")) == 1
    assert f"{port}-{sid}." in lines[0] and lines[0].startswith("http")
    info = json.loads(read(mount.p(sandbox, "info")))
    assert not info.get("public")
    assert lines[1].startswith("token ") and len(lines[1]) > 6
    # the proxy serves it with the token
    import urllib.request
    host = lines[0].split("://", 1)[1].rstrip("/")
    req = urllib.request.Request(server.base + "/", headers={
        "Host": host, "X-Daytona-Preview-Token": lines[1][6:]})
    with urllib.request.urlopen(req, timeout=20) as r:
        assert r.status == 200

    # a port nobody listens on still has its URL
    other = read(mount.p(sandbox, "ports", "1")).splitlines()
    assert f"1-{sid}." in other[0]
    assert errno_of(read, mount.p(sandbox, "ports", "0")) == errno.ENOENT
    assert errno_of(read, mount.p(sandbox, "ports", "65536")) == errno.ENOENT
    ctl(mount.p(sandbox, "ctl"), "kill")


@pytest.mark.provider("daytona", reason="Daytona's public sandboxes; Vercel has none (create public is EINVAL there)")
def test_public_sandbox_port_has_no_token(mount):
    name = f"pub-{uuid.uuid4().hex[:8]}"
    ctl(mount.p("ctl"), f"create {name} public")
    lines = read(mount.p(name, "ports", "3000")).splitlines()
    assert len(lines) == 1 and lines[0].startswith("http")
    ctl(mount.p(name, "ctl"), "delete")


# ---------------------------------------------------------------------- network options
@pytest.mark.provider("vercel", reason="Daytona applies them: test_create_network_options")
def test_network_options_are_refused_on_vercel(mount, server):
    """Vercel's networkPolicy is not set by this client: network=block-all and
    network-allow= are refused with why, before any request (they were
    ignored: the sandbox came with the network open)."""
    server.reset()
    for opt in ("network=block-all", "network-allow=10.0.0.0/8"):
        name = f"net-{uuid.uuid4().hex[:8]}"
        assert errno_of(ctl, mount.p("ctl"), f"create {name} {opt}") == errno.EINVAL
        assert opt.split("=")[0] + "=" in read(mount.p("error"))
        assert not os.path.exists(mount.p(name))
    assert server.count("/sandboxes", method="POST") == 0


@pytest.mark.provider("daytona", reason="Daytona's networkBlockAll/networkAllowList fields; on Vercel both are "
                     "refused (test_network_options_are_refused_on_vercel)")
def test_create_network_options(mount, server):
    a = f"net-{uuid.uuid4().hex[:8]}"
    ctl(mount.p("ctl"), f"create {a} network=block-all")
    assert json.loads(read(mount.p(a, "info")))["networkBlockAll"] is True
    b = f"net-{uuid.uuid4().hex[:8]}"
    ctl(mount.p("ctl"), f"create {b} network-allow=10.0.0.0/8,192.168.0.0/16")
    info = json.loads(read(mount.p(b, "info")))
    assert info["networkAllowList"] == "10.0.0.0/8,192.168.0.0/16"
    assert not info["networkBlockAll"]

    server.reset()
    for bad, msg in (("network-allow=10.0.0.0", "not an IPv4 CIDR"),
                     ("network-allow=10.0.0.0/40", "must be from 0 to 32"),
                     ("network=none", "network must be block-all"),
                     ("network=block-all network-allow=1.2.3.0/24", "exclude each other")):
        assert errno_of(ctl, mount.p("ctl"), f"create x-{uuid.uuid4().hex[:6]} {bad}") == errno.EINVAL
        assert msg in read(mount.p("error"))
    assert not requests(server, "/sandbox")       # refused before any request
    for n in (a, b):
        ctl(mount.p(n, "ctl"), "delete")


# ---------------------------------------------------------------------- volumes
@pytest.mark.provider("daytona", reason="Daytona's volumes; Vercel has none (drives are not mounted by this client)")
def test_volumes_mkdir_info_rmdir(mount, server):
    vol = f"vol-{uuid.uuid4().hex[:8]}"
    vdir = mount.p(".volumes", vol)
    assert ".volumes" in os.listdir(mount.path)
    server.reset()
    os.mkdir(vdir)
    # the kernel's lookup (a list), the create, a look until it is ready (after 200 ms: the
    # server's steps take 20 ms), the kernel's look at the new one
    assert [e["method"] for e in requests(server, "/volumes")] == ["GET", "POST", "GET", "GET"]
    assert errno_of(os.mkdir, vdir) == errno.EEXIST
    assert vol in os.listdir(mount.p(".volumes"))
    info = json.loads(read(os.path.join(vdir, "info")))
    assert info["name"] == vol and info["id"]
    assert os.listdir(vdir) == ["info"]
    assert errno_of(write, os.path.join(vdir, "info"), "x") == errno.EACCES

    assert info["state"] == "ready"   # mkdir returns once it is

    # in use by a sandbox: rmdir says EBUSY, and the volume stays
    sb = f"v-{uuid.uuid4().hex[:8]}"
    ctl(mount.p("ctl"), f"create {sb} volume={vol}:/data")
    assert errno_of(os.rmdir, vdir) == errno.EBUSY
    assert "in use" in read(mount.p("error"))
    assert vol in os.listdir(mount.p(".volumes"))
    ctl(mount.p(sb, "ctl"), "delete")
    os.rmdir(vdir)
    assert vol not in os.listdir(mount.p(".volumes"))
    assert errno_of(os.rmdir, vdir) == errno.ENOENT


@pytest.mark.provider("daytona", reason="Daytona's volumes")
def test_a_volume_is_ready_for_a_sandbox_once_mkdir_returns(mount, server):
    """The README's example: mkdir .volumes/NAME, then create a sandbox with it. The volume is
    made in the background (pending_create, creating, ready); mkdir returned at the create, and
    the sandbox's create was refused ("not in a ready state", EINVAL)."""
    vol = f"vol-{uuid.uuid4().hex[:8]}"
    sb = f"v-{uuid.uuid4().hex[:8]}"
    server.local("PUT", "/_local/timing", {"transition_ms": 400})
    try:
        os.mkdir(mount.p(".volumes", vol))
        assert json.loads(read(mount.p(".volumes", vol, "info")))["state"] == "ready"
        ctl(mount.p("ctl"), f"create {sb} volume={vol}:/data")
    finally:
        server.local("PUT", "/_local/timing", {"transition_ms": 20})
    ctl(mount.p(sb, "ctl"), "delete")
    os.rmdir(mount.p(".volumes", vol))


# ---------------------------------------------------------------------- progress and build log
@pytest.mark.provider("daytona", reason="Daytona's image builds and their build log")
def test_create_image_shows_progress_and_build_log(mount, server, tmp_root):
    server.local("PUT", "/_local/timing", {"build_ms": 3000})
    name = f"img-{uuid.uuid4().hex[:8]}"
    errors = []

    def create():
        try:
            ctl(mount.p("ctl"), f"create {name} image=python:3.12-slim")
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=create)
    t.start()
    seen, logs = set(), []
    try:
        deadline = time.time() + 60
        while t.is_alive() and time.time() < deadline:
            try:
                seen.add(read(mount.p(name, "status")).strip())
                logs.append(read(mount.p(name, "build-log")))
            except OSError:
                pass
            time.sleep(0.1)
    finally:
        t.join(60)
        server.local("PUT", "/_local/timing", {"build_ms": 0})
    assert not errors, errors
    assert "creating: building image" in seen, seen
    assert read(mount.p(name, "status")) == "started\n"
    final = read(mount.p(name, "build-log"))
    assert "Step 1/1 : FROM python:3.12-slim" in final and "Successfully built" in final
    # it grew while the build ran: some read saw a part of it
    assert any(0 < len(x) < len(final) for x in logs), [len(x) for x in logs]
    assert all(final.startswith(x) for x in logs)
    # another mount, which did not follow the build, asks for the log once at open
    m2 = Mount(server, tmp_root, name="mnt-build-log")
    try:
        os.stat(m2.p(name))
        server.reset()
        assert read(m2.p(name, "build-log")) == final
        assert len(requests(server, "/build-logs")) == 1
    finally:
        m2.unmount()
    ctl(mount.p(name, "ctl"), "delete")


# ---------------------------------------------------------------------- activity
def last_activity(server, sid):
    return server.api("GET", f"/sandbox/{sid}")["lastActivityAt"]


@pytest.mark.provider("daytona", reason="reads Daytona's lastActivityAt; a Vercel session has a timeout, not activity")
def test_changes_count_as_activity_reads_do_not(mount, server):
    name = create_sandbox(mount, "act")
    sid = sandbox_id(mount, name)
    a0 = last_activity(server, sid)
    time.sleep(0.05)
    read(mount.p(name, "fs", "etc", "hostname"))
    os.listdir(mount.p(name, "fs", "tmp"))
    os.stat(mount.p(name, "fs", "etc", "hostname"))
    read(mount.p(name, "usage"))
    assert last_activity(server, sid) == a0           # reads and listings do not count

    server.reset()
    write(mount.p(name, "fs", "tmp", "edit"), "hello")
    a1 = last_activity(server, sid)
    assert a1 > a0                                    # a change does
    log = requests(server, f"/toolbox/{sid}/")
    assert not requests(server, "/last-activity")     # piggy-backed: no request of its own
    n = len(log)

    time.sleep(0.05)
    write(mount.p(name, "fs", "tmp", "edit2"), "again")
    os.rename(mount.p(name, "fs", "tmp", "edit2"), mount.p(name, "fs", "tmp", "edit3"))
    os.unlink(mount.p(name, "fs", "tmp", "edit3"))
    mount.settle()
    assert last_activity(server, sid) == a1           # at most one per 30 s
    assert len(requests(server, f"/toolbox/{sid}/")) > n
    ctl(mount.p(name, "ctl"), "delete")


@pytest.mark.provider("daytona", reason="reads Daytona's lastActivityAt; a Vercel session has a timeout, not activity")
def test_activity_none_and_all(server, tmp_root):
    for mode, counts in (("none", False), ("all", True)):
        m = Mount(server, tmp_root, extra_opts=(f"activity={mode}",), name=f"mnt-act-{mode}")
        try:
            name = create_sandbox(m, "act")
            sid = sandbox_id(m, name)
            a0 = last_activity(server, sid)
            time.sleep(0.05)
            if counts:
                os.listdir(m.p(name, "fs", "tmp"))    # with all, even a listing counts
            else:
                write(m.p(name, "fs", "tmp", "f"), "x")
            assert (last_activity(server, sid) > a0) == counts, mode
            ctl(m.p(name, "ctl"), "delete")
        finally:
            m.unmount()


@pytest.mark.provider("daytona", reason="Daytona's build logs; Vercel keeps none (build-log is EOPNOTSUPP there: test_vercel)")
def test_build_log_of_a_snapshot_sandbox_is_empty(mount, server, sandbox):
    os.stat(mount.p(sandbox))
    server.reset()
    assert read(mount.p(sandbox, "build-log")) == ""   # the API: "has no build info" (400)
    assert len(requests(server, "/build-logs")) == 1
    # a failure that is not "no build" is the open's error, not an empty log
    server.local("POST", "/_local/faults", {"pattern": "/build-logs", "status": 500})
    try:
        assert errno_of(read, mount.p(sandbox, "build-log")) == errno.EIO
    finally:
        server.local("DELETE", "/_local/faults")


def test_sandbox_env_reaches_commands_unchanged(mount, server):
    """Every variable of the sandbox's own environment reaches a command as
    it is. The launcher and the wrapper (and Vercel's wrapper around them)
    named their variables d, p, t, A, S ... and a command inherits their
    environment: an exported d came to the command as the record's
    directory, t as a temporary file's name (20 of the 52 one-letter names
    were replaced). Their names now begin with _df."""
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)] + \
        [chr(c) for c in range(ord("a"), ord("z") + 1)]
    name = f"envn-{uuid.uuid4().hex[:8]}"
    if PROVIDER == "vercel":
        # made by another client: a create through the mount would also
        # write its env to NAME/env, sourced last, which hid the bug there
        vapi(server, "POST", "/v2/sandboxes", {"projectId": VERCEL_PROJECT, "name": name, "ports": [],
                                               "runtime": "node24",
                                               "env": {v: f"keep-{v}" for v in letters}})
    else:
        ctl(mount.p("ctl"), f"create {name} " + " ".join(f"env.{v}=keep-{v}" for v in letters))
    try:
        code, out = run(mount, name, "env")
        assert code == 0
        seen = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        assert {v: seen.get(v) for v in letters} == {v: f"keep-{v}" for v in letters}
        assert not [k for k in seen if k.startswith("_df")], out
        # with a timeout, whose watchdog has variables of its own
        code, out = run(mount, name, "timeout=30 -- echo \"$d|$t|$p|$z|$w|$S|$A|$K\"")
        assert (code, out) == (0, "keep-d|keep-t|keep-p|keep-z|keep-w|keep-S|keep-A|keep-K\n")
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_env_concurrent_writers_lose_nothing(mount, server, sandbox, tmp_root):
    """Writers of different keys at once, through two mounts: every key is
    there after, with the last value each writer gave it."""
    m2 = Mount(server, tmp_root, name="mnt-env-race")
    try:
        errors = []

        def writer(m, key):
            try:
                for i in range(5):
                    write(m.p(sandbox, "env"), f"{key}=v{i}\n")
            except OSError as e:
                errors.append(e)

        ts = [threading.Thread(target=writer, args=(mount if k % 2 else m2, f"K{k}"))
              for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        assert not errors, errors
        text = read(mount.p(sandbox, "env"))
        for k in range(6):
            assert f"K{k}=v4\n" in text, text
        assert read(m2.p(sandbox, "env")) == text
        # nothing left behind: no lock, no temporary file
        code, out = run(mount, sandbox, "ls -a /tmp/.daytonafs | grep env")
        assert out == "env\n", out
        # a lock its writer left (killed) a while ago is broken; a fresh one waits
        run(mount, sandbox, "mkdir /tmp/.daytonafs/env.lock && touch -d '-3 min' /tmp/.daytonafs/env.lock")
        write(mount.p(sandbox, "env"), "K9=after-stale\n")
        assert "K9=after-stale\n" in read(mount.p(sandbox, "env"))
    finally:
        m2.unmount()



def test_env_refuses_non_utf8_and_shell_names(mount, sandbox):
    env = mount.p(sandbox, "env")
    write(env, "KEEP=1\nLATER=é\n")
    for bad, msg in ((b"BAD=\xff\xfe\n", "UTF-8"), (b"B\xc3\xa9=1\n", "not K=V"),
                     (b"IFS=:\n", "IFS"), (b"UID=0\n", "UID"), (b"-EUID\n", "EUID"),
                     (b"PPID=1\n", "PPID"), (b"SHELLOPTS=x\n", "SHELLOPTS"),
                     (b"BASHOPTS=x\n", "BASHOPTS"), (b"BASH_VERSINFO=x\n", "BASH_VERSINFO"),
                     (b"GROUPS=x\n", "GROUPS")):
        assert errno_of(write, env, bad, "wb") == errno.EINVAL, bad
        assert msg in read(mount.p(sandbox, "error")), bad
    write(env, "PATH=/usr/local/bin:/usr/bin:/bin\n")      # PATH is a variable like any other
    text = read(env)
    assert "KEEP=1\n" in text and "LATER=é\n" in text, text
    assert "PATH=/usr/local/bin:/usr/bin:/bin\n" in text
    # a line the file got some other way, not UTF-8, does not make grep take
    # the file for binary and drop the lines after it
    run(mount, sandbox, "printf 'export RAW=\\377\\n' >> /tmp/.daytonafs/env")
    write(env, "MID=1\n")
    write(env, "AFTER=2\n")
    text = read(env)
    for line in ("KEEP=1\n", "LATER=é\n", "MID=1\n", "AFTER=2\n"):
        assert line in text, text
    code, out = run(mount, sandbox, "LC_ALL=C grep -ac '^export RAW=' /tmp/.daytonafs/env")
    assert out == "1\n"



def test_env_file_is_private(mount, sandbox):
    write(mount.p(sandbox, "env"), "SECRET=s3cr3t\n")
    code, out = run(mount, sandbox, "stat -c %a /tmp/.daytonafs/env")
    assert (code, out) == (0, "600\n")


def test_unmount_with_virtual_handles_open_frees_them(server, tmp_root):
    """The kernel sends RELEASE in the background after close() returns and
    drops what it has not sent when the mount goes: a handle of a virtual
    file can be open, to the daemon, at unmount. Made certain here with a
    SIGTERM while they are open; the sanitizer build's leak check reads the log."""
    import signal
    m = Mount(server, tmp_root, name="mnt-open-handles")
    name = create_sandbox(m, "oh")
    fds = []
    try:
        fd = os.open(m.p("ctl"), os.O_WRONLY)
        os.write(fd, b"# a partial line, no newline")
        fds.append(fd)
        fd = os.open(m.p(name, "env"), os.O_WRONLY)
        os.write(fd, b"PENDING=1")
        fds.append(fd)
        fds.append(os.open(m.p(name, "info"), os.O_RDONLY))
        # (not a directory: libfuse's own handle of one would leak, not ours)
        m.proc.send_signal(signal.SIGTERM)
        m.proc.wait(60)
    finally:
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        m.unmount(check=False)
    log = open(m.log.name, errors="replace").read()
    assert not [s for s in Mount.SANITIZER_MARKS if s in log], log[-4000:]


@pytest.mark.provider("daytona", reason="Daytona's preview URLs and tokens")
def test_port_token_is_whole_or_an_error(mount, server, sandbox):
    os.stat(mount.p(sandbox))
    url = "https://3000-x.proxy.example"
    try:
        for n in (300, 1000):
            server.local("DELETE", "/_local/faults")
            server.local("POST", "/_local/faults", {"pattern": "/preview-url", "status": 200,
                                                     "body": {"url": url, "token": "t" * n}})
            assert read(mount.p(sandbox, "ports", "3000")) == f"{url}\ntoken {'t' * n}\n"
        server.local("DELETE", "/_local/faults")
        server.local("POST", "/_local/faults", {"pattern": "/preview-url", "status": 200,
                                                 "body": {"url": url, "token": "t" * 5000}})
        assert errno_of(read, mount.p(sandbox, "ports", "3000")) == errno.EIO
        assert "preview URL" in read(mount.p(sandbox, "error"))
    finally:
        server.local("DELETE", "/_local/faults")


def start_image_create(m, server, name, build_ms):
    """create ... image= in a thread; returns it. The build takes build_ms."""
    server.local("PUT", "/_local/timing", {"build_ms": build_ms})
    errors = []

    def create():
        try:
            ctl(m.p("ctl"), f"create {name} image=python:3.12-slim")
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=create)
    t.start()
    t.errors = errors
    return t


@pytest.mark.provider("daytona", reason="Daytona's image builds and their build log")
def test_unmount_while_a_build_log_is_followed(server, tmp_root):
    """create gives up waiting (wait_timeout=1) while the image still builds;
    the mount goes while its follower still reads the log: the follower is
    stopped and joined before the HTTP client it uses is freed."""
    m = Mount(server, tmp_root, extra_opts=("wait_timeout=1",), name="mnt-follow-unmount")
    name = f"fu-{uuid.uuid4().hex[:8]}"
    # the log trickles in: the follower is in the middle of it when the mount goes
    server.local("POST", "/_local/faults", {"pattern": r"build-logs\?follow=true",
                                            "action": "slow", "bytes_per_sec": 40})
    try:
        t = start_image_create(m, server, name, 8000)
        t.join(60)
        assert t.errors and t.errors[0].errno == errno.ETIMEDOUT, t.errors
        deadline = time.time() + 20
        while not read(m.p(name, "build-log")).startswith("Sending build context"):
            assert time.time() < deadline, "the followed log never showed"
            time.sleep(0.1)
    finally:
        server.local("PUT", "/_local/timing", {"build_ms": 0})
        server.local("DELETE", "/_local/faults")
        m.unmount()
    api = Mount(server, tmp_root, name="mnt-follow-cleanup")
    try:
        deadline = time.time() + 30
        while True:
            try:
                ctl(api.p(name, "ctl"), "delete")
                break
            except OSError:
                assert time.time() < deadline
                time.sleep(0.5)
    finally:
        api.unmount()


@pytest.mark.provider("daytona", reason="Daytona's image builds and their build log")
def test_followed_build_log_is_let_go_once_started(mount, server):
    """The mount keeps a followed log only while the build runs: once it is
    over and the sandbox started, a read asks the API (the memory is freed)."""
    name = f"lg-{uuid.uuid4().hex[:8]}"
    try:
        t = start_image_create(mount, server, name, 1500)
        t.join(60)
    finally:
        server.local("PUT", "/_local/timing", {"build_ms": 0})
    assert not t.errors, t.errors
    deadline = time.time() + 10
    while True:
        server.reset()
        text = read(mount.p(name, "build-log"))
        if requests(server, "/build-logs"):
            break
        assert time.time() < deadline, "the followed log is still kept"
        time.sleep(0.1)
    assert "Step 1/1 : FROM python:3.12-slim" in text and "Successfully built" in text
    assert len(requests(server, "/build-logs")) == 1
    ctl(mount.p(name, "ctl"), "delete")


@pytest.mark.provider("daytona", reason="Daytona's image builds and their build log")
def test_open_build_log_keeps_what_it_reads(mount, server):
    """A build-log opened while the build is followed reads what was
    followed even when the follow breaks (and the log is let go) before the read."""
    name = f"ko-{uuid.uuid4().hex[:8]}"
    server.local("POST", "/_local/faults", {"pattern": r"build-logs\?follow=true",
                                            "action": "reset_mid_body", "count": 1})
    fd = None
    try:
        t = start_image_create(mount, server, name, 1500)
        deadline = time.time() + 20
        while fd is None:
            assert time.time() < deadline, "the sandbox never showed"
            try:
                fd = os.open(mount.p(name, "build-log"), os.O_RDONLY)
            except OSError:
                time.sleep(0.05)
        t.join(60)
        assert not t.errors, t.errors
        # the follow broke at the log's end (the fault), the create returned
        text = os.pread(fd, 1 << 20, 0).decode()
        assert "Step 1/1 : FROM python:3.12-slim" in text and "Successfully built" in text, text
        assert read(mount.p(name, "build-log")) == text     # a new open: the API's, whole
    finally:
        if fd is not None:
            os.close(fd)
        server.local("PUT", "/_local/timing", {"build_ms": 0})
        server.local("DELETE", "/_local/faults")
    ctl(mount.p(name, "ctl"), "delete")


def test_env_cannot_change_which_command_runs(mount, sandbox):
    """The wrapper sources STATE_DIR/env: names it uses itself (s, d, r,
    and IFS, which NAME/env refuses but the file can get otherwise) change
    neither the command nor its words."""
    write(mount.p(sandbox, "env"), "s=1\nd=/nonexistent\nr=/bin/true\ne=/x\ni=/nonexistent\n")
    code, _ = run(mount, sandbox, "printf 'export IFS=/\\n' >> /tmp/.daytonafs/env")
    assert code == 0
    code, out = run(mount, sandbox, "echo hello")
    assert (code, out) == (0, "hello\n")
    code, out = run(mount, sandbox, 'echo "$s|$d|$r"')
    assert (code, out) == (0, "1|/nonexistent|/bin/true\n")
