# SPDX-License-Identifier: Apache-2.0
"""Crash safety (doc/SEMANTICS.md, "Crashes"): a mount killed with SIGKILL while
files are staged loses nothing. The next mount on the same cache directory
uploads what a close or fsync had asked for when the sandbox's file is still
the one the dead mount read, and keeps everything else in CACHE_DIR/unsaved/
with a note saying where it came from and why it was not uploaded."""
import errno
import hashlib
import os
import signal
import subprocess
import threading
import time
import uuid

import pytest

from conftest import (API_KEY, LIVE_MOUNTS, PROVIDER, SANDBOX_HOME, VERCEL_PROJECT, VERCEL_TEAM, Mount, Server,
                      create_sandbox, ctl, fail_a_close_keeping_it_open, read)
from sandbox_view import Faults, SandboxView

HOME = SANDBOX_HOME


def kill_mount(m):
    """SIGKILL, as the OOM killer does; then the lazy unmount a user does of a dead mount."""
    os.kill(m.proc.pid, signal.SIGKILL)
    m.proc.wait(30)
    subprocess.run(["fusermount3", "-u", "-z", m.path], check=False)
    if m in LIVE_MOUNTS:
        LIVE_MOUNTS.remove(m)
    m.log.close()


def wait_for(cond, what, limit=60):
    """Polls cond until it returns something true (the deadline only bounds a failure)."""
    deadline = time.time() + limit
    while True:
        got = cond()
        if got:
            return got
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def unsaved(m, fragment):
    """(data file, note text) pairs in m's unsaved/ whose name holds fragment.
    Recovery moves the data in, then writes its note: a data file whose note
    is not complete yet (it ends with a newline) is not listed yet."""
    d = os.path.join(m.cache, "unsaved")
    out = []
    for name in sorted(os.listdir(d)):
        if fragment in name and not name.endswith(".note"):
            note = os.path.join(d, name + ".note")
            text = read(note) if os.path.exists(note) else None
            if text is None or not text.endswith("\n"):
                continue
            out.append((os.path.join(d, name), text))
    return out


def faults_injected(server):
    return sum(f["injected"] for f in server.local("GET", "/_local/faults"))


@pytest.fixture
def crashy(server, tmp_root):
    """A mount of its own (it gets killed), a sandbox on it, and the sandbox's file API."""
    name = "crash-" + uuid.uuid4().hex[:6]
    m = Mount(server, tmp_root, name=name)
    sb = create_sandbox(m, "c")
    yield m, sb, SandboxView(server, sb)
    server.local("DELETE", "/_local/faults")
    for live in [x for x in LIVE_MOUNTS if x.path == m.path]:
        live.unmount()


def crash_after_a_failed_close(server, m, p, text, keep_mode="w"):
    """Writes text to p through the mount m; its upload at close fails (a 500)
    while another descriptor keeps p open, so the upload stays pending; then
    the mount is killed, and the fault lifted. p is staged and its journal
    asks for the upload. Returns the errno close gave."""
    Faults(server).add("upload", status=500)
    keep = open(p, keep_mode)   # "r" for a file that is there: not truncated
    f = open(p, "w")
    f.write(text)
    with pytest.raises(OSError) as e:
        f.close()
    kill_mount(m)
    try:
        keep.close()
    except OSError:
        pass
    server.local("DELETE", "/_local/faults")
    return e.value.errno


def remount(server, tmp_root, m):
    return Mount(server, tmp_root, name=os.path.basename(m.path))


def crash_over_a_file_read_as_version_1(server, crashy, name, text="from the dead mount\n"):
    """NAME holds "version 1" in the sandbox and is read through the mount;
    then text is written over it, whose upload at close fails, and the mount
    is killed: the record is of a file the dead mount read (size, mtime)."""
    m, sb, tb = crashy
    p = m.p(sb, "work", name)
    tb.upload(f"{HOME}/{name}", b"version 1\n")
    assert read(p) == "version 1\n"
    crash_after_a_failed_close(server, m, p, text, keep_mode="r")


