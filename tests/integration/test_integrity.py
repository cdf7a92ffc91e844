# SPDX-License-Identifier: Apache-2.0
"""Data integrity on the read and upload paths, under faults: no older upload
lands after a newer one, no short read that is not the end of the file, no
upload that lands on another name or nowhere, no silent request cut short.
Each test asserts on content, errno and the server's request log."""
import errno
import json
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from conftest import (API_KEY, PROVIDER, VERCEL_PROJECT, VERCEL_TEAM, create_sandbox, ctl, fail_a_close_keeping_it_open,
                      read, write)


@pytest.fixture
def tdir(mount, sandbox):
    """A fresh directory in the sandbox: (path through the mount, path in the sandbox)."""
    name = "itg-" + uuid.uuid4().hex[:8]
    local = mount.p(sandbox, "fs", "tmp", name)
    os.mkdir(local)
    return local, "/tmp/" + name


@pytest.fixture
def faults(server):
    server.local("DELETE", "/_local/faults")
    yield lambda rule: server.local("POST", "/_local/faults", rule)
    server.local("DELETE", "/_local/faults")


def sandbox_id(mount, sb):
    """Daytona's sandbox id; Vercel's current session id."""
    info = json.loads(read(mount.p(sb, "info")))
    return info["sandbox"]["currentSessionId"] if PROVIDER == "vercel" else info["id"]


def vercel_call(server, sid, endpoint, body):
    q = urllib.parse.urlencode({"teamId": VERCEL_TEAM, "projectId": VERCEL_PROJECT})
    return urllib.request.Request(f"{server.api_url}/v2/sandboxes/sessions/{sid}/{endpoint}?{q}",
                                  data=json.dumps(body).encode(), method="POST",
                                  headers={"Content-Type": "application/json",
                                           "Authorization": "Bearer " + API_KEY})


def in_sandbox(server, sid, path):
    """The file's content read through the provider's file API (not the mount), or None."""
    if PROVIDER == "vercel":
        try:
            with urllib.request.urlopen(vercel_call(server, sid, "fs/read", {"path": path}), timeout=30) as r:
                return r.read()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise
    url = f"{server.base}/toolbox/{sid}/files/download?path={urllib.parse.quote(path, safe='/')}"
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + API_KEY})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def sandbox_names(server, sid, path):
    if PROVIDER == "vercel":
        # no listing call: a command, its names NUL-separated in base64 (the output is UTF-8 text)
        body = {"command": "sh", "args": ["-c", "find \"$1\" -mindepth 1 -maxdepth 1 -printf '%f\\0' | base64 -w0",
                                          "sh", path], "wait": True, "logs": True}
        out = b""
        with urllib.request.urlopen(vercel_call(server, sid, "cmd", body), timeout=60) as r:
            for line in r.read().splitlines():
                o = json.loads(line)
                if o.get("stream") == "stdout":
                    out += o["data"].encode()
        import base64
        return sorted(n.decode() for n in base64.b64decode(out).split(b"\0") if n)
    url = f"{server.base}/toolbox/{sid}/files?path={urllib.parse.quote(path, safe='/')}"
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + API_KEY})
    with urllib.request.urlopen(req, timeout=30) as r:
        return sorted(e["name"] for e in json.loads(r.read()))


def upload_log(server):
    return [e for e in server.local("GET", "/_local/log") if "/files/bulk-upload" in e["path"]]


def close_errno(fd):
    """close(fd): its errno, or 0."""
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


