# SPDX-License-Identifier: Apache-2.0
"""POSIX behaviour that outside suites (pjdfstest, fsx) check and that the
mount once got wrong: rename over a file a reader keeps opening, names longer
than NAME_MAX, paths longer than PATH_MAX, inode numbers that stay the same
for the mount's life, the sandbox's own atime and ctime, and directory link
counts after changes made through the mount."""
import contextlib
import ctypes
import errno
import os
import subprocess
import threading
import time
import types
import uuid

import pytest

from conftest import PROVIDER, ctl, read
from sandbox_view import Faults


@pytest.fixture(scope="module")
def work(mount, sandbox):
    return mount.p(sandbox, "work")


@pytest.fixture
def d(work):
    """A fresh directory on the mount; its path in the sandbox is /home/daytona/NAME."""
    name = "g-" + uuid.uuid4().hex[:8]
    os.mkdir(os.path.join(work, name))
    return os.path.join(work, name)


def in_sandbox(mount, sandbox, command):
    """Runs a command in the sandbox (cwd /home/daytona); returns (exit, stdout)."""
    ctl(mount.p(sandbox, "ctl"), "exec " + command)
    code = read(mount.p(sandbox, "exit"))
    return int(code), read(mount.p(sandbox, "stdout"))


def drop_kernel_caches():
    """Makes the kernel evict unused inodes and dentries (needs root)."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


# ---- 1. rename over a file that a reader keeps opening ---------------------

def test_rename_over_file_a_reader_keeps_opening(d):
    """Save by write-temp-then-rename while another thread loops open, read,
    close on the destination: the name never goes missing (libfuse hides an
    open destination under .fuse_hidden first, so lookups in between gave
    ENOENT), an open of the replaced file through the kernel's cached name
    reads a complete version (it read the hidden name from the sandbox:
    ENOENT), and every read is one complete version.

    Nor ESTALE: an open that the kernel sends for the replaced file's inode
    while the rename is in flight failed so (libfuse had dropped that inode's
    path), and the kernel retries it once, looking every name up again. That
    lookup must not answer with the inode of the file that the next rename is
    replacing (it did about once in 20 renames), and on a busy machine the
    retry's walk down the path outlasted the next save, whose rename replaced
    the file the walk had found (5 runs in 30): libfuse hides every replaced
    file now (rename_pin.c), so no open of one fails. 100 saves, so that a
    bug of the first rate shows every time."""
    path = os.path.join(d, "doc.txt")
    versions = [("version %03d " % i).encode() * 200 for i in range(101)]
    with open(path, "wb") as f:
        f.write(versions[0])
    valid = set(versions)
    anomalies = []
    done = threading.Event()

    def reader():
        while not done.is_set():
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                anomalies.append(errno.errorcode.get(e.errno, e.errno))
                continue
            if data not in valid:
                anomalies.append("partial read of %d bytes" % len(data))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(1, len(versions)):
            tmp = os.path.join(d, ".doc.txt.tmp%d" % i)
            with open(tmp, "wb") as f:
                f.write(versions[i])
            os.rename(tmp, path)
    finally:
        done.set()
        t.join()
    assert anomalies == []
    assert read(path, "rb") == versions[-1]
    assert sorted(n for n in os.listdir(d)) == ["doc.txt"]


def test_an_open_of_the_replaced_file_during_the_next_rename_reads_a_version(server, d):
    """The reader of the test above, caught in one window: the kernel opens
    the inode of a file that a rename replaced (its name still cached), whose
    last descriptor has closed, so the open is of the name the file was
    hidden from (HIDDEN_NAMES), while the next save renames onto that name.
    The open made a node for the name after the rename had kept the content
    of the file it replaces, and the rename's end took that node for the
    replaced file's: empty, and unlinked, so every read of it gave 0 bytes
    where fstat said 200. The open waits for the rename now and reads the new
    version. The rename's command is answered slowly to hold the window open;
    /proc/self/fd of an O_PATH descriptor is the kernel's cached name."""
    with a_rename_held_open(server, d) as w:
        with open("/proc/self/fd/%d" % w.handle, "rb") as f:
            w.saved()
            assert f.read() == w.versions[2]
    assert read(w.path, "rb") == w.versions[2]
    assert sorted(os.listdir(d)) == ["doc.txt"]


