# SPDX-License-Identifier: Apache-2.0
"""What is Vercel's own in the mount (doc/SEMANTICS.md, "Vercel"): sessions
that stop and resume under a new id, extend, tags, Vercel's create words,
exact bytes through a UTF-8-only output channel, the request quota and 429.
Run with DAYTONAFS_TEST_PROVIDER=vercel (skipped otherwise)."""
import errno
import json
import os
import threading
import time

import pytest

from conftest import PROVIDER, SANDBOX_HOME, VERCEL_PROJECT, Mount, create_sandbox, ctl, read, sh, write
from control_api import vapi  # Vercel's API straight to the server, as another client would

pytestmark = pytest.mark.provider("vercel", reason="Vercel's sessions, tags and quota")


def session_of(server, name):
    return vapi(server, "GET", f"/v2/sandboxes/{name}")["sandbox"]["currentSessionId"]


def log(server):
    return server.local("GET", "/_local/log")


def test_create_with_vercel_words(mount, server):
    name = "vw-" + os.urandom(3).hex()
    ctl(mount.p("ctl"), f"create {name} runtime=python3.13 vcpus=4 timeout=20 port=3000 tag.team=infra "
                        "env.GREETING=hi persistent")
    try:
        sb = vapi(server, "GET", f"/v2/sandboxes/{name}")["sandbox"]
        assert sb["vcpus"] == 4
        assert sb["timeout"] == 20 * 60000
        assert sb["tags"] == {"team": "infra"}
        assert sb["persistent"] is True
        ctl(mount.p(name, "ctl"), "exec echo $GREETING")
        assert read(mount.p(name, "stdout")) == "hi\n"
        # tag/untag are labels: the sandbox's tags
        ctl(mount.p(name, "ctl"), "tag owner=me")
        assert vapi(server, "GET", f"/v2/sandboxes/{name}")["sandbox"]["tags"] == {"team": "infra", "owner": "me"}
        ctl(mount.p(name, "ctl"), "untag team")
        assert vapi(server, "GET", f"/v2/sandboxes/{name}")["sandbox"]["tags"] == {"owner": "me"}
        # what Vercel does not have is refused, with why
        with pytest.raises(OSError):
            ctl(mount.p("ctl"), f"create {name}-2 memory=8")
        assert "memory" in read(mount.p("error"))
        assert not os.path.exists(mount.p(f"{name}-2"))
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_stopped_session_is_ehostdown_until_start(mount, server):
    name = create_sandbox(mount, "stop")
    try:
        f = mount.p(name, "work", "kept.txt")
        write(f, "persistent\n")
        first = session_of(server, name)
        ctl(mount.p(name, "ctl"), "stop")
        assert read(mount.p(name, "status")) == "stopped\n"
        server.reset()
        with pytest.raises(OSError) as e:
            read(mount.p(name, "work", "other.txt"))
        assert e.value.errno == 112      # EHOSTDOWN
        assert f"echo start > {mount.path}/{name}/ctl" in read(mount.p(name, "error"))
        # browsing never resumes the sandbox
        assert not [r for r in log(server) if "resume=true" in r["path"]]
        ctl(mount.p(name, "ctl"), "start")
        assert read(mount.p(name, "status")) == "started\n"
        assert session_of(server, name) != first           # a new session
        assert read(f) == "persistent\n"                    # a persistent sandbox keeps its files
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_session_resumed_by_another_client_is_followed(mount, server):
    name = create_sandbox(mount, "moved")
    try:
        ctl(mount.p(name, "ctl"), "exec true")
        assert read(mount.p(name, "exit")) == "0\n"
        old = session_of(server, name)
        vapi(server, "POST", f"/v2/sandboxes/sessions/{old}/stop")
        for _ in range(100):
            if vapi(server, "GET", f"/v2/sandboxes/{name}")["sandbox"]["status"] == "stopped":
                break
            time.sleep(0.05)
        new = vapi(server, "GET", f"/v2/sandboxes/{name}", resume="true")["session"]["id"]
        assert new != old
        server.reset()
        # The mount still holds the old session: one 410, one look at the
        # sandbox (no resume), and the command goes to the new session.
        ctl(mount.p(name, "ctl"), "exec echo moved")
        assert read(mount.p(name, "stdout")) == "moved\n"
        entries = log(server)
        assert len([r for r in entries if f"/sessions/{old}/" in r["path"] and r["status"] == 410]) == 1
        assert not [r for r in entries if "resume=true" in r["path"]]
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_extend(mount, server):
    name = create_sandbox(mount, "ext")
    try:
        before = vapi(server, "GET", f"/v2/sandboxes/{name}")["session"]["timeout"]
        ctl(mount.p(name, "ctl"), "extend 10")
        after = vapi(server, "GET", f"/v2/sandboxes/{name}")["session"]["timeout"]
        assert after == before + 10 * 60000
        ctl(mount.p(name, "ctl"), "stop")
        with pytest.raises(OSError) as e:
            ctl(mount.p(name, "ctl"), "extend 10")
        assert e.value.errno == 112      # only a running session can be extended
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_exact_bytes_through_utf8_logs(mount, sandbox):
    """The output channel is UTF-8 text: names and output that are not UTF-8
    come through exact (the exec wrapper's base64)."""
    ctl(mount.p(sandbox, "ctl"), r"""exec mkdir -p odd && touch "odd/$(printf 'a\377b')" && printf '\377\000\001' """)
    assert read(mount.p(sandbox, "exit")) == "0\n"
    with open(mount.p(sandbox, "stdout"), "rb") as f:
        assert f.read() == b"\xff\x00\x01"
    assert os.listdir(os.fsencode(mount.p(sandbox, "work", "odd"))) == [b"a\xffb"]