def rewrite(path, data):
    """open(O_TRUNC), write, close: the close's errno, or 0."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    return close_errno(fd)


def unsaved(mount, fragment):
    found = []
    for root, _, files in os.walk(os.path.join(mount.cache, "unsaved")):
        found += [os.path.join(root, fn) for fn in files if fragment in fn]
    return found


# ---- B1: an older upload never lands after a newer one -----------------------------------------

def test_last_chance_upload_never_lands_after_a_newer_write(mount, sandbox, tdir, server, sandbox_faults):
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    p = os.path.join(local, "stale.txt")
    # The close's upload fails (500); the release's last try gets a 429 and waits 2 s.
    uploads = sandbox_faults.counter("upload")
    sandbox_faults.add("upload", status=500, schedule=[True, False])
    sandbox_faults.add("upload", status=429, retry_after=2, schedule=[True])
    server.reset()
    assert rewrite(p, b"OLD version, the longer one\n") == errno.EIO
    time.sleep(0.5)     # the last try is waiting on its Retry-After now
    assert rewrite(p, b"NEW version\n") == 0
    assert in_sandbox(server, sid, spath + "/stale.txt") == b"NEW version\n"
    time.sleep(3)       # past the Retry-After: nothing older lands later
    assert in_sandbox(server, sid, spath + "/stale.txt") == b"NEW version\n"
    assert read(p) == "NEW version\n"
    # the 500, the 429, the old content, the new: nothing sent again
    assert sandbox_faults.hits(uploads) == 4
    if PROVIDER == "daytona":
        # One upload at a time, in order: the old content (longer), then the new.
        ups = [e for e in upload_log(server) if e["status"] == 200]
        assert len(ups) == 2 and ups[0]["bytes_in"] > ups[1]["bytes_in"], ups


def test_failed_last_chance_goes_to_unsaved_and_the_newer_write_wins(mount, sandbox, tdir, server, sandbox_faults):
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    p = os.path.join(local, "lost.txt")
    # close: 500; release's last try: 429 (2 s), then 500: the stage goes to unsaved/.
    sandbox_faults.add("upload", status=500, schedule=[True, False, True])
    sandbox_faults.add("upload", status=429, retry_after=2, schedule=[True])
    old = b"OLD content that could not be saved\n"
    assert rewrite(p, old) == errno.EIO
    time.sleep(0.5)
    # This open joins the file's node and waits for the last try; then it
    # starts afresh and never writes into the copy kept in unsaved/.
    assert rewrite(p, b"NEW\n") == 0
    time.sleep(0.5)
    assert in_sandbox(server, sid, spath + "/lost.txt") == b"NEW\n"
    kept = unsaved(mount, "lost.txt")
    assert len(kept) == 1 and open(kept[0], "rb").read() == old
    assert "lost.txt" in read(mount.p(sandbox, "error"))


def shell_redirect(path, data):
    """What bash does for `echo DATA > path`: open, dup2 the descriptor to 1, close the
    original (a close of the new file while it is still empty), write through the dup, close
    it. The last close's errno, or 0."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    dup = os.dup(fd)
    os.close(fd)
    os.write(dup, data)
    return close_errno(dup)


def test_a_file_open_again_is_not_uploaded_half_written(mount, sandbox, tdir, server):
    # The first close of the redirect queued the empty new file for a
    # deferred upload; the last one uploaded "orig" at once, but the queue
    # kept its entry, and 0.5 s later uploaded whatever was staged: here the
    # append of a descriptor still open, in the sandbox before any close.
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    p = os.path.join(local, "redirected.txt")
    assert shell_redirect(p, b"orig\n") == 0
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"partial\n")
        time.sleep(1.2)
        assert in_sandbox(server, sid, spath + "/redirected.txt") == b"orig\n"
    finally:
        os.close(fd)
    assert in_sandbox(server, sid, spath + "/redirected.txt") == b"orig\npartial\n"


def test_a_redirect_whose_upload_fails_goes_to_unsaved_and_is_not_tried_again(mount, sandbox, tdir, server,
                                                                            sandbox_faults):
    # The same queued entry kept a failed close's data staged and tried to
    # upload it every 2 s for ever (the release left it to the queue): the
    # file was listed although it was not in the sandbox, nothing went to
    # unsaved/, and it landed once the fault cleared, after its close had
    # said it failed.
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    p = os.path.join(local, "refused.txt")
    rule = sandbox_faults.add("upload", status=500)
    assert shell_redirect(p, b"refused\n") == errno.EIO
    time.sleep(1.0)
    kept = unsaved(mount, "refused.txt")
    assert len(kept) == 1 and open(kept[0], "rb").read() == b"refused\n"
    tries = sandbox_faults.injected(rule)
    time.sleep(3.0)
    assert sandbox_faults.injected(rule) == tries
    sandbox_faults.clear()
    time.sleep(2.5)
    assert in_sandbox(server, sid, spath + "/refused.txt") is None
    assert "refused.txt" not in os.listdir(local)