@contextlib.contextmanager
def a_rename_held_open(server, d):
    """The window the tests above and below hold open: doc.txt saved twice by
    rename, the first version's last descriptor closed (it is hidden, then
    gone), an O_PATH descriptor still on its inode (the kernel's cached
    name), and the second save's rename running in a thread, its command
    answered slowly. Yields path, versions, handle and saved() (joins the
    rename, which must succeed)."""
    path = os.path.join(d, "doc.txt")
    versions = [(b"v%d" % i) * 100 for i in range(3)]
    with open(path, "wb") as f:
        f.write(versions[0])
    first = open(path, "rb")
    handle = os.open(path, os.O_PATH)
    try:
        for i in (1, 2):
            with open(path + ".tmp%d" % i, "wb") as f:
                f.write(versions[i])
        os.rename(path + ".tmp1", path)   # hides the open file
        first.close()                     # its last close: hidden and gone
        slow_rename_command(server)
        renamed = []
        saver = threading.Thread(target=lambda: renamed.append(os.rename(path + ".tmp2", path)))
        saver.start()
        deadline = time.time() + 60
        while not Faults(server).injected():
            assert time.time() < deadline, "the rename's command never came"
            time.sleep(0.01)

        def saved():
            saver.join()
            assert renamed == [None]
        yield types.SimpleNamespace(path=path, versions=versions, handle=handle, saved=saved)
    finally:
        server.local("DELETE", "/_local/faults")
        os.close(handle)
        if not first.closed:
            first.close()


def slow_rename_command(server):
    """The next rename's command is answered slowly, for a few seconds: the window held open.
    Daytona: the next command, 10 bytes/s; Vercel: the next that runs mv (every file access there
    is a command), 100 bytes/s (its answer, NDJSON lines, is ten times longer)."""
    if PROVIDER == "vercel":
        Faults(server).add("execute", action="slow", bytes_per_sec=100, count=1, body_match="mv -f -T")
    else:
        Faults(server).add("execute", action="slow", bytes_per_sec=10, count=1)


def statx_forced(fd):
    """fstat of fd that the kernel must ask the mount (AT_STATX_FORCE_SYNC):
    its errno, or 0."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(256)
    AT_EMPTY_PATH, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS = 0x1000, 0x2000, 0x7ff
    if libc.statx(fd, b"", AT_EMPTY_PATH | AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, buf) == 0:
        return 0
    return ctypes.get_errno()


def test_an_fstat_of_the_replaced_file_during_the_next_rename_finds_it(server, d):
    """As above, but the kernel asks for the attributes of the replaced
    file's inode (an fstat once its cached attributes have expired; Python's
    open does one after every open). That was answered as a lookup of the
    name it was hidden from, which during a rename onto that name says "no
    such name" (so that the kernel looks the name up again): fstat failed
    with ENOENT, and the reader's open with it."""
    with a_rename_held_open(server, d) as w:
        got = statx_forced(w.handle)
        w.saved()
        assert got == 0, errno.errorcode.get(got, got)
    assert read(w.path, "rb") == w.versions[2]