def test_far_ranged_read_is_one_command(mount, sandbox, server):
    """A read far into a large file is one command (tail | head | base64),
    not a fetch of everything before it."""
    p = mount.p(sandbox, "work", "big.bin")
    data = os.urandom(3 * 1024 * 1024)
    with open(p, "wb") as f:
        f.write(data)
    time.sleep(1.2)
    os.stat(p)
    server.reset()
    fd = os.open(p, os.O_RDONLY | os.O_DIRECT) if hasattr(os, "O_DIRECT") else os.open(p, os.O_RDONLY)
    try:
        got = os.pread(fd, 4096, 2 * 1024 * 1024 + 4096)
    finally:
        os.close(fd)
    assert got == data[2 * 1024 * 1024 + 4096: 2 * 1024 * 1024 + 8192]
    reads = [r for r in log(server) if r["path"].split("?")[0].endswith("/fs/read")]
    out = sum(r["bytes_out"] for r in reads)
    assert out < 1024 * 1024, f"{out} bytes of fs/read for a 4 KiB read at 2 MiB"


def test_uploads_keep_mode_and_links(mount, sandbox):
    """fs/write replaces a file; the mount writes in place through a copy, so
    an existing file keeps its mode and its hard links."""
    ctl(mount.p(sandbox, "ctl"), "exec printf old > keep.sh && chmod 755 keep.sh && ln keep.sh keep-link")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    write(mount.p(sandbox, "work", "keep.sh"), "new\n")
    ctl(mount.p(sandbox, "ctl"), "exec stat -c '%a %h' keep.sh; cat keep-link")
    assert read(mount.p(sandbox, "stdout")) == "755 2\nnew\n"
    assert SANDBOX_HOME == "/vercel/sandbox"


@pytest.mark.parametrize("how", ["fchown", "chown"])
def test_chown_of_a_new_file_to_another_owner_is_eperm_and_keeps_its_mode_and_times(mount, sandbox, how):
    """tar xp or cp -p as root: a new file given another owner while its upload waits. The chown
    was taken, then refused in the sandbox after the upload, and the chmod and times queued with
    it went too: scripts lost their exec bits and files their times, with close returning 0."""
    name = "owned-%s.sh" % how
    p = mount.p(sandbox, "work", name)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"#!/bin/sh\n")
        with pytest.raises(OSError) as e:
            os.fchown(fd, 0, 0) if how == "fchown" else os.chown(p, 0, 0)
        assert e.value.errno == errno.EPERM
        os.fchown(fd, 1000, 1000)            # its own owner: fine
        os.fchmod(fd, 0o755)
        os.utime(fd, (981173106, 981173106))
    finally:
        os.close(fd)
    st = os.stat(p)
    assert (st.st_uid, st.st_mode & 0o7777, int(st.st_mtime)) == (1000, 0o755, 981173106)
    ctl(mount.p(sandbox, "ctl"), f"exec stat -c '%u:%g %a %Y' {name}")
    assert read(mount.p(sandbox, "stdout")) == "1000:1000 755 981173106\n"