def slow_recovery_question(server, tb):
    """Recovery's question about the sandbox (its GET) is answered slowly."""
    server.local("POST", "/_local/faults", {"pattern": tb.get_route(), "method": "GET",
                                            "action": "slow", "bytes_per_sec": 200, "count": 1})


def test_kill_during_large_write_keeps_the_data_in_unsaved(crashy, server, tmp_root):
    m, sb, tb = crashy
    chunk = os.urandom(1 << 20)
    data_len = 24 << 20
    big = m.p(sb, "work", "big.bin")
    gone = m.p(sb, "work", "gone.txt")
    f = open(big, "wb")
    for _ in range(data_len // len(chunk)):
        f.write(chunk)
    f.flush()   # into the mount, not closed: no close promised anything
    # A staged file unlinked before the crash: its journal entry goes with it.
    g = open(gone, "w")
    g.write("deleted before the crash\n")
    g.flush()
    os.unlink(gone)
    kill_mount(m)
    for h in (f, g):
        try:
            h.close()
        except OSError:
            pass
    m2 = remount(server, tmp_root, m)
    kept = wait_for(lambda: unsaved(m2, "big.bin"), "big.bin in unsaved/")
    assert len(kept) == 1
    path, note = kept[0]
    with open(path, "rb") as k:
        assert hashlib.sha256(k.read()).hexdigest() == hashlib.sha256(chunk * (data_len // len(chunk))).hexdigest()
    assert note is not None
    assert f"sandbox: {sb} (id {tb.id})" in note
    assert f"path: {HOME}/big.bin" in note
    assert "never closed" in note
    # A file that was never closed is not uploaded: it may be incomplete.
    assert tb.download(f"{HOME}/big.bin") is None
    assert unsaved(m2, "gone.txt") == []
    # recovery removes a record after the upload or the move to unsaved/ that it waited for
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")


def test_kill_while_close_waits_for_its_upload_uploads_it_at_the_next_mount(crashy, server, tmp_root):
    m, sb, tb = crashy
    data = b"closed, upload in flight\n" * 1000
    p = m.p(sb, "work", "inflight.txt")
    # Every upload is refused with a long Retry-After: close waits in its upload.
    Faults(server).add("upload", status=503, retry_after=30)
    result = {}

    def writer():
        try:
            with open(p, "wb") as f:
                f.write(data)
            result["ok"] = True
        except OSError as e:
            result["errno"] = e.errno

    t = threading.Thread(target=writer)
    t.start()
    wait_for(lambda: faults_injected(server) >= 1, "the upload at close")
    kill_mount(m)
    t.join(30)
    assert "ok" not in result   # close never said it was done
    server.local("DELETE", "/_local/faults")
    assert tb.download(f"{HOME}/inflight.txt") is None
    uploads = Faults(server).counter("upload")
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: tb.download(f"{HOME}/inflight.txt") == data, "the recovered upload")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert unsaved(m2, "inflight.txt") == []
    assert Faults(server).hits(uploads) == 1
    # The new mount shows it too.
    assert read(m2.p(sb, "work", "inflight.txt"), "rb") == data


def test_kill_after_a_failed_upload_at_close_uploads_it_at_the_next_mount(crashy, server, tmp_root):
    m, sb, tb = crashy
    p = m.p(sb, "work", "pending.txt")
    assert crash_after_a_failed_close(server, m, p, "close failed, still pending\n") == errno.EIO
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: tb.download(f"{HOME}/pending.txt") == b"close failed, still pending\n",
             "the recovered upload")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert unsaved(m2, "pending.txt") == []


def test_recovery_of_a_name_with_white_space_at_its_end_never_lands_on_the_trimmed_name(crashy, server, tmp_root):
    """The toolbox trims an upload's path: recovery uploads "notes " under a
    temporary name and copies it into place, as a close does."""
    m, sb, tb = crashy
    tb.upload(f"{HOME}/notes", b"the other file\n")
    p = m.p(sb, "work", "notes ")
    crash_after_a_failed_close(server, m, p, "staged for notes-space\n")
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert tb.download(f"{HOME}/notes") == b"the other file\n"
    assert read(m2.p(sb, "work", "notes ")) == "staged for notes-space\n"
    assert not [n for n in os.listdir(m2.p(sb, "work")) if n.startswith(".daytonafs-upload")]
    assert unsaved(m2, "notes") == []


@pytest.fixture
def crashy_d10(tmp_root):
    if PROVIDER != "daytona":
        pytest.skip("daytona only: Daytona's toolboxProxyUrl; a Vercel session has no address of its own")
    """crashy, on a server of its own whose Sandbox objects carry an empty toolboxProxyUrl (D10)."""
    tmp = os.path.join(tmp_root, "d10-" + uuid.uuid4().hex[:6])
    os.makedirs(tmp)
    server = Server(tmp, ["--empty-toolbox-url"])
    m = Mount(server, tmp, name="crash")
    sb = create_sandbox(m, "c")
    sid = server.api("GET", f"/sandbox/{sb}")["id"]
    yield server, tmp, m, sb, SandboxView(server, sb), sid
    for live in [x for x in LIVE_MOUNTS if x.path == m.path]:
        live.unmount()
    server.stop()


def test_recovery_asks_for_the_toolbox_address_when_the_sandbox_gives_none(crashy_d10):
    server, tmp, m, sb, tb, sid = crashy_d10
    p = m.p(sb, "work", "pending.txt")
    crash_after_a_failed_close(server, m, p, "close failed, still pending\n")
    asked = server.count("/toolbox-proxy-url", "GET")
    m2 = remount(server, tmp, m)
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied", limit=20)
    assert tb.download(f"{HOME}/pending.txt") == b"close failed, still pending\n"
    assert server.count("/toolbox-proxy-url", "GET") > asked
    assert unsaved(m2, "pending.txt") == []


def test_an_existing_file_unchanged_in_the_sandbox_is_uploaded_over(crashy, server, tmp_root):
    m, sb, tb = crashy
    p = m.p(sb, "work", "edit.txt")
    tb.upload(f"{HOME}/edit.txt", b"version 1\n")   # there before the mount read it
    assert read(p) == "version 1\n"
    crash_after_a_failed_close(server, m, p, "version 2, from the dead mount\n", keep_mode="r")
    # Same size and mtime as when the dead mount read it: the upload is safe.
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: tb.download(f"{HOME}/edit.txt") == b"version 2, from the dead mount\n",
             "the recovered upload")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert unsaved(m2, "edit.txt") == []


