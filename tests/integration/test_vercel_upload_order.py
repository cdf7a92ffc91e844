# SPDX-License-Identifier: Apache-2.0
"""The order of Vercel's upload sends (src/provider/vercel/vercel_bulk.c,
upload_fn): a send of the upload command that failed for a blip is sent
again while the first may still run, or start late, in the sandbox. A late
send writes nothing over what this mount did since; a send is never skipped
for what another mount left (another host's clock). A late send is played
here by running again, as another client, the very script a send of the
mount ran (the local service lists each command with its arguments, as
Vercel's does)."""
import errno
import json
import os
import re
import time
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import API_KEY, SANDBOX_HOME, VERCEL_PROJECT, VERCEL_TEAM

pytestmark = pytest.mark.provider("vercel", reason="Vercel's upload command")

STATE = "/tmp/.daytonafs/out/up-seq"


def fnv(path):
    h = 14695981039346656037
    for c in path.encode():
        h ^= c
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h


def commands(view):
    """The scripts of the session's commands (what `sh -c WRAPPER sh SCRIPT` ran)."""
    q = urllib.parse.urlencode({"teamId": VERCEL_TEAM, "projectId": VERCEL_PROJECT})
    req = urllib.request.Request(f"{view.server.api_url}/v2/sandboxes/sessions/{view.sid}/cmd?{q}",
                                 headers={"Authorization": "Bearer " + API_KEY})
    with urllib.request.urlopen(req, timeout=30) as r:
        cmds = json.loads(r.read())["commands"]
    return [c["args"][3] for c in cmds if len(c.get("args") or []) == 4]


def uploads_of(view, remote):
    """The upload commands' scripts that carry remote."""
    return [s for s in commands(view) if "DAYTONAFS_UP_EOF" in s and remote.encode().hex() in s]


def write_synced(path, data):
    with open(path, "w") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def gone(view, remote, tries=100):
    for _ in range(tries):
        if not view.exists(remote):
            return True
        time.sleep(0.1)
    return False


def test_upload_after_a_mount_with_a_clock_ahead(mount, sandbox, view):
    """A mount whose host clock is an hour ahead wrote the file (its record
    numbered by that clock); this mount's upload of new bytes lands. Before,
    the send wrote nothing, said R 0, and the close returned 0 over the old
    bytes."""
    name = "seq-" + uuid.uuid4().hex[:8]
    local, remote = mount.p(sandbox, "work", name), SANDBOX_HOME + "/" + name
    write_synced(local, "written by a mount whose clock is an hour ahead\n")
    # what that mount's upload left: its number (its clock), in the record
    # format of the version that numbered by the clock, and in this one's
    future = int(time.time() * 1e6) + 3600 * 10**6
    hexp = remote.encode().hex()
    code, out = view.sh('mkdir -p "$1" && printf "%s %s\\n" "$2" "$3" > "$1/$4" && '
                        'printf "%s %s %s\\n" "$2" 0123456789abcdef "$3" > "$1/0123456789abcdef-$4"',
                        STATE, str(future), hexp, "%016x" % fnv(remote))
    assert code == 0, out
    before = len(uploads_of(view, remote))
    write_synced(local, "new content from this mount\n")
    assert view.read(remote) == b"new content from this mount\n"
    assert len(uploads_of(view, remote)) == before + 1


def test_a_late_duplicate_send_does_not_bring_a_deleted_file_back(mount, sandbox, view):
    """The upload's second send wrote (the first one's answer was lost); the
    user removes the file; the first send runs at last. It writes nothing
    and says 0: the file stays gone. Before, a send with the same number as
    the last one written wrote again (the record was written before the copy,
    and only a greater number was skipped)."""
    name = "dup-" + uuid.uuid4().hex[:8]
    local, remote = mount.p(sandbox, "work", name), SANDBOX_HOME + "/" + name
    write_synced(local, "old bytes\n")
    assert view.read(remote) == b"old bytes\n"
    sends = uploads_of(view, remote)
    assert len(sends) == 1
    os.unlink(local)
    assert gone(view, remote)
    code, out = view.sh('sh -c "$1"', sends[0])
    assert (code, out) == (0, b"R 0\n")
    assert not view.exists(remote)
    assert name not in os.listdir(mount.p(sandbox, "work"))