def test_an_open_of_a_replaced_file_no_one_had_open_reads_a_version(mount, sandbox, d):
    """The ESTALE of the reader above, in one step that always meets it: the
    kernel opens, and asks the attributes of, the inode of a file that a
    rename replaced while no descriptor was open on it. libfuse forgot that
    inode's path at the rename and answered both with ESTALE, without asking
    the mount, and the kernel's one retry again (the reader above met it
    when its retry's lookup came just before the next save's rename). The
    mount opens a rename's destination inside libfuse first (rename_pin.c),
    so libfuse hides it instead: the open reads the file now at the name,
    and the fstat finds it. A command makes the file, so that the mount
    never had it open; an O_PATH descriptor holds its inode."""
    rel = os.path.basename(d)
    path = os.path.join(d, "doc.txt")
    old, new = b"v1" * 100, b"v2" * 100
    assert in_sandbox(mount, sandbox, f"printf %s {old.decode()} > {rel}/doc.txt")[0] == 0
    handle = os.open(path, os.O_PATH)
    try:
        with open(path + ".tmp", "wb") as f:
            f.write(new)
        os.rename(path + ".tmp", path)
        assert statx_forced(handle) == 0
        with open("/proc/self/fd/%d" % handle, "rb") as f:
            assert f.read() == new
    finally:
        os.close(handle)
    assert read(path, "rb") == new
    assert sorted(os.listdir(d)) == ["doc.txt"]
    code, out = in_sandbox(mount, sandbox, f"ls -A {rel}; cat {rel}/doc.txt")
    assert (code, out) == (0, "doc.txt\n" + new.decode())


# ---- 2. names longer than NAME_MAX ----------------------------------------

def test_name_longer_than_name_max_is_refused_at_once(d):
    long = os.path.join(d, "n" * 256)
    src = os.path.join(d, "src")
    with open(src, "w") as f:
        f.write("x")
    os.mkdir(os.path.join(d, "sub"))
    calls = [
        ("create", lambda: os.open(long, os.O_CREAT | os.O_WRONLY, 0o644)),
        ("mkdir", lambda: os.mkdir(long)),
        ("symlink", lambda: os.symlink("src", long)),
        ("rename to", lambda: os.rename(src, long)),
        ("rename from", lambda: os.rename(long, os.path.join(d, "x"))),
        ("link", lambda: os.link(src, long)),
        ("mknod", lambda: os.mkfifo(long)),
        ("stat", lambda: os.stat(long)),
        ("lstat", lambda: os.lstat(long)),
        ("unlink", lambda: os.unlink(long)),
        ("chmod", lambda: os.chmod(long, 0o600)),
        ("rmdir", lambda: os.rmdir(long)),
        ("truncate", lambda: os.truncate(long, 0)),
        ("utime", lambda: os.utime(long)),
        ("below", lambda: os.stat(os.path.join(long, "x"))),
    ]
    got = {}
    for name, call in calls:
        try:
            fd = call()
            got[name] = "ok"
            if name == "create":
                os.close(fd)
        except OSError as e:
            got[name] = errno.errorcode[e.errno]
    assert got == {name: "ENAMETOOLONG" for name, _ in calls}
    # nothing was made or parked, and a 255-byte name works
    assert sorted(os.listdir(d)) == ["src", "sub"]
    ok = os.path.join(d, "m" * 255)
    with open(ok, "w") as f:
        f.write("fits")
    assert read(ok) == "fits"


# ---- 6. sandbox paths longer than PATH_MAX --------------------------------