@pytest.mark.parametrize("cut", ["open O_TRUNC", "truncate"])
def test_a_failed_close_whose_release_has_not_come_keeps_its_data_from_a_truncation(mount, sandbox, tdir, server,
                                                                                    sandbox_faults, cut):
    """The kernel sends a close's release after close(2) returned, and a save that follows at
    once can reach the mount first: it found the file's node still open, and its truncation
    cut the failed close's data, which the release would have uploaded or kept (the fault
    soak, 4,000 operations: neither in the sandbox nor in unsaved/). Here a dup keeps the
    release from coming at all, as a release not yet sent does; the data goes to unsaved/."""
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    name = f"cut-{cut.split()[0]}.txt"
    p = os.path.join(local, name)
    failed = b"the failed close's content, longer than what follows\n"
    uploads = sandbox_faults.counter("upload")
    keep = fail_a_close_keeping_it_open(p, failed, sandbox_faults)
    try:
        if cut == "truncate":
            os.truncate(p, 10)    # the first 10 bytes stay, and go up
            want = failed[:10]
        else:
            # and the next save's own data is not kept too when it truncates before its close
            nfd = os.open(p, os.O_WRONLY | os.O_TRUNC)
            os.write(nfd, b"the next save\n and more")
            os.ftruncate(nfd, 14)
            os.close(nfd)
            want = b"the next save\n"
        assert in_sandbox(server, sid, f"{spath}/{name}") == want
        kept = unsaved(mount, name)
        assert len(kept) == 1 and open(kept[0], "rb").read() == failed
        assert name in read(mount.p(sandbox, "error"))
    finally:
        os.close(keep)
    assert read(p, "rb") == want
    assert in_sandbox(server, sid, f"{spath}/{name}") == want
    assert sandbox_faults.hits(uploads) == 2   # the failed one, the save's


def test_a_failed_close_whose_release_has_not_come_keeps_its_data_from_a_rename_over_it(mount, sandbox, tdir,
                                                                                      server, sandbox_faults):
    """As above, with the save an editor's: a new file renamed over the file whose close
    failed. Had the release come first, its last-chance upload would have put the data in the
    sandbox before the rename replaced it; when the rename came first, the data was dropped
    with the replaced file. It goes to unsaved/ either way."""
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    p = os.path.join(local, "renamed-over.txt")
    failed = b"the failed close's content\n"
    keep = fail_a_close_keeping_it_open(p, failed, sandbox_faults)
    try:
        write(p + ".new", "the editor's save\n")
        os.rename(p + ".new", p)
        assert in_sandbox(server, sid, f"{spath}/renamed-over.txt") == b"the editor's save\n"
        kept = unsaved(mount, "renamed-over.txt")
        assert len(kept) == 1 and open(kept[0], "rb").read() == failed
        assert "renamed-over.txt" in read(mount.p(sandbox, "error"))
    finally:
        os.close(keep)
    assert read(p) == "the editor's save\n"
    assert in_sandbox(server, sid, f"{spath}/renamed-over.txt") == b"the editor's save\n"
    assert len(unsaved(mount, "renamed-over.txt")) == 1


@pytest.fixture(scope="module")
def nocache_mount(server, tmp_root):
    """A mount whose kernel caches no name (attr_timeout=0: the entry timeout is 0 too),
    so each open of a path looks it up, whatever the timing."""
    from conftest import Mount
    m = Mount(server, tmp_root, ["attr_timeout=0"], name="lcmnt")
    yield m
    m.unmount()


def test_lookup_during_a_failed_last_chance_never_answers_a_file_without_a_type(nocache_mount, sandbox, server,
                                                                                 sandbox_faults):
    """A lookup that waits for a new file's last-chance upload, which then fails, answers
    the sandbox's file: it once answered attributes of all zeros (no file type), which the
    kernel rejects, and the open behind it got EIO."""
    m = nocache_mount
    name = "itg-" + uuid.uuid4().hex[:8]
    d = m.p(sandbox, "fs", "tmp", name)
    os.mkdir(d)
    # The directory stays open: the kernel keeps its node and its parents', so that no
    # forget waits (in libfuse) for the release's path, blocking the lookup behind it.
    dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        p = os.path.join(d, "lost.txt")
        # close: 500; release's last try: 429 (2 s), then 500: the stage goes to unsaved/.
        sandbox_faults.add("upload", status=500, schedule=[True, False, True])
        sandbox_faults.add("upload", status=429, retry_after=2, schedule=[True])
        old = b"OLD content that could not be saved\n"
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, old)
        # The kernel keeps a name whose entry timeout (0) has not yet passed (a clock
        # tick): past it, the close's last reference drops the name, and the next open
        # looks it up afresh (a revalidation instead would take the bad answer for a
        # changed file and look the name up once more, after the release).
        time.sleep(0.1)
        with pytest.raises(OSError) as e:
            os.close(fd)
        assert e.value.errno == errno.EIO
        time.sleep(0.5)
        # This open's lookup reaches the mount while the release holds the node for its
        # last try, and waits for it.
        assert rewrite(p, b"NEW\n") == 0
        assert read(p) == "NEW\n"
        assert in_sandbox(server, sandbox_id(m, sandbox), "/tmp/" + name + "/lost.txt") == b"NEW\n"
        kept = unsaved(m, "lost.txt")
        assert len(kept) == 1 and open(kept[0], "rb").read() == old
    finally:
        os.close(dfd)