def test_rate_limit_waits_and_429_is_retried(server, tmp_root):
    m = Mount(server, tmp_root, ["rate_limit=120", "loglevel=info"], name="ratemnt")
    try:
        name = create_sandbox(m, "rate")
        # 120 a minute with a burst of 6: the tenth request waits for its token
        for i in range(10):
            ctl(m.p(name, "ctl"), f"exec echo {i}")
        server.reset()
        server.local("POST", "/_local/faults", {"pattern": "/sessions/[^/]+/cmd", "action": "status", "status": 429,
                                                "retry_after": 1, "count": 1})
        try:
            ctl(m.p(name, "ctl"), "exec echo after-429")
            assert read(m.p(name, "stdout")) == "after-429\n"
            statuses = [r["status"] for r in log(server) if r["path"].split("?")[0].endswith("/cmd")]
            assert 429 in statuses
        finally:
            server.local("DELETE", "/_local/faults")
        ctl(m.p(name, "ctl"), "delete")
    finally:
        m.unmount()
    assert "request quota: waited" in open(m.log.name).read()


def test_write_to_a_file_made_read_only_after_open(mount, sandbox):
    """A descriptor opened for writing keeps its right to write after chmod
    0444; the sandbox's user is not root, so the copy into place gets the
    owner's write bit for the moment, and the mode comes back."""
    p = mount.p(sandbox, "work", "ro-later.txt")
    write(p, "old\n")
    fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
    try:
        os.chmod(p, 0o444)
        os.write(fd, b"new\n")
    finally:
        os.close(fd)
    ctl(mount.p(sandbox, "ctl"), "exec stat -c %a ro-later.txt; cat ro-later.txt; ls -a | grep -c daytonafs-upload")
    assert read(mount.p(sandbox, "stdout")) == "444\nnew\n0\n"


def _time_out(server, name):
    """Stops the sandbox's session behind the mount's back, as its timeout does."""
    sid = session_of(server, name)
    vapi(server, "POST", f"/v2/sandboxes/sessions/{sid}/stop")
    for _ in range(200):
        if vapi(server, "GET", f"/v2/sandboxes/{name}")["sandbox"]["status"] == "stopped":
            return sid
        time.sleep(0.05)
    raise AssertionError("the session did not stop")


def test_timed_out_session_without_autostart_is_ehostdown(mount, server):
    name = create_sandbox(mount, "tout")
    try:
        write(mount.p(name, "work", "a.txt"), "a\n")
        _time_out(server, name)
        seen = len(log(server))      # no server.reset(): it would list the mount
        with pytest.raises(OSError) as e:
            os.listdir(mount.p(name, "fs", "etc"))     # not cached: asks the sandbox
        assert e.value.errno == 112      # EHOSTDOWN
        assert f"echo start > {mount.path}/{name}/ctl" in read(mount.p(name, "error"))
        assert read(mount.p(name, "status")) == "stopped\n"
        assert not [r for r in log(server)[seen:] if "resume=true" in r["path"]]
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_autostart_resumes_a_timed_out_session(server, tmp_root):
    m = Mount(server, tmp_root, ["autostart"], name="mnt-autostart")
    try:
        name = create_sandbox(m, "auto")
        f = m.p(name, "work", "kept.txt")
        write(f, "persistent\n")
        first = _time_out(server, name)
        server.reset()
        # browsing never resumes nor extends the session
        assert name in os.listdir(m.path)
        assert read(m.p(name, "status")) == "stopped\n"
        read(m.p(name, "info"))
        entries = log(server)
        assert not [r for r in entries if "resume=true" in r["path"] or "extend" in r["path"]]
        # the first file access resumes it: a new session, and it succeeds
        assert read(f) == "persistent\n"
        assert session_of(server, name) != first
        assert len([r for r in log(server) if "resume=true" in r["path"]]) == 1
        assert read(m.p(name, "status")) == "started\n"
        ctl(m.p(name, "ctl"), "delete")
    finally:
        m.unmount()