def test_sandbox_path_longer_than_path_max_is_enametoolong(mount, sandbox):
    """A mount path below NAME/fs/ names the sandbox path /...; when that
    would be longer than PATH_MAX (4,096 bytes with its NUL), every call
    gives ENAMETOOLONG at once, and nothing is staged or parked."""
    top = "/tmp/g-" + uuid.uuid4().hex[:8]
    here = mount.p(sandbox, "fs") + top
    os.mkdir(here)
    sandbox_len = len(top)
    # a chain of directories whose sandbox path is 3,845 bytes long
    while sandbox_len < 3845:
        comp = "c" * min(200, 3845 - sandbox_len - 1)
        here = os.path.join(here, comp)
        os.mkdir(here)
        sandbox_len += 1 + len(comp)
    assert sandbox_len == 3845
    over = os.path.join(here, "o" * (4096 - sandbox_len - 1))   # a 4,096-byte sandbox path
    src = os.path.join(here, "s")
    with open(src, "w") as f:
        f.write("x")
    calls = {
        "create": lambda: os.close(os.open(over, os.O_CREAT | os.O_WRONLY, 0o644)),
        "mkdir": lambda: os.mkdir(over),
        "symlink": lambda: os.symlink("s", over),
        "rename": lambda: os.rename(src, over),
        "mkfifo": lambda: os.mkfifo(over),
        "stat": lambda: os.stat(over),
        "unlink": lambda: os.unlink(over),
    }
    got = {}
    for name, call in calls.items():
        try:
            call()
            got[name] = "ok"
        except OSError as e:
            got[name] = errno.errorcode[e.errno]
    assert got == {name: "ENAMETOOLONG" for name in calls}
    assert sorted(os.listdir(here)) == ["s"]
    unsaved = os.path.join(mount.cache, "unsaved")
    assert not os.path.isdir(unsaved) or not [n for n in os.listdir(unsaved) if "ooooo" in n]


# ---- 3. inode numbers stay for the mount's life ----------------------------

def test_inode_number_survives_kernel_eviction(d):
    names = ["a", "b", "c"]
    for n in names:
        with open(os.path.join(d, n), "w") as f:
            f.write(n)
    os.mkdir(os.path.join(d, "sub"))
    names.append("sub")
    before = {n: os.lstat(os.path.join(d, n)).st_ino for n in names}
    assert len(set(before.values())) == len(names)
    for _ in range(3):
        drop_kernel_caches()
        after = {n: os.lstat(os.path.join(d, n)).st_ino for n in names}
        assert after == before
    # readdir's d_ino agrees with stat
    with os.scandir(d) as it:
        assert {e.name: e.inode() for e in it} == before


def test_inode_number_follows_rename(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    with open(a, "w") as f:
        f.write("a")
    with open(b, "w") as f:
        f.write("b")
    ino_a, ino_b = os.lstat(a).st_ino, os.lstat(b).st_ino
    os.rename(a, b)
    drop_kernel_caches()
    assert os.lstat(b).st_ino == ino_a
    # a new file at the old name is another file
    with open(a, "w") as f:
        f.write("new")
    assert os.lstat(a).st_ino not in (ino_a, ino_b)
    os.mkdir(os.path.join(d, "dir"))
    ino_dir = os.lstat(os.path.join(d, "dir")).st_ino
    os.rename(os.path.join(d, "dir"), os.path.join(d, "dir2"))
    drop_kernel_caches()
    assert os.lstat(os.path.join(d, "dir2")).st_ino == ino_dir


# ---- 5. a directory's link count --------------------------------------------

def test_directory_link_count_follows_changes_through_the_mount(mount, sandbox, d):
    """st_nlink of a directory is the sandbox's, 2 + its subdirectories, also
    right after a mkdir, rmdir or rename of a directory through the mount
    (the parent's attributes were then asked of the file API, which says 1)."""
    rel = d[len(mount.p(sandbox, "work")) + 1:]
    other = os.path.join(d, "other")
    os.mkdir(other)
    assert os.lstat(d).st_nlink == 3
    os.mkdir(os.path.join(d, "s1"))
    os.mkdir(os.path.join(d, "s2"))
    assert os.lstat(d).st_nlink == 5
    os.rmdir(os.path.join(d, "s1"))
    assert os.lstat(d).st_nlink == 4
    os.rename(os.path.join(d, "s2"), os.path.join(other, "s2"))
    assert (os.lstat(d).st_nlink, os.lstat(other).st_nlink) == (3, 3)
    with open(os.path.join(d, "file"), "w") as f:
        f.write("x")
    assert os.lstat(d).st_nlink == 3
    code, out = in_sandbox(mount, sandbox, f"stat -c %h {rel} {rel}/other")
    assert (code, out.split()) == (0, ["3", "3"])


# ---- 4. atime and ctime ------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
UTIME_OMIT = (1 << 30) - 2


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path, atime, mtime):
    """utimensat(2) with (sec, nsec) pairs; None leaves that time alone (UTIME_OMIT)."""
    ts = (_Timespec * 2)(*[_Timespec(*(t if t is not None else (0, UTIME_OMIT))) for t in (atime, mtime)])
    if _libc.utimensat(-100, os.fsencode(path), ts, 0) != 0:   # AT_FDCWD
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)