def test_a_kill_before_a_new_files_queued_move_into_place_uploads_it(crashy, server, tmp_root):
    # rm f; a new f written and closed: its upload went to a temporary name
    # and a queued mv (after the queued rm) puts it in place. A kill before
    # that batch runs must not leave the data only under the temporary
    # name: a crash copy with its own record makes the next mount upload it
    # (the sandbox's f is still the file the delete was for).
    m, sb, tb = crashy
    if PROVIDER != "daytona":
        pytest.skip("Vercel's uploads write in place: its delete is sent before the new file")
    p = m.p(sb, "work", "replaced.txt")
    with open(p, "w") as f:
        f.write("old content\n")
    m.settle()
    os.unlink(p)
    with open(p, "w") as f:
        f.write("new content, under a temporary name until the queue runs\n")
    kill_mount(m)
    # (the batch had not run: else there is nothing to recover)
    assert tb.download(f"{HOME}/replaced.txt") == b"old content\n"
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: tb.download(f"{HOME}/replaced.txt") ==
             b"new content, under a temporary name until the queue runs\n", "the recovered upload")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert unsaved(m2, "replaced.txt") == []


def test_a_file_opened_through_the_new_mount_first_goes_to_unsaved(crashy, server, tmp_root):
    m, sb, tb = crashy
    crash_over_a_file_read_as_version_1(server, crashy, "reopened.txt")
    # Recovery's question about the sandbox is answered slowly; meanwhile
    # the file is opened through the new mount.
    slow_recovery_question(server, tb)
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: faults_injected(server) >= 1, "recovery's question")
    with open(m2.p(sb, "work", "reopened.txt")) as reader:
        assert reader.read() == "version 1\n"
        kept = wait_for(lambda: unsaved(m2, "reopened.txt"), "reopened.txt in unsaved/")
    assert read(kept[0][0]) == "from the dead mount\n"
    assert "opened through the new mount" in kept[0][1]
    assert tb.download(f"{HOME}/reopened.txt") == b"version 1\n"