@pytest.fixture
def fresh_mount(server, tmp_root):
    """A mount of the test's own whose libfuse keeps one idle thread at most (libfuse's
    max_idle_threads; 10 by default): the one that takes a forget is then the only one
    left to read requests, whatever threads earlier bursts of requests started."""
    from conftest import Mount
    m = Mount(server, tmp_root, ["max_idle_threads=1"], name="fgmnt")
    yield m
    m.unmount()


def test_a_slow_last_chance_upload_never_stalls_the_mount(fresh_mount, sandbox, server, sandbox_faults):
    """While a release's last-chance upload waits (a 429's Retry-After), the kernel forgets
    the file's directory (drop_caches): requests elsewhere in the mount are answered, not
    held until the upload ends. The release once held the file's path locked in libfuse
    (with its directory and every parent); the forget of the directory waited for that
    lock in the one thread left reading requests, and libfuse counts a thread in a forget
    as idle, so it started no other: ls anywhere waited for the upload."""
    m = fresh_mount
    sid = sandbox_id(m, sandbox)
    name = "itg-" + uuid.uuid4().hex[:8]
    d = m.p(sandbox, "fs", "tmp", name)
    os.mkdir(d)
    p = os.path.join(d, "slow.txt")
    # close: 500; release's last try: 429, which it waits out (8 s), then succeeds.
    uploads = sandbox_faults.counter("upload")
    sandbox_faults.add("upload", status=500, schedule=[True])
    sandbox_faults.add("upload", status=429, retry_after=8, schedule=[True])
    data = b"the last-chance upload's content\n"
    assert rewrite(p, data) == errno.EIO
    deadline = time.time() + 5
    while sandbox_faults.hits(uploads) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert sandbox_faults.hits(uploads) == 2     # the release waits on its Retry-After now
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")     # the kernel forgets the directory (and its parents)
    answered = []

    def elsewhere():
        answered.append(sorted(os.listdir(m.p(sandbox))))
        answered.append(os.stat(m.p(sandbox, "info")).st_size)
    t = threading.Thread(target=elsewhere, daemon=True)
    t.start()
    t.join(30)      # bounds the test; the stall lasted as long as the upload waited
    assert len(answered) == 2 and "info" in answered[0]
    # answered before the upload ended: the file is not in the sandbox yet
    assert in_sandbox(server, sid, "/tmp/" + name + "/slow.txt") is None
    assert sandbox_faults.hits(uploads) == 2
    # and the upload lands, once, with the content
    deadline = time.time() + 30
    while in_sandbox(server, sid, "/tmp/" + name + "/slow.txt") is None and time.time() < deadline:
        time.sleep(0.2)
    assert in_sandbox(server, sid, "/tmp/" + name + "/slow.txt") == data
    assert read(p, "rb") == data
    assert sandbox_faults.hits(uploads) == 3


def failed_close_whose_release_waits(m, sandbox, sandbox_faults, name):
    """a.txt's close fails (500) while every thread that runs releases is busy (16 closes of
    commands' stdin, each held 5 s at the sandbox before it runs): its release, with its
    last-chance upload, waits in the queue, and has not taken the file's lock yet. Returns
    (a.txt's path, the upload counter, the commands: end_commands ends them).

    Held, not slowed: a slowed close has run, and the mount's next poll sees its stdin.eof and
    frees the thread at once (CI saw a.txt's release run before the check below). And the
    16 closes are at the sandbox before a.txt is written: close(2) returns before the kernel's
    release reaches a thread of the mount, and libfuse may take a.txt's first."""
    d = m.p(sandbox, "fs", "tmp", name)
    os.mkdir(d)
    a = os.path.join(d, "a.txt")
    write(a, "a's first content\n")
    cmds = []
    for _ in range(16):
        ctl(m.p(sandbox, "ctl"), "exec sleep 120")
        cmds.append(m.p(sandbox, "cmd", os.readlink(m.p(sandbox, "cmd", "last"))))
    fds = [os.open(os.path.join(c, "stdin"), os.O_WRONLY) for c in cmds]
    closes = sandbox_faults.add("execute", action="hold", seconds=5, body_match="stdin.eof")
    for fd in fds:
        os.close(fd)
    deadline = time.time() + 4
    while sandbox_faults.hits(closes) < 16 and time.time() < deadline:
        time.sleep(0.02)
    assert sandbox_faults.hits(closes) == 16
    uploads = sandbox_faults.counter("upload")
    sandbox_faults.add("upload", status=500, schedule=[True])
    assert rewrite(a, b"the failed close's content\n") == errno.EIO
    assert sandbox_faults.hits(uploads) == 1     # the release waits for a thread
    return a, uploads, cmds