def test_atime_and_ctime_are_the_sandboxes(mount, sandbox, d):
    rel = d[len(mount.p(sandbox, "work")) + 1:]
    path = os.path.join(d, "f")
    with open(path, "w") as f:
        f.write("x")
    utimensat(path, (1900000000, 0), (1950000000, 0))
    st = os.lstat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1900000000 * 10**9, 1950000000 * 10**9)
    # atime alone
    utimensat(path, (1800000000, 500), None)
    st = os.lstat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1800000000 * 10**9 + 500, 1950000000 * 10**9)
    # ctime is the sandbox's (the time of the change), not the mtime that was set
    assert st.st_ctime_ns not in (st.st_atime_ns, st.st_mtime_ns)
    before = st.st_ctime_ns
    os.chmod(path, 0o600)
    assert os.lstat(path).st_ctime_ns > before
    # what a listing shows equals the sandbox's stat
    code, out = in_sandbox(mount, sandbox, f"stat -c '%X %Y %Z' {rel}/f")
    assert code == 0
    os.listdir(d)
    st = os.lstat(path)
    assert [int(x) for x in out.split()] == [int(st.st_atime), int(st.st_mtime), int(st.st_ctime)]


# ---- 6. rmdir ----------------------------------------------------------------

def test_rmdir_of_an_empty_directory_that_may_not_be_listed(mount, sandbox, d):
    """rmdir needs write permission on the parent only: an empty directory of
    mode 0644 or 0 goes, as on a local disk (pjdfstest rename/04.t, rmdir/07.t).
    On Vercel the sandbox's user is not root and may not list such a
    directory, and the emptiness check by listing failed with EACCES; rmdir(2)
    in the sandbox checks emptiness itself."""
    rel = d[len(mount.p(sandbox, "work")) + 1:]
    for mode in (0o644, 0):
        e = os.path.join(d, "e%o" % mode)
        # made in the sandbox, so that the mount has no listing of it cached
        code, _ = in_sandbox(mount, sandbox, f"mkdir -m {mode:o} {rel}/e{mode:o}")
        assert code == 0
        os.rmdir(e)
        assert not os.path.lexists(e)
    code, out = in_sandbox(mount, sandbox, f"ls -A {rel} | wc -l")
    assert (code, out) == (0, "0\n")


def test_rmdir_of_a_directory_a_command_filled_is_enotempty(mount, sandbox, d):
    """A directory that a process in the sandbox filled behind the mount's back
    is not removed, nor is its content: ENOTEMPTY."""
    os.mkdir(os.path.join(d, "full"))
    os.listdir(os.path.join(d, "full"))          # cached as empty
    rel = d[len(mount.p(sandbox, "work")) + 1:]
    code, _ = in_sandbox(mount, sandbox, f"echo x > {rel}/full/f")
    assert code == 0
    with pytest.raises(OSError) as e:
        os.rmdir(os.path.join(d, "full"))
    assert e.value.errno == errno.ENOTEMPTY
    code, out = in_sandbox(mount, sandbox, f"cat {rel}/full/f")
    assert (code, out) == (0, "x\n")