def test_a_late_duplicate_send_does_not_write_over_a_large_save(mount, sandbox, view):
    """As above, but the file is then saved above the shared upload's size
    (fs/write under a temporary name, then a copy into place): the late send
    of the small upload leaves the large file's bytes."""
    name = "big-" + uuid.uuid4().hex[:8]
    local, remote = mount.p(sandbox, "work", name), SANDBOX_HOME + "/" + name
    write_synced(local, "small\n")
    sends = uploads_of(view, remote)
    assert len(sends) == 1
    big = "".join("line %07d\n" % i for i in range(200000))
    write_synced(local, big)
    assert view.read(remote) == big.encode()
    code, out = view.sh('sh -c "$1"', sends[0])
    assert (code, out) == (0, b"R 0\n")
    assert view.read(remote) == big.encode()



def test_a_send_of_a_failed_upload_that_runs_after_a_delete_writes_nothing(mount, sandbox, view):
    """A send of an upload ran without writing (here: the upload lock could
    not be opened, a clear error), and the upload failed. The next command of
    the mount carries the fence of its path (vercel_upload_fence); the user
    removes the file; then the failed send runs again, late, once the lock
    is back: it writes nothing, and the file stays gone. Before, it wrote the
    bytes back (the record of a path was written before its bytes, by the
    send itself, and only a greater number was skipped)."""
    name = "fen-" + uuid.uuid4().hex[:8]
    local, remote = mount.p(sandbox, "work", name), SANDBOX_HOME + "/" + name
    write_synced(local, "v0\n")
    assert view.read(remote) == b"v0\n"
    before = set(uploads_of(view, remote))
    code, out = view.sh('mkdir -p "$1" && rm -f "$1/lock" && mkdir "$1/lock"', STATE)
    assert code == 0, out
    try:
        with pytest.raises(OSError) as e:
            write_synced(local, "v1\n")
        assert e.value.errno == errno.EIO
    finally:
        code, out = view.sh('rmdir "$1/lock"', STATE)
        assert code == 0, out
    # the first of the sends since (the close may have sent the bytes again)
    sends = [(int(re.search(r"^w \S+ 3 (\d+) ([0-9a-f]{16}) ([0-9a-f]+) <<", s, re.M).group(1)), s)
             for s in uploads_of(view, remote) if s not in before]
    assert sends
    failed = min(sends)[1]
    seq, key, hexp = re.search(r"^w \S+ 3 (\d+) ([0-9a-f]{16}) ([0-9a-f]+) <<", failed, re.M).groups()
    assert hexp == remote.encode().hex()
    os.unlink(local)
    assert gone(view, remote)
    code, out = view.sh('sh -c "$1"', failed)
    assert not view.exists(remote)
    assert name not in os.listdir(mount.p(sandbox, "work"))
    # R 116 after the fence; R 0 when the close's own send of the kept
    # bytes landed since (a later write of this mount)
    assert code == 0 and (out.startswith(b"R 116 ") or out == b"R 0\n"), out
    # a command after the failure carried the fence of that send's path
    assert any(re.search(r"^g %s %s %s$" % (seq, key, hexp), s, re.M) for s in commands(view))