def end_commands(m, sandbox, cmds, server):
    """Kills the commands that kept the release threads busy and waits until the mount sends
    no more requests for them (their slowed stdin closes, polls): a later test that counts
    the server's requests would count those."""
    for c in cmds:
        ctl(m.p(sandbox, "ctl"), "kill " + os.path.basename(c))
    deadline = time.time() + 60
    last, still = server.count(), 0
    while still < 3 and time.time() < deadline:
        time.sleep(1)
        now = server.count()
        still = still + 1 if now == last else 0
        last = now


@pytest.fixture
def own_mount(server, tmp_root):
    """A mount of the test's own: its unmount waits for the releases left on its threads, so
    nothing it still sends (slowed stdin closes) reaches a later test's request counts."""
    from conftest import Mount
    m = Mount(server, tmp_root, name="relmnt")
    yield m
    m.unmount()


def test_a_rename_over_a_file_whose_release_waits_is_not_undone_by_it(own_mount, sandbox, server, sandbox_faults):
    """Releases left libfuse's thread (a slow one stalled the mount), and with them libfuse's
    hold on the path: a rename onto the file went ahead, and the release's upload of the older
    content landed after the move, over the file renamed there. The rename waits for it."""
    mount = own_mount
    sid = sandbox_id(mount, sandbox)
    name = "itg-" + uuid.uuid4().hex[:8]
    a, uploads, cmds = failed_close_whose_release_waits(mount, sandbox, sandbox_faults, name)
    b = os.path.join(os.path.dirname(a), "b.txt")
    write(b, "b's content, renamed over a\n")
    os.rename(b, a)
    # The release's upload (after the failed close's and b's): before the rename ends, or,
    # when the rename went ahead, once a thread is free (the closes are held 5 s); then a
    # second for it to land.
    deadline = time.time() + 30
    while sandbox_faults.hits(uploads) < 3 and time.time() < deadline:
        time.sleep(0.1)
    assert sandbox_faults.hits(uploads) == 3
    time.sleep(1)
    assert in_sandbox(server, sid, f"/tmp/{name}/a.txt") == b"b's content, renamed over a\n"
    assert read(a) == "b's content, renamed over a\n"
    assert not os.path.exists(b)
    end_commands(mount, sandbox, cmds, server)


def test_an_o_trunc_open_after_a_failed_close_waits_for_its_release(own_mount, sandbox, server, sandbox_faults):
    """The data of a close that failed is sent by its release or kept in unsaved/: an O_TRUNC
    open while that release waited on a thread took the node and truncated the data away
    (test_faults_soak: neither in the sandbox nor in unsaved/)."""
    mount = own_mount
    sid = sandbox_id(mount, sandbox)
    name = "itg-" + uuid.uuid4().hex[:8]
    a, uploads, cmds = failed_close_whose_release_waits(mount, sandbox, sandbox_faults, name)
    assert rewrite(a, b"the next save\n") == 0
    # the release's upload of the failed close's content, then the save's
    assert sandbox_faults.hits(uploads) == 3
    assert in_sandbox(server, sid, f"/tmp/{name}/a.txt") == b"the next save\n"
    assert unsaved(mount, "a.txt") == []
    end_commands(mount, sandbox, cmds, server)


# ---- B2: no short read that is not the end of the file ------------------------------------------

def make_remote_file(mount, sandbox, spath, size):
    """Writes a random file in the sandbox by a command: the mount never had its content."""
    ctl(mount.p(sandbox, "ctl"), f"exec head -c {size} /dev/urandom > {spath}")
    d = mount.p(sandbox, "cmd", os.readlink(mount.p(sandbox, "cmd", "last")))
    assert read(os.path.join(d, "exit")) == "0\n"