def test_a_close_through_the_new_mount_during_recovery_upload_lands_after_it(crashy, server, tmp_root):
    """An open of a file recovery is uploading waits for that upload: the
    newer close is never overwritten by recovery's older copy."""
    m, sb, tb = crashy
    p = m.p(sb, "work", "pending.txt")
    crash_after_a_failed_close(server, m, p, "older, staged before the crash\n")
    # recovery's upload is refused once, and retried after Retry-After
    Faults(server).add("upload", status=503, retry_after=3, count=1)
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: faults_injected(server) >= 1, "recovery's first upload")
    with open(m2.p(sb, "work", "pending.txt"), "w") as g:
        g.write("newer, written after the crash\n")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    m2.settle()
    assert tb.download(f"{HOME}/pending.txt") == b"newer, written after the crash\n"
    assert unsaved(m2, "pending.txt") == []


@pytest.mark.parametrize("change", ["rm", "exec"])
def test_a_change_through_the_new_mount_during_recovery_upload_comes_after_it(crashy, server, tmp_root,
                                                                               change):
    """Recovery holds the new mount's changes to the sandbox from its look at
    a file to the end of its upload: an rm of the file, or a command (which
    may change any file), waits and comes after. Only opens of the file
    waited: the rm went first and recovery's upload brought the file back,
    the command's write was replaced by the dead mount's older copy."""
    m, sb, tb = crashy
    crash_over_a_file_read_as_version_1(server, crashy, "raced.txt")
    # recovery's upload is refused once, and retried after Retry-After
    Faults(server).add("upload", status=503, retry_after=3, count=1)
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: faults_injected(server) >= 1, "recovery's first upload")
    if change == "rm":
        os.unlink(m2.p(sb, "work", "raced.txt"))
    else:
        ctl(m2.p(sb, "ctl"), f"exec echo newer > {HOME}/raced.txt")
        assert read(m2.p(sb, "exit")) == "0\n"
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    m2.settle()
    if change == "rm":
        assert not tb.exists(f"{HOME}/raced.txt")
    else:
        assert tb.download(f"{HOME}/raced.txt") == b"newer\n"
    assert unsaved(m2, "raced.txt") == []


@pytest.mark.parametrize("left", ["torn", "empty", "whole", "other"])
def test_an_upload_the_crash_cut_short_is_uploaded_again(crashy, server, tmp_root, left):
    """An upload cut short by the crash leaves the start of the file in the
    sandbox (Daytona's upload truncates the file and writes it as the body
    comes): recovery took that for someone else's change, kept the data in
    unsaved/ and left the torn file in the sandbox. A sandbox file that is
    the start of the stage (or all of it: the upload landed, the record did
    not go) is uploaded over; anything else still goes to unsaved/."""
    m, sb, tb = crashy
    text = "".join(f"line {i} of what the dead mount closed\n" for i in range(3000))
    crash_over_a_file_read_as_version_1(server, crashy, "torn.txt", text)
    there = {"torn": text[:40000], "empty": "", "whole": text, "other": text[:40000] + "X"}[left]
    tb.upload(f"{HOME}/torn.txt", there.encode())
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    if left == "other":
        kept = unsaved(m2, "torn.txt")
        assert len(kept) == 1 and read(kept[0][0]) == text
        assert tb.download(f"{HOME}/torn.txt") == there.encode()
    else:
        assert unsaved(m2, "torn.txt") == []
        assert tb.download(f"{HOME}/torn.txt") == text.encode()