def test_a_failed_send_of_a_long_upload_leaves_no_script_file(mount, sandbox, view, server):
    """An upload command over the argument limit goes to the sandbox as a
    script file first; its command's request failed (a 502 before it ran)
    and was sent again with a new file. The next command removes the first
    one: nothing of it stays in /tmp/.daytonafs/out (up to a shared upload's
    size for each failed send, before)."""
    from routes import fault_rule
    name = "long-" + uuid.uuid4().hex[:8]
    local, remote = mount.p(sandbox, "work", name), SANDBOX_HOME + "/" + name
    listing = 'ls -1 /tmp/.daytonafs/out 2>/dev/null | grep "^script" || true'
    before = set(view.sh(listing)[1].split())
    data = "".join("line %07d of a file over 96 KiB as base64\n" % i for i in range(4000))
    rule = fault_rule("exec", action="status", status=502, count=1)
    rule["body_match"] = r"/tmp/\.daytonafs/out/script\.[\s\S]*sh \\?\"\$_dff\\?\""
    server.local("POST", "/_local/faults", rule)
    try:
        write_synced(local, data)
        assert [r["injected"] for r in server.local("GET", "/_local/faults")] == [1]
    finally:
        server.local("DELETE", "/_local/faults")
    assert view.read(remote) == data.encode()
    assert set(view.sh(listing)[1].split()) - before == set()


def test_an_unwritable_fence_does_not_lock_the_sandbox_out(mount, sandbox, view):
    """A fence whose record cannot be written (here: a directory in its
    place; in a sandbox, a full disk) does not stop the commands that carry
    it: a listing, an rm (which may be what frees the space) and a ctl exec
    run and answer, and the fence stays, carried by each command, until one
    can write it. Before, every command exited 124 before it ran."""
    from conftest import ctl, read
    work = mount.p(sandbox, "work")
    other = "uf-other-" + uuid.uuid4().hex[:8]
    write_synced(os.path.join(work, other), "x\n")
    ids = set(re.findall(r"^i=([0-9a-f]{16})$", "\n".join(commands(view)), re.M))
    assert len(ids) == 1, ids
    i = ids.pop()
    name = "uf-" + uuid.uuid4().hex[:8]
    local, remote = os.path.join(work, name), SANDBOX_HOME + "/" + name
    rec = "%s/%s-%016x" % (STATE, i, fnv(remote))
    code, out = view.sh('mkdir -p "$1" && rm -f "$1/lock" && mkdir "$1/lock" && mkdir "$2"', STATE, rec)
    assert code == 0, out
    try:
        with pytest.raises(OSError):
            write_synced(local, "v1\n")
    finally:
        code, out = view.sh('rmdir "$1/lock"', STATE)
        assert code == 0, out
    assert other in os.listdir(work)
    os.unlink(os.path.join(work, other))
    assert gone(view, SANDBOX_HOME + "/" + other)
    ctl(mount.p(sandbox, "ctl"), "exec echo hello")
    assert read(mount.p(sandbox, "exit")).strip() == "0"
    assert read(mount.p(sandbox, "stdout")) == "hello\n"
    # the rm and the exec carried the fence, which could not be written
    fence = r"^g \d+ %016x " % fnv(remote)
    assert [bool(re.search(fence, s, re.M)) for s in commands(view) if "echo hello" in s] == [True]
    assert any(re.search(fence, s, re.M) and re.search(r"\brm\b", s) for s in commands(view) if other in s)
    # once it can be, the next command writes it, and the ones after carry none
    code, out = view.sh('rmdir "$1"', rec)
    assert code == 0, out
    ctl(mount.p(sandbox, "ctl"), "exec echo again")
    assert read(mount.p(sandbox, "stdout")) == "again\n"
    code, out = view.sh('cat "$1"', rec)
    assert code == 0 and out.split()[1:] == [i.encode(), remote.encode().hex().encode(), b"F"], out
    ctl(mount.p(sandbox, "ctl"), "exec echo third")
    assert read(mount.p(sandbox, "stdout")) == "third\n"
    assert [bool(re.search(fence, s, re.M)) for s in commands(view) if "echo again" in s] == [True]
    assert [bool(re.search(fence, s, re.M)) for s in commands(view) if "echo third" in s] == [False]