@pytest.mark.parametrize("resume_fault", [500, "drop"])
def test_reset_stream_whose_resume_fails_is_never_a_short_read(mount, sandbox, tdir, server, sandbox_faults,
                                                               resume_fault):
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    name = f"trunc-{resume_fault}.bin"
    make_remote_file(mount, sandbox, f"{spath}/{name}", 2_000_000)
    want = in_sandbox(server, sid, f"{spath}/{name}")
    # this file's downloads only (Vercel names the file in the body)
    this = {"pattern": ".*" + name} if PROVIDER == "daytona" else {"body_match": name}
    # 1st download (the stream, from the first read of cat's large reads): reset
    # after half its body; 2nd (its resume): fails; 3rd: ok; 4th: reset again.
    sandbox_faults.add("download", action="reset_mid_body", schedule=[True, False, False, True], **this)
    if resume_fault == "drop":
        sandbox_faults.add("download", action="drop", schedule=[True, False], **this)
    else:
        sandbox_faults.add("download", status=500, schedule=[True, False], **this)
    # cat prints the whole file or fails: never a truncated copy with exit 0.
    try:
        with open(os.path.join(local, name), "rb") as f:
            got = f.read()
    except OSError as e:
        got = e
    assert isinstance(got, OSError) or got == want, f"{len(got)} bytes of {len(want)}, and no error"
    assert got == want      # here the later requests work: the whole file
    assert sandbox_faults.injected() >= 2, server.local("GET", "/_local/faults")


# ---- B3/D2: a name with white space at its end is written under its own name -------------------

SPACES = [" ", "\t", "\n", "\r", "\v", "\f", "\u0085", "\u00a0", "\u2003", "\u3000", "  "]


def test_trailing_white_space_names_are_their_own_files(mount, sandbox, tdir, server):
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    write(os.path.join(local, "victim.txt"), "original A\n")
    for i, ws in enumerate(SPACES):
        write(os.path.join(local, "victim.txt" + ws), f"other {i}\n")
    # The victim is untouched, and each file exists under its exact name.
    assert in_sandbox(server, sid, spath + "/victim.txt") == b"original A\n"
    for i, ws in enumerate(SPACES):
        assert in_sandbox(server, sid, spath + "/victim.txt" + ws) == f"other {i}\n".encode(), repr(ws)
    names = sandbox_names(server, sid, spath)
    assert sorted(names) == sorted(["victim.txt"] + ["victim.txt" + ws for ws in SPACES])
    assert not any(".daytonafs-upload" in n for n in names)   # no temporary left


def test_trailing_space_rewrite_keeps_mode_and_reads_back(mount, sandbox, tdir, server):
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    p = os.path.join(local, "run.sh ")
    write(p, "#!/bin/sh\necho one\n")
    os.chmod(p, 0o755)
    write(p, "#!/bin/sh\necho two\n")      # over the existing file: in place, mode kept
    mount.settle()
    assert in_sandbox(server, sid, spath + "/run.sh ") == b"#!/bin/sh\necho two\n"
    assert in_sandbox(server, sid, spath + "/run.sh") is None
    assert os.stat(p).st_mode & 0o7777 == 0o755
    with open(p, "a") as f:                 # append: the content is downloaded and extended
        f.write("echo three\n")
    assert in_sandbox(server, sid, spath + "/run.sh ") == b"#!/bin/sh\necho two\necho three\n"


def test_a_rewrite_through_a_temporary_file_in_a_directory_the_user_may_not_write(mount, sandbox, tdir, server):
    """A file the user may write in a directory they may not (chmod 555):
    an upload that goes through a temporary file (a name with white space
    at its end; on Vercel every file over 1 MiB) made it in that directory,
    which refused it: the close failed with EACCES, though cp or vim in the
    sandbox rewrite such a file. It is made in the mount's own directory
    then (STATE_DIR/out, /tmp/.daytonafs/out)."""
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    ro = os.path.join(local, "ro")
    os.mkdir(ro)
    p = os.path.join(ro, "big ")
    write(p, "first\n")
    os.chmod(p, 0o640)
    os.chmod(ro, 0o555)
    try:
        data = os.urandom(2 << 20)
        write(p, data, "wb")
        mount.settle()
        assert in_sandbox(server, sid, spath + "/ro/big ") == data
        assert in_sandbox(server, sid, spath + "/ro/big") is None
        assert sandbox_names(server, sid, spath + "/ro") == ["big "]
        assert os.stat(p).st_mode & 0o7777 == 0o640
        for d in ("/tmp", "/tmp/.daytonafs/out"):
            try:
                names = sandbox_names(server, sid, d)
            except urllib.error.HTTPError as e:
                assert e.code == 404 and d != "/tmp"      # (Daytona: never made there)
                names = []
            assert not [n for n in names or [] if n.startswith(".daytonafs-upload")]
    finally:
        os.chmod(ro, 0o755)