@pytest.mark.parametrize("how", ["o_trunc", "truncate"])
def test_a_truncation_through_the_new_mount_before_recovery_stands(crashy, server, tmp_root, how):
    """The file is emptied through the new mount before recovery reaches its
    record (recovery's question about the sandbox is answered slowly): an
    empty file is the start of any stage, and recovery took it for an
    upload the crash cut short and uploaded the dead mount's older copy
    over it. Only a file last written before the mount started is taken so:
    the truncation stands, the data goes to unsaved/ (found on review)."""
    m, sb, tb = crashy
    crash_over_a_file_read_as_version_1(server, crashy, "trunc.txt")
    slow_recovery_question(server, tb)
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: faults_injected(server) >= 1, "recovery's question")
    q = m2.p(sb, "work", "trunc.txt")
    if how == "o_trunc":
        with open(q, "w"):
            pass
    else:
        os.truncate(q, 0)
    assert tb.download(f"{HOME}/trunc.txt") == b""
    kept = wait_for(lambda: unsaved(m2, "trunc.txt"), "trunc.txt in unsaved/")
    assert read(kept[0][0]) == "from the dead mount\n"
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    m2.settle()
    assert tb.download(f"{HOME}/trunc.txt") == b""


@pytest.mark.provider("daytona", reason="holds the file API's move (/files/move); Vercel renames by command")
def test_a_rename_under_way_as_recovery_looks_is_waited_for(crashy, server, tmp_root):
    """A rename through the new mount that began just before recovery's claim
    landed between recovery's look (the file unchanged) and its upload,
    which brought the old name back. The claim now waits for the changes
    under way (found on review)."""
    m, sb, tb = crashy
    crash_over_a_file_read_as_version_1(server, crashy, "mv.txt")
    # recovery's question: 1.5 s; the rename's move acted on 3 s after it was
    # sent; recovery's upload 4 s after
    server.local("POST", "/_local/faults", {"pattern": tb.get_route(), "method": "GET",
                                            "action": "hold", "seconds": 1.5, "count": 1})
    server.local("POST", "/_local/faults", {"pattern": "/files/move", "method": "POST",
                                            "action": "hold", "seconds": 3, "count": 1})
    Faults(server).add("upload", action="hold", seconds=4, count=1)
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: faults_injected(server) >= 1, "recovery's question")
    os.rename(m2.p(sb, "work", "mv.txt"), m2.p(sb, "work", "moved.txt"))
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    m2.settle()
    assert not tb.exists(f"{HOME}/mv.txt")
    assert tb.download(f"{HOME}/moved.txt") == b"version 1\n"
    kept = unsaved(m2, "mv.txt")
    assert len(kept) == 1 and read(kept[0][0]) == "from the dead mount\n"


def test_a_file_changed_in_the_sandbox_meanwhile_goes_to_unsaved(crashy, server, tmp_root):
    m, sb, tb = crashy
    p = m.p(sb, "work", "both.txt")
    tb.upload(f"{HOME}/both.txt", b"version 1\n")   # there before the mount read it
    crash_after_a_failed_close(server, m, p, "ours, not uploaded\n", keep_mode="r")
    # Someone else writes the file while no mount is up.
    tb.upload(f"{HOME}/both.txt", b"theirs, newer\n")
    m2 = remount(server, tmp_root, m)
    kept = wait_for(lambda: unsaved(m2, "both.txt"), "both.txt in unsaved/")
    assert read(kept[0][0]) == "ours, not uploaded\n"
    assert "changed" in kept[0][1] and f"path: {HOME}/both.txt" in kept[0][1]
    # Never over the newer version.
    assert tb.download(f"{HOME}/both.txt") == b"theirs, newer\n"