def test_a_wait_for_a_command_whose_session_ended_ends(server, tmp_root):
    """Under -o autostart a poll of a command whose session timed out gets
    a 410, which resumes the sandbox (a new session, none of the old
    processes) and the poll goes on there: no error, so the record, which
    will never get its exit, looked running for ever, and `cat exit` never
    returned. A wait now has the sandbox's processes checked every 20 s:
    the command ends as killed (137)."""
    m = Mount(server, tmp_root, ["autostart"], name="mnt-autostart-wait")
    try:
        name = create_sandbox(m, "autow")
        ctl(m.p(name, "ctl"), "exec sleep 600")
        n = os.readlink(m.p(name, "cmd", "last"))
        got = {}

        def waiter():
            try:
                got["exit"] = read(m.p(name, "cmd", n, "exit"))
            except OSError as e:
                got["errno"] = e.errno

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        time.sleep(1)
        first = _time_out(server, name)
        t.join(60)
        assert not t.is_alive(), "the wait for the command never ended"
        assert got == {"exit": "137\n"}
        assert read(m.p(name, "cmd", n, "status")).startswith("killed")
        assert session_of(server, name) != first
        ctl(m.p(name, "ctl"), "delete")
    finally:
        m.unmount()


def test_autostart_resumes_on_the_first_access_after_a_timeout(server, tmp_root):
    """The mount still believes the session runs (nothing browsed since; no
    server.reset(), which lists the mount): the 410 of the first access
    resumes the sandbox, and that access succeeds."""
    m = Mount(server, tmp_root, ["autostart"], name="mnt-autostart2")
    try:
        name = create_sandbox(m, "auto")
        write(m.p(name, "work", "kept.txt"), "persistent\n")
        first = _time_out(server, name)
        seen = len(log(server))
        write(m.p(name, "work", "new.txt"), "new\n")
        assert read(m.p(name, "work", "kept.txt")) == "persistent\n"
        assert session_of(server, name) != first
        assert len([r for r in log(server)[seen:] if "resume=true" in r["path"]]) == 1
        assert read(m.p(name, "status")) == "started\n"
        ctl(m.p(name, "ctl"), "delete")
    finally:
        m.unmount()


def test_upload_into_a_read_only_directory_is_eacces(mount, sandbox, server):
    """The file API acts as the sandbox's default user, not root: a new file in
    a directory that user may not write fails with EACCES at close, and no
    temporary upload is left there (nor anything in the user's name)."""
    ctl(mount.p(sandbox, "ctl"), "exec mkdir -p rodir && chmod 555 rodir")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    p = mount.p(sandbox, "work", "rodir", "new.txt")
    with pytest.raises(OSError) as e:
        write(p, "data\n")
    assert e.value.errno == 13       # EACCES
    assert not os.path.exists(p)
    ctl(mount.p(sandbox, "ctl"), "exec ls -A rodir | wc -l")
    assert read(mount.p(sandbox, "stdout")) == "0\n"