def test_a_failed_copy_into_a_white_space_name_leaves_no_temporary_file(mount, sandbox, tdir, server, sandbox_faults):
    """The copy command's request fails: the temporary upload is deleted, not
    left in the user's directory (a full copy each try)."""
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    f = open(os.path.join(local, "notes "), "w")
    f.write("x\n")
    mount.settle()
    # the copy into place: Daytona's command after its upload; on Vercel the upload's own
    copy = "execute" if PROVIDER == "daytona" else "upload"
    copies = sandbox_faults.counter(copy)
    sandbox_faults.add(copy, status=400, count=1)
    with pytest.raises(OSError):
        f.close()
    mount.settle()
    # the release's retry then copies it into place (the deadline only bounds a failure)
    deadline = time.time() + 30
    while sandbox_faults.hits(copies) < 2 or in_sandbox(server, sid, spath + "/notes ") != b"x\n":
        assert time.time() < deadline, "the retried copy never ran"
        time.sleep(0.1)
    assert in_sandbox(server, sid, spath + "/notes ") == b"x\n"
    assert in_sandbox(server, sid, spath + "/notes") is None
    assert not [n for n in sandbox_names(server, sid, spath) if n.startswith(".daytonafs-upload")]


@pytest.mark.provider("daytona", reason="falls back to Daytona's file API (listings, uploads) when commands fail; "
                     "on Vercel, whose file API has no listing, no command means no directory to write in")
def test_a_white_space_name_is_refused_when_the_sandbox_runs_no_commands(mount, server, faults):
    """Without commands the copy into place cannot run: the close gets an
    errno, and no upload is sent (the file API would trim the name)."""
    sb = create_sandbox(mount, "nosh")
    try:
        # every command answers "no shell": listings fall back to the file API
        faults({"pattern": "/process/execute", "status": 200,
                "body": {"exitCode": 127, "result": "sh: not found"}})
        d = mount.p(sb, "fs", "tmp")
        assert "notes " not in os.listdir(d)
        server.reset()
        with pytest.raises(OSError) as e:
            write(os.path.join(d, "notes "), "x\n")
        assert e.value.errno == errno.EOPNOTSUPP
        assert server.count("/files/bulk-upload", "POST") == 0
        assert server.count("/files/upload", "POST") == 0
    finally:
        server.local("DELETE", "/_local/faults")
        ctl(mount.p(sb, "ctl"), "delete")


@pytest.mark.provider("daytona", reason="Daytona's bulk-upload answer names the paths it wrote; Vercel's upload "
                     "command answers a line per file, in order, with no path")
def test_upload_answer_naming_another_path_is_an_error(mount, sandbox, tdir, server, faults):
    local, spath = tdir
    # The daemon answers with the path it wrote: another one is a failure.
    faults({"pattern": "/files/bulk-upload", "status": 200, "count": 2,
            "body": {"files": [{"path": spath + "/elsewhere", "bytes": 4}]}})
    assert rewrite(os.path.join(local, "named.txt"), b"data") == errno.EIO


# ---- D3: a name the daemon's multipart parser would reject is written, not dropped ---------------

def test_backslash_name_is_written(mount, sandbox, tdir, server):
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    for name in ["back\\", "a\\b\\", "quote\"", "semi;"]:
        write(os.path.join(local, name), name + "\n")
        assert in_sandbox(server, sid, spath + "/" + name) == (name + "\n").encode()


@pytest.mark.provider("daytona", reason="Daytona's multipart parser drops a part and answers 200 without it; "
                     "Vercel's upload is a command whose output says per file what happened")
def test_upload_answer_without_the_file_is_an_error(mount, sandbox, tdir, server, faults):
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    # What the daemon answers when its parser dropped the part: 200, no file.
    faults({"pattern": "/files/bulk-upload", "status": 200, "body": {"files": None}, "count": 1})
    p = os.path.join(local, "dropped\\")
    assert rewrite(p, b"data\n") == errno.EIO
    # The release's last try then writes it.
    mount.settle()
    assert in_sandbox(server, sid, spath + "/dropped\\") == b"data\n"