def test_a_rename_into_a_directory_the_sandbox_refuses_says_why(mount, sandbox, d):
    # Daytona's file API refuses the move with a bare 400 whatever the
    # reason, which was EINVAL: mv(1) said "cannot move ... to a
    # subdirectory of itself". The move now goes by mv -T in the sandbox,
    # whose error is the real one (a read-only /usr: EROFS; not writable by
    # the sandbox's user: EACCES).
    src = os.path.join(d, "f")
    with open(src, "w") as f:
        f.write("data")
    dst = mount.p(sandbox, "fs", "usr", "daytonafs-refused-" + uuid.uuid4().hex[:8])
    with pytest.raises(OSError) as e:
        os.rename(src, dst)
    assert e.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM), e.value
    assert read(src) == "data"
    assert not os.path.exists(dst)


def test_rm_in_a_directory_nobody_may_write_says_what_happened(d, mount):
    """rm of a file in a chmod 555 directory: the delete was queued (rm -r
    sends them together) and rm said 0, then the sandbox refused it (on
    Vercel, whose file calls act as the default user) and the file came
    back, its error only in NAME/error and a later fsync of the directory.
    In a directory the mount knows nobody but root may write, the delete
    goes at once: rm gets its answer (found by an exploring helper)."""
    ro = os.path.join(d, "ro")
    os.mkdir(ro)
    p = os.path.join(ro, "file")
    with open(p, "w") as f:
        f.write("data\n")
    os.chmod(ro, 0o555)
    try:
        os.stat(ro)
        try:
            os.unlink(p)
            removed = True
        except PermissionError:
            removed = False
        time.sleep(1.2)          # past the queue's delay and the kernel's attributes
        assert os.path.exists(p) is not removed
        assert ("file" in os.listdir(ro)) is not removed
    finally:
        os.chmod(ro, 0o755)


def test_a_new_file_in_a_directory_nobody_may_write_gets_its_answer_at_the_open(d, mount, sandbox):
    """echo data > ro/new in a chmod 555 directory: the new file was made at
    its close, which the sandbox refused where the file API is not root's
    (Vercel), and bash does not check a close: it said 0, the name was not
    there, and the data went to the cache's unsaved/. Now it is made at the
    open, which gets the sandbox's answer: EACCES there, a file with the data
    where the toolbox runs as root (Daytona). Found by the note of stop 28."""
    ro = os.path.join(d, "ro")
    os.mkdir(ro)
    os.chmod(ro, 0o555)
    p = os.path.join(ro, "new")
    try:
        os.stat(ro)
        shell = subprocess.run(["bash", "-c", 'umask 027; echo data > "$1"', "bash", p],
                               capture_output=True, text=True)
        made = os.path.exists(p)
        assert (shell.returncode == 0) is made, shell.stderr
        if made:
            assert open(p).read() == "data\n"
            assert os.stat(p).st_mode & 0o7777 == 0o640
            code, out = in_sandbox(mount, sandbox, "cat %s/ro/new; stat -c %%a %s/ro/new"
                                   % (os.path.basename(d), os.path.basename(d)))
            assert (code, out) == (0, "data\n640\n")
        else:
            assert "Permission denied" in shell.stderr
            assert "new" not in os.listdir(ro)
        if PROVIDER == "vercel":
            assert not made          # its file API is the sandbox's user's
        unsaved = os.path.join(mount.cache, "unsaved")
        assert not os.path.isdir(unsaved) or not [n for n in os.listdir(unsaved) if "ro%2Fnew" in n]
    finally:
        os.chmod(ro, 0o755)