def test_surface_shows_only_what_vercel_has(mount, sandbox):
    """A surface directory or file the provider cannot serve is not there:
    Vercel has no volumes (.volumes) and no build log. They were listed, and
    every open of them failed (EOPNOTSUPP). ports/ is there (issue 15): it
    lists the ports declared at create, none for this sandbox."""
    root = sh(["ls", "-a", mount.path]).stdout.split()
    assert ".volumes" not in root
    assert {".", "..", "ctl", "error", ".snapshots", sandbox} <= set(root)
    entries = sh(["ls", mount.p(sandbox)]).stdout.split()
    assert sorted(entries) == sorted(["ctl", "status", "info", "error", "stdout", "stderr", "exit", "cmd",
                                      "fs", "work", "usage", "env", "ports"])
    assert os.listdir(mount.p(sandbox, "ports")) == []
    for p in (mount.p(".volumes"), mount.p(".volumes", "v1"), mount.p(".volumes", "v1", "info"),
              mount.p(sandbox, "build-log"), mount.p(sandbox, "ports", "3000")):
        with pytest.raises(OSError) as e:
            os.stat(p)
        assert e.value.errno == errno.ENOENT, p
    with pytest.raises(OSError) as e:
        os.mkdir(mount.p(".volumes", "v1"))
    assert e.value.errno == errno.ENOENT
    with pytest.raises(OSError) as e:
        read(mount.p(sandbox, "build-log"))
    assert e.value.errno == errno.ENOENT
    # what is shown works, and the mount goes on
    assert os.listdir(mount.p(".snapshots")) is not None
    assert read(mount.p(sandbox, "usage"))
    write(mount.p(sandbox, "work", "after.txt"), "still here\n")
    assert read(mount.p(sandbox, "work", "after.txt")) == "still here\n"
    assert read(mount.p(sandbox, "status")) == "started\n"


def test_ports_are_the_declared_routes(mount, server):
    """NAME/ports/ lists the ports declared at create (port=N), each file the
    public URL of its route (no token: Vercel's routes are public); a port
    not declared is ENOENT, one that listens too. Each listing, lookup or
    read is one GET of the sandbox, whose answer carries the routes."""
    name = "vp-" + os.urandom(3).hex()
    ctl(mount.p("ctl"), f"create {name} port=3000 port=8080")
    try:
        def is_get(e):   # GET /v2/sandboxes/NAME (under /api when the client says so)
            return e["method"] == "GET" and e["path"].split("?")[0].endswith(f"/v2/sandboxes/{name}")

        routes = {r["port"]: r["url"] for r in vapi(server, "GET", f"/v2/sandboxes/{name}")["routes"]}
        assert set(routes) == {3000, 8080}
        ports = mount.p(name, "ports")
        os.stat(mount.p(name, "status"))   # the sandbox is known: no lookup of it below

        server.reset()
        assert sorted(os.listdir(ports)) == ["3000", "8080"]
        assert len(log(server)) == 1 and is_get(log(server)[0]), log(server)

        server.reset()
        assert read(os.path.join(ports, "3000")) == routes[3000] + "\n"
        assert read(os.path.join(ports, "8080")) == routes[8080] + "\n"
        reqs = log(server)
        # per file: at most one GET to look it up and one to read it; nothing else
        assert all(is_get(e) for e in reqs), reqs
        assert 2 <= len(reqs) <= 4, reqs   # measured: 4 (the lookup's GET and the read's)

        # not declared: ENOENT, also for a port a server listens on
        # in the background: the exec ends at once, so that no look at its
        # record (the mount watches its running commands for a while) comes
        # among the requests counted below
        ctl(mount.p(name, "ctl"), "exec python3 -m http.server 9999 --bind 127.0.0.1 >/dev/null 2>&1 &")
        deadline = time.time() + 20
        while True:   # 9999 = 0x270F in LISTEN (0A)
            ctl(mount.p(name, "ctl"), "exec grep -q ':270F .* 0A ' /proc/net/tcp /proc/net/tcp6")
            d = mount.p(name, "cmd", os.readlink(mount.p(name, "cmd", "last")))
            if read(os.path.join(d, "exit")).strip() == "0":
                break
            assert time.time() < deadline, "the server never listened"
            time.sleep(0.2)
        server.reset()
        for p in ("9999", "1"):
            with pytest.raises(OSError) as e:
                read(os.path.join(ports, p))
            assert e.value.errno == errno.ENOENT
        assert sorted(os.listdir(ports)) == ["3000", "8080"]
        assert len(log(server)) == 3 and all(is_get(e) for e in log(server)), log(server)
        # a port not declared is no sandbox error
        assert "did not declare" not in read(mount.p(name, "error"))
    finally:
        ctl(mount.p(name, "ctl"), "delete")