# ---- a rename whose upload of the open source fails keeps the data staged ------------------------

def test_rename_whose_flush_fails_keeps_the_data_for_close(mount, sandbox, tdir, server, sandbox_faults):
    """rename(2) of a file with staged writes uploads it first. When that
    upload fails, the rename fails, and the data must stay staged: the
    file's own close uploads it (or reports an error), never returns 0 with
    the data dropped."""
    local, spath = tdir
    sid = sandbox_id(mount, sandbox)
    src = os.path.join(local, "staged.txt")
    fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, b"first\n")
        os.fsync(fd)
        os.write(fd, b"second\n")
        mount.settle()    # no other upload may meet the fault
        sandbox_faults.add("upload", status=400, count=1)
        with pytest.raises(OSError):
            os.rename(src, os.path.join(local, "moved.txt"))
        sandbox_faults.clear()
    finally:
        os.close(fd)      # uploads what the failed rename could not
    assert in_sandbox(server, sid, spath + "/staged.txt") == b"first\nsecond\n"
    assert in_sandbox(server, sid, spath + "/moved.txt") is None


# ---- a change by command whose answer was lost is not hidden by the cache -----------------------

def test_mkdir_whose_answer_was_lost_is_seen(mount, sandbox, tdir, server, sandbox_faults):
    """mkdir runs a command; when its answer is cut, the directory may exist
    all the same. The next mkdir says EEXIST, and the directory must then be
    usable at once, not hidden for the cache's lifetime by what the mount
    believed before."""
    local, spath = tdir
    os.listdir(local)                       # a fresh listing of the parent, without "sub"
    sub = os.path.join(local, "sub")
    mount.settle()
    sandbox_faults.add("execute", action="reset_mid_body", count=1, body_match="mkdir -m")
    with pytest.raises(OSError):
        os.mkdir(sub)
    assert sandbox_faults.injected() == 1
    sandbox_faults.clear()
    with pytest.raises(FileExistsError):
        os.mkdir(sub)
    assert os.path.isdir(sub)
    write(os.path.join(sub, "f"), "in sub\n")
    assert read(os.path.join(sub, "f")) == "in sub\n"


# ---- a rename whose answer was lost, but which was done, succeeds ---------------------------------

def test_rename_over_whose_answer_was_lost_succeeds_and_reads_whole(mount, sandbox, tdir, server, faults):
    """Found by the soak test at 30 % faults: rename(2) over a file, whose
    command ran but whose answer was cut, failed; the kernel kept the old
    file's inode, with its size, under the name, and a read of the name gave
    the first bytes of the new file as if they were all of it. The mount now
    asks the sandbox after such a failure: the rename was done, so it
    succeeds, and the name reads whole."""
    local, spath = tdir
    old, new = os.path.join(local, "doc.txt"), os.path.join(local, "doc.txt.new")
    write(old, "short\n")
    body = "".join("line %05d of the new version\n" % i for i in range(4000))
    write(new, body)
    assert os.stat(old).st_size == 6          # the kernel holds the old size
    mount.settle()
    faults({"pattern": "/process/execute", "action": "reset_mid_body", "count": 1})
    os.rename(new, old)
    server.local("DELETE", "/_local/faults")
    assert read(old) == body
    assert not os.path.exists(new)


# ---- D6: a silent long request is not cut by the stall limit ------------------------------------

def test_silent_stdin_batch_outlives_the_stall_limit(server, tmp_root, sandbox):
    from conftest import Mount
    m = Mount(server, tmp_root, ["timeout=2", "retries=0"], name="silentmnt")
    try:
        # The command reads nothing for 10 s: a batch bigger than the pipe
        # waits in the sandbox, and its request is silent, past -o timeout.
        ctl(m.p(sandbox, "ctl"), "exec sleep 10; wc -c")
        d = m.p(sandbox, "cmd", os.readlink(m.p(sandbox, "cmd", "last")))
        data = os.urandom(300 * 1024)
        fd = os.open(os.path.join(d, "stdin"), os.O_WRONLY)
        try:
            n = os.write(fd, data)
        finally:
            os.close(fd)
        assert n == len(data)
        assert read(os.path.join(d, "exit")) == "0\n"
        assert read(os.path.join(d, "stdout")).strip() == str(len(data))
    finally:
        m.unmount()