@pytest.mark.skipif(PROVIDER != "vercel", reason="Daytona's toolbox writes as root: /etc is its own")
def test_changes_in_a_directory_the_file_user_may_not_write_get_their_answer_at_once(mount, sandbox):
    """On Vercel the file API and the mount's commands act as uid 1000: a new
    file in root's /etc (755) was made at its close, refused there while
    bash said 0 and the data went to unsaved/, and an rm was queued, said 0,
    and the file came back. The mount knows that user (files_owner_known):
    both go to the sandbox at once and get its answer (EROFS from the local
    server's read-only /etc, EACCES from Vercel's)."""
    etc = mount.p(sandbox, "fs", "etc")
    assert os.stat(etc).st_uid == 0
    p = os.path.join(etc, "daytonafs-" + uuid.uuid4().hex[:8])
    shell = subprocess.run(["bash", "-c", 'echo data > "$1"', "bash", p], capture_output=True, text=True)
    assert shell.returncode != 0
    assert not os.path.exists(p)
    with pytest.raises(OSError) as e:
        os.unlink(os.path.join(etc, "hostname"))
    assert e.value.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
    time.sleep(1.2)          # past the queue's delay and the kernel's attributes
    assert os.path.exists(os.path.join(etc, "hostname"))
    unsaved = os.path.join(mount.cache, "unsaved")
    assert not os.path.isdir(unsaved) or not [n for n in os.listdir(unsaved) if "etc%2Fdaytonafs-" in n]


@pytest.mark.skipif(PROVIDER != "vercel", reason="Daytona's toolbox writes as root")
def test_a_write_to_a_file_the_file_user_may_not_write_fails_at_the_open(mount, sandbox):
    """Vercel writes an upload into the file in place as uid 1000: root's
    /tmp/F (0644) refused it at the close, which bash does not check (echo x
    >> F said 0 and the data went to unsaved/). The open gets EACCES now, as
    a user who is not root gets from the kernel; the user's own read-only
    file is still written (its owner gets the write bit for the copy)."""
    name = "dfs-root-" + uuid.uuid4().hex[:8]
    code, _ = in_sandbox(mount, sandbox, "sudo sh -c 'echo root > /tmp/%s; chmod 644 /tmp/%s'" % (name, name))
    assert code == 0
    p = mount.p(sandbox, "fs", "tmp", name)
    assert os.stat(p).st_uid == 0
    shell = subprocess.run(["bash", "-c", 'echo more >> "$1"', "bash", p], capture_output=True, text=True)
    assert shell.returncode != 0 and "Permission denied" in shell.stderr
    with pytest.raises(PermissionError):
        open(p, "r+")
    assert open(p).read() == "root\n"
    unsaved = os.path.join(mount.cache, "unsaved")
    assert not os.path.isdir(unsaved) or not [n for n in os.listdir(unsaved) if name in n]
    code, _ = in_sandbox(mount, sandbox, "echo mine > /tmp/%s.own; chmod 444 /tmp/%s.own" % (name, name))
    assert code == 0
    with open(p + ".own", "a") as f:
        f.write("more\n")
    code, out = in_sandbox(mount, sandbox, "cat /tmp/%s.own" % name)
    assert (code, out) == (0, "mine\nmore\n")


def test_rmdir_of_a_directory_a_command_filled_since_it_was_listed_keeps_it(d, mount, sandbox, view):
    """rmdir of a directory the mount had listed empty, where a command has
    made a file since: Daytona's file API deletes a directory only
    recursively, and the mount checked emptiness in its cache, which an exec
    does not drop: rmdir said 0 and deleted the command's file. rmdir(2) in
    the sandbox answers now: ENOTEMPTY, the file kept (found by an exploring
    helper)."""
    sub = os.path.join(d, "rmd")
    os.mkdir(sub)
    assert os.listdir(sub) == []
    rel = os.path.basename(d) + "/rmd/important.txt"
    # While the command runs: its end makes the mount look again.
    ctl(mount.p(sandbox, "ctl"), "exec echo precious > %s; touch %s.made; sleep 4" % (rel, rel))
    deadline = time.monotonic() + 10
    while not view.exists(view.home + "/" + rel + ".made") and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(OSError) as e:
        os.rmdir(sub)
    assert e.value.errno == errno.ENOTEMPTY
    assert in_sandbox(mount, sandbox, "cat " + rel) == (0, "precious\n")
    os.unlink(os.path.join(sub, "important.txt"))
    os.unlink(os.path.join(sub, "important.txt.made"))
    os.rmdir(sub)
    assert not os.path.exists(sub)