def test_a_sandbox_deleted_meanwhile_keeps_the_data_in_unsaved(crashy, server, tmp_root):
    m, sb, tb = crashy
    p = m.p(sb, "work", "orphan.txt")
    crash_after_a_failed_close(server, m, p, "its sandbox is gone\n")
    sid = tb.id
    tb.delete()
    wait_for(lambda: tb.state() == "destroyed", "the delete")
    m2 = remount(server, tmp_root, m)
    kept = wait_for(lambda: unsaved(m2, "orphan.txt"), "orphan.txt in unsaved/")
    assert read(kept[0][0]) == "its sandbox is gone\n"
    assert "no longer exists" in kept[0][1] and f"(id {sid})" in kept[0][1]


@pytest.mark.parametrize("started_by", ["the mount", "the api"])
def test_a_stopped_sandbox_keeps_its_files_staged_until_started(crashy, server, tmp_root, started_by):
    """Recovery tries a stopped sandbox's records again every 30 s, and at once when the mount
    sees the sandbox started: started through its ctl, or by anyone else and then looked at
    (here its info is read). Before, the upload waited for the next 30 s."""
    m, sb, tb = crashy
    p = m.p(sb, "work", "later.txt")
    crash_after_a_failed_close(server, m, p, "waits for its sandbox\n")
    tb.stop()
    wait_for(lambda: tb.state() == "stopped", "the stop")
    m2 = remount(server, tmp_root, m)
    # Recovery does not start the sandbox, and keeps the file staged.
    wait_for(lambda: "stay staged for a later mount" in read(m2.log.name), "the recovery pass")
    assert tb.state() == "stopped"
    assert unsaved(m2, "later.txt") == []
    assert len(os.listdir(os.path.join(m2.cache, "staging"))) == 2   # the stage and its record
    # Started, the sandbox gets it: recovery tries again as soon as the mount sees it started.
    if started_by == "the mount":
        ctl(m2.p(sb, "ctl"), "start")
    else:
        tb.start()
        wait_for(lambda: tb.state() == "started", "the start")
        read(m2.p(sb, "info"))
    wait_for(lambda: tb.download(f"{HOME}/later.txt") == b"waits for its sandbox\n", "the upload", 15)
    assert unsaved(m2, "later.txt") == []


def test_a_new_file_whose_directory_was_deleted_meanwhile_goes_to_unsaved(crashy, server, tmp_root):
    m, sb, tb = crashy
    os.mkdir(m.p(sb, "work", "newdir"))
    p = m.p(sb, "work", "newdir", "inside.txt")
    crash_after_a_failed_close(server, m, p, "its directory went away\n")
    tb.remove(f"{HOME}/newdir")
    m2 = remount(server, tmp_root, m)
    kept = wait_for(lambda: unsaved(m2, "inside.txt"), "inside.txt in unsaved/")
    assert read(kept[0][0]) == "its directory went away\n"
    assert "directory was deleted" in kept[0][1]
    # The upload would have made the directory again.
    assert tb.download(f"{HOME}/newdir/inside.txt") is None
    assert not os.path.exists(m2.p(sb, "work", "newdir"))


def block_unsaved(m):
    """Makes m's unsaved/ unusable: a file in its place (unblock_unsaved puts it back)."""
    d = os.path.join(m.cache, "unsaved")
    os.rename(d, d + ".away")
    with open(d, "w"):
        pass


def unblock_unsaved(m):
    d = os.path.join(m.cache, "unsaved")
    os.unlink(d)
    os.rename(d + ".away", d)