def test_env_shows_create_env_and_what_was_written(mount, server, tmp_root):
    """Vercel keeps a sandbox's env in its config but no response carries it
    (CONTRACT.md: the Sandbox object has no env): the mount records create's
    env.K=V in the env file, one command at create. NAME/env read empty."""
    name = "venv-" + os.urandom(3).hex()
    server.reset()
    ctl(mount.p("ctl"), f"create {name} env.FROM_CREATE=c1 env.OTHER=o")
    try:
        cmds = [r for r in log(server) if r["path"].split("?")[0].endswith("/cmd")]
        assert len(cmds) == 1, cmds       # the record
        env = mount.p(name, "env")
        server.reset()
        assert read(env) == "FROM_CREATE=c1\nOTHER=o\n"
        # one command, no GET of the sandbox (its answer has no env)
        assert [r["method"] + " " + r["path"].split("?")[0].rsplit("/", 1)[-1] for r in log(server)] == \
            ["POST cmd"]
        write(env, "-OTHER\nNEW=n\n")
        assert read(env) == "FROM_CREATE=c1\nNEW=n\n"
        ctl(mount.p(name, "ctl"), 'exec echo "$FROM_CREATE|$NEW|${OTHER-unset}"')
        assert read(mount.p(name, "stdout")) == "c1|n|unset\n"
        m2 = Mount(server, tmp_root, name="mnt-venv")
        try:
            assert read(m2.p(name, "env")) == "FROM_CREATE=c1\nNEW=n\n"
        finally:
            m2.unmount()
        # a sandbox created without env: an empty file, no record command
        plain = name + "-p"
        server.reset()
        ctl(mount.p("ctl"), f"create {plain}")
        assert not [r for r in log(server) if r["path"].split("?")[0].endswith("/cmd")]
        assert read(mount.p(plain, "env")) == ""
        ctl(mount.p(plain, "ctl"), "delete")
    finally:
        ctl(mount.p(name, "ctl"), "delete")

def test_names_up_to_128_bytes_are_served(mount, server):
    """Vercel's names are up to 128 bytes ([a-zA-Z0-9_-]) and are the ids
    the mount addresses them by. Names over 63 bytes were left out of the
    list (with a warning), and a create of one failed after it was made."""
    made = "m" * 60 + "-" + os.urandom(33).hex()          # 127 bytes, made through the mount
    other = "o" * 61 + "-" + os.urandom(33).hex()         # 128 bytes, made by another client
    assert len(made) == 127 and len(other) == 128
    ctl(mount.p("ctl"), f"create {made}")
    try:
        vapi(server, "POST", "/v2/sandboxes", {"projectId": VERCEL_PROJECT, "name": other, "ports": [],
                                               "runtime": "node24"})
        try:
            # a name not yet listed is looked up by the API at once
            assert read(mount.p(other, "status")) == "started\n"
            names = os.listdir(mount.path)
            assert made in names and other in names
            for name in (made, other):
                assert read(mount.p(name, "status")) == "started\n"
                assert json.loads(read(mount.p(name, "info")))["sandbox"]["name"] == name
                write(mount.p(name, "work", "f.txt"), name + "\n")
                assert read(mount.p(name, "work", "f.txt")) == name + "\n"
                ctl(mount.p(name, "ctl"), "exec cat f.txt")
                assert read(mount.p(name, "stdout")) == name + "\n"
            # stop and start: the new session is found by the long name
            ctl(mount.p(other, "ctl"), "stop")
            assert read(mount.p(other, "status")) == "stopped\n"
            ctl(mount.p(other, "ctl"), "start")
            assert read(mount.p(other, "work", "f.txt")) == other + "\n"
        finally:
            ctl(mount.p(other, "ctl"), "delete")
    finally:
        ctl(mount.p(made, "ctl"), "delete")
    assert made not in os.listdir(mount.path)


def test_work_of_a_stopped_sandbox_is_its_own_default(mount):
    """NAME/work of a stopped sandbox, whose work directory cannot be asked, pointed at
    Daytona's default, fs/home/daytona (found by an exploring helper): Vercel's is
    /vercel/sandbox."""
    name = create_sandbox(mount, "wk")
    try:
        ctl(mount.p(name, "ctl"), "stop")
        assert os.readlink(mount.p(name, "work")) == "fs/vercel/sandbox"
    finally:
        ctl(mount.p(name, "ctl"), "delete")