def test_data_that_cannot_go_to_unsaved_stays_staged_for_the_next_mount(crashy, server, tmp_root):
    m, sb, tb = crashy
    p = m.p(sb, "work", "nowhere.txt")
    block_unsaved(m)
    Faults(server).add("upload", status=500)
    f = open(p, "w")
    f.write("neither uploaded nor kept\n")
    with pytest.raises(OSError):
        f.close()
    # The last release tries once more, cannot keep it in unsaved/, and leaves it staged.
    wait_for(lambda: "stays in the staging directory" in read(m.log.name), "the release")
    m.unmount()
    server.local("DELETE", "/_local/faults")
    unblock_unsaved(m)
    assert len(os.listdir(os.path.join(m.cache, "staging"))) == 2   # the stage and its record
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: tb.download(f"{HOME}/nowhere.txt") == b"neither uploaded nor kept\n",
             "the recovered upload")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")


@pytest.mark.parametrize("deleted", [False, True], ids=["new-file-there", "new-file-deleted"])
def test_a_failed_close_renamed_over_stays_staged_when_unsaved_cannot_take_it(crashy, server, tmp_root, deleted):
    """A close fails (a 500) while a dup keeps the file open (its release, which would keep the
    data, has not come), then an editor's save renames a new file over it: the data goes to
    unsaved/ (test_integrity). When unsaved/ cannot take it, it stays staged with its record, as
    a last close's does; the next mount's recovery keeps it in unsaved/, whether the new file is
    still at its name or was deleted too (the replaced data never comes back over the path).
    Before, the rename dropped the record and the last close the stage; and with the record kept
    as it was, a deleted new file let the recovery upload the replaced data again."""
    m, sb, tb = crashy
    p = m.p(sb, "work", "replaced.txt")
    block_unsaved(m)
    failed = b"the failed close's data\n"
    keep = fail_a_close_keeping_it_open(p, failed, Faults(server))
    with open(p + ".new", "w") as f:
        f.write("the editor's save\n")
    os.rename(p + ".new", p)
    os.close(keep)
    # The log names the file, not the hidden name libfuse gave it.
    wait_for(lambda: "replaced.txt could not be uploaded nor kept in unsaved/" in read(m.log.name),
             "the rename's end")
    assert "stays staged for the next mount" in read(m.p(sb, "error"))
    if deleted:
        os.unlink(p)   # the new file goes too: the path is free at the next mount
    m.unmount()
    unblock_unsaved(m)
    assert len(os.listdir(os.path.join(m.cache, "staging"))) == 2   # the stage and its record
    m2 = remount(server, tmp_root, m)
    kept = wait_for(lambda: unsaved(m2, "replaced.txt"), "replaced.txt in unsaved/")
    assert open(kept[0][0], "rb").read() == failed
    assert tb.download(f"{HOME}/replaced.txt") == (None if deleted else b"the editor's save\n")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")


def test_a_second_mount_on_the_same_cache_dir_is_refused(crashy, server, tmp_root):
    m, _, _ = crashy
    env = dict(os.environ)
    env.update({"DAYTONA_API_KEY": API_KEY, "DAYTONA_API_URL": server.api_url, "VERCEL_TOKEN": API_KEY,
                "VERCEL_TEAM_ID": VERCEL_TEAM, "VERCEL_PROJECT_ID": VERCEL_PROJECT})
    opts = "cache_dir=" + m.cache + (",provider=vercel,api_url=" + server.api_url if PROVIDER == "vercel" else "")
    other = os.path.join(tmp_root, "second-" + uuid.uuid4().hex[:6])
    os.makedirs(other)
    p = subprocess.Popen([os.environ.get("DAYTONAFS_BIN", "build/daytonafs"), "-f", "-o",
                          opts, other], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        _, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate(timeout=30)
        subprocess.run(["fusermount3", "-u", "-z", other], check=False)
        pytest.fail("a second mount on the same cache directory was allowed")
    assert p.returncode != 0
    assert "in use by another daytonafs mount" in err
    assert not os.path.ismount(other)


def test_a_file_written_after_its_unlink_leaves_nothing_after_a_crash(crashy, server, tmp_root):
    """An open file that is unlinked lives on under libfuse's hidden name,
    never uploaded again. A write after the unlink wrote a crash-journal
    record for that hidden name, and the next mount's recovery uploaded the
    new file to .fuse_hiddenNNNN in the sandbox."""
    m, sb, tb = crashy
    d = m.p(sb, "work")
    p = os.path.join(d, "gone.txt")
    fd = os.open(p, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"before the unlink\n")
        os.unlink(p)
        os.write(fd, b"written after the unlink\n")
        assert os.pread(fd, 100, 0) == b"before the unlink\nwritten after the unlink\n"
        kill_mount(m)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass
    m2 = remount(server, tmp_root, m)
    os.listdir(m2.p(sb, "work"))
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert [n for n in tb.list(HOME) if "hidden" in n or n == "gone.txt"] == []
    assert [n for n in os.listdir(m2.p(sb, "work")) if "hidden" in n or n == "gone.txt"] == []
    assert os.listdir(os.path.join(m2.cache, "unsaved")) == []


def test_a_failed_rename_onto_a_file_whose_close_failed_keeps_its_upload_for_recovery(crashy, server, tmp_root):
    """A close whose upload failed leaves a record that asks the next mount
    to upload; another descriptor keeps the file open. A rename onto it
    that failed then rewrote that record as "open" (not asked for), so after
    a crash the data went to unsaved/ instead of the sandbox."""
    m, sb, tb = crashy
    p = m.p(sb, "work", "edit.txt")
    tb.upload(f"{HOME}/edit.txt", b"version 1\n")
    assert read(p) == "version 1\n"
    crash_after_a_failed_close_and_a_failed_rename(server, m, sb, p, "version 2, from the dead mount\n")
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: tb.download(f"{HOME}/edit.txt") == b"version 2, from the dead mount\n",
             "the recovered upload")
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert unsaved(m2, "edit.txt") == []


def crash_after_a_failed_close_and_a_failed_rename(server, m, sb, p, text):
    Faults(server).add("upload", status=500)
    keep = open(p, "r")
    f = open(p, "w")
    f.write(text)
    with pytest.raises(OSError):
        f.close()
    server.local("DELETE", "/_local/faults")
    with pytest.raises(OSError) as e:
        os.rename(m.p(sb, "ctl"), p)
    assert e.value.errno == errno.EPERM
    kill_mount(m)
    try:
        keep.close()
    except OSError:
        pass


def test_a_file_a_rename_uploaded_before_its_close_is_kept_not_uploaded_after_a_crash(crashy, server, tmp_root):
    # A rename (or rmdir) uploads the files open under the directory first
    # (flush_under): a writer's unfinished data. That upload marked the
    # crash record "flushed", as a close's does, so when it failed and the
    # mount died, the next mount uploaded a file nobody had closed. Found on
    # review (a helper); its reproduction.
    m, sb, tb = crashy
    tb.mkdir(f"{HOME}/d")
    p = m.p(sb, "work", "d", "f.txt")
    w = open(p, "wb")
    w.write(b"HALF-WRITTEN, writer not done")
    w.flush()
    Faults(server).add("upload", status=500)
    with pytest.raises(OSError):
        os.rename(m.p(sb, "work", "d"), m.p(sb, "work", "e"))
    kill_mount(m)
    try:
        w.close()
    except OSError:
        pass
    server.local("DELETE", "/_local/faults")
    m2 = remount(server, tmp_root, m)
    wait_for(lambda: os.listdir(os.path.join(m2.cache, "staging")) == [], "staging/ emptied")
    assert tb.read(f"{HOME}/d/f.txt") is None
    kept = unsaved(m2, "f.txt")
    assert len(kept) == 1 and open(kept[0][0], "rb").read() == b"HALF-WRITTEN, writer not done"
