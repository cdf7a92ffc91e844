# SPDX-License-Identifier: Apache-2.0
"""Editors and everyday tools, run for real inside the mount, and compared
with the same run on a local directory: vim (swap, backup, writebackup),
nano (through tmux), emacs --batch, the save patterns of VS Code, cp -a,
rsync -a, tar, git, make."""
import hashlib
import os
import shutil
import stat
import subprocess
import time
import uuid

import pytest

from conftest import PROVIDER, ctl, read, sh, write

ENV = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
           GIT_COMMITTER_EMAIL="t@e", GIT_CONFIG_NOSYSTEM="1", HOME=os.environ.get("HOME", "/root"),
           LC_ALL="C", TZ="UTC")
# Vercel's commands run as a user who is not root, so files in the sandbox
# cannot be given to root (chown is EPERM there, as on any system to a user):
# the tools that keep owners are told not to, and git to trust the owner.
KEEP_NO_OWNER = PROVIDER == "vercel"
if KEEP_NO_OWNER:
    ENV.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="safe.directory", GIT_CONFIG_VALUE_0="*")
CP_A = ["cp", "-a", "--no-preserve=ownership"] if KEEP_NO_OWNER else ["cp", "-a"]
RSYNC_A = ["rsync", "-a", "--no-owner", "--no-group"] if KEEP_NO_OWNER else ["rsync", "-a"]
TAR_XP = ["tar", "--no-same-owner", "-xpf"] if KEEP_NO_OWNER else ["tar", "xpf"]


@pytest.fixture(scope="module")
def work(mount, sandbox):
    return mount.p(sandbox, "work")


@pytest.fixture
def pair(work, tmp_path):
    """A fresh directory on the mount and one on the local disk, for the same run."""
    name = "t-" + uuid.uuid4().hex[:8]
    remote = os.path.join(work, name)
    local = tmp_path / name
    os.mkdir(remote)
    local.mkdir()
    return str(local), remote


def snapshot(root, times=False, dir_times=False):
    """Everything that must survive a copy: type, mode, size, content, link
    target, and with times the mtimes (ns) of files and links (and of
    directories with dir_times)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            v = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode))}
            if stat.S_ISLNK(st.st_mode):
                v["target"] = os.readlink(full)
            elif stat.S_ISREG(st.st_mode):
                v["size"] = st.st_size
                with open(full, "rb") as f:
                    v["sha"] = hashlib.sha256(f.read()).hexdigest()
            if times and (not stat.S_ISDIR(st.st_mode) or dir_times):
                v["mtime"] = st.st_mtime_ns
            out[os.path.relpath(full, root)] = v
    return out


def make_tree(root):
    """A small source tree: files of several modes and sizes, nested
    directories, relative and dangling links, times in the past with ns."""
    os.makedirs(os.path.join(root, "src", "lib"))
    os.makedirs(os.path.join(root, "docs"))
    files = {
        "README": b"hello\n",
        "src/main.c": b"int main(void) { return 0; }\n" * 20,
        "src/lib/util.c": os.urandom(70_000),
        "src/run.sh": b"#!/bin/sh\necho run\n",
        "docs/empty": b"",
        "docs/secret": b"s3cret\n",
        "name with spaces & 'quotes'": b"q\n",
    }
    for rel, data in files.items():
        with open(os.path.join(root, rel), "wb") as f:
            f.write(data)
    os.chmod(os.path.join(root, "src/run.sh"), 0o755)
    os.chmod(os.path.join(root, "docs/secret"), 0o600)
    os.chmod(os.path.join(root, "README"), 0o444)
    os.symlink("main.c", os.path.join(root, "src", "main-link.c"))
    os.symlink("../missing", os.path.join(root, "docs", "dangling"))
    os.symlink("src/lib", os.path.join(root, "lib-link"))
    t = 1_600_000_000_123_456_789
    for i, (dirpath, dirnames, filenames) in enumerate(os.walk(root, topdown=False)):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            os.utime(full, ns=(t + i, t + i * 1000), follow_symlinks=False)
    os.utime(root, ns=(t, t))


def count(server):
    return server.stats()["requests"]


# ---- editors ---------------------------------------------------------------------

@pytest.mark.parametrize("backupcopy", ["yes", "no", "auto"])
def test_vim_save_with_swap_and_backup(pair, backupcopy, server):
    results = []
    for d in pair:
        write(os.path.join(d, "f.txt"), "one\ntwo\nthree\n")
        os.chmod(os.path.join(d, "f.txt"), 0o640)
        r = subprocess.run(["vim", "-u", "NONE", "-N", "-es", "-c",
                            f"set swapfile backup writebackup backupcopy={backupcopy}",
                            "-c", "%s/two/TWO/", "-c", "wq", "f.txt"],
                           cwd=d, capture_output=True, text=True, timeout=60)
        results.append((r.returncode, r.stdout, r.stderr))
    assert results[0] == results[1]
    assert results[1][0] == 0
    local, remote = pair
    assert snapshot(remote) == snapshot(local)
    assert read(os.path.join(remote, "f.txt")) == "one\nTWO\nthree\n"
    assert stat.S_IMODE(os.stat(os.path.join(remote, "f.txt")).st_mode) == 0o640
    # the swap file is gone, and no trace of the mount's own machinery
    assert not [n for n in os.listdir(remote) if n.startswith(".fuse_hidden") or n.endswith(".swp")]


def _tmux(*args, sock):
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, timeout=30)


def run_nano(d, sock):
    """Edits f.txt in nano through a real terminal (tmux): appends a line,
    saves with ^O, exits with ^X."""
    env_cmd = f"cd '{d}' && TERM=xterm nano -B -I f.txt"   # -B: keep a backup; -I: no nanorc
    assert _tmux("new-session", "-d", "-s", "ed", "-x", "80", "-y", "24", env_cmd, sock=sock).returncode == 0
    try:
        deadline = time.time() + 20
        while "f.txt" not in _tmux("capture-pane", "-p", "-t", "ed", sock=sock).stdout:
            assert time.time() < deadline, "nano did not start"
            time.sleep(0.1)
        _tmux("send-keys", "-t", "ed", "M-/", sock=sock)          # to the end of the file
        _tmux("send-keys", "-t", "ed", "-l", "added by nano", sock=sock)   # nano adds the final newline
        _tmux("send-keys", "-t", "ed", "C-o", sock=sock)
        time.sleep(0.3)
        _tmux("send-keys", "-t", "ed", "Enter", sock=sock)        # keep the file name
        deadline = time.time() + 20
        while "Wrote" not in _tmux("capture-pane", "-p", "-t", "ed", sock=sock).stdout:
            assert time.time() < deadline, _tmux("capture-pane", "-p", "-t", "ed", sock=sock).stdout
            time.sleep(0.1)
        _tmux("send-keys", "-t", "ed", "C-x", sock=sock)
        deadline = time.time() + 20
        while _tmux("has-session", "-t", "ed", sock=sock).returncode == 0:
            assert time.time() < deadline, "nano did not exit"
            time.sleep(0.1)
    finally:
        _tmux("kill-server", sock=sock)


def test_nano_save_through_a_terminal(pair):
    if not shutil.which("tmux") or not shutil.which("nano"):
        pytest.skip("tmux and nano are needed (scripts/install-deps)")
    for i, d in enumerate(pair):
        write(os.path.join(d, "f.txt"), "first\nsecond\n")
        run_nano(d, f"dfs-{os.getpid()}-{i}")
    local, remote = pair
    assert read(os.path.join(remote, "f.txt")) == "first\nsecond\nadded by nano\n"
    assert read(os.path.join(remote, "f.txt~")) == "first\nsecond\n"
    assert snapshot(remote) == snapshot(local)


def test_emacs_batch_save(pair):
    if not shutil.which("emacs"):
        pytest.skip("emacs is needed (scripts/install-deps installs emacs-nox)")
    # Backups by renaming the original (emacs' default), even under /tmp.
    setup = ('(progn (setq make-backup-files t) (setq create-lockfiles t) (setq backup-by-copying nil)'
             ' (setq backup-enable-predicate (lambda (name) t)))')
    elisp = ('(progn (goto-char (point-max)) (insert "emacs was here\\n") (save-buffer)'
             ' (goto-char (point-min)) (insert ";; top\\n") (save-buffer))')
    outs = []
    for d in pair:
        write(os.path.join(d, "notes.txt"), "some notes\n")
        r = subprocess.run(["emacs", "-Q", "--batch", "--eval", setup, "notes.txt", "--eval", elisp],
                           cwd=d, capture_output=True, text=True, timeout=120, env=dict(ENV, HOME=d))
        outs.append(r.returncode)
        assert r.returncode == 0, r.stderr
    local, remote = pair
    assert read(os.path.join(remote, "notes.txt")) == ";; top\nsome notes\nemacs was here\n"
    assert read(os.path.join(remote, "notes.txt~")) == "some notes\n"
    ignore = {".emacs.d"}
    a = {k: v for k, v in snapshot(local).items() if k.split("/")[0] not in ignore}
    b = {k: v for k, v in snapshot(remote).items() if k.split("/")[0] not in ignore}
    assert b == a
    assert not [n for n in os.listdir(remote) if n.startswith(".#")], "a lock file was left"


def test_vscode_truncate_then_write(pair, mount, sandbox):
    local, remote = pair
    for d in pair:
        p = os.path.join(d, "app.js")
        write(p, "console.log('old');\n" * 100)
        os.chmod(p, 0o600)
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b"console.log('new');\n")
        os.fsync(fd)
        os.close(fd)
    assert snapshot(remote) == snapshot(local)
    assert read(os.path.join(remote, "app.js")) == "console.log('new');\n"
    # A command in the sandbox sees it at once, with its mode.
    ctl(mount.p(sandbox, "ctl"), f"exec stat -c %a {os.path.basename(remote)}/app.js && cat {os.path.basename(remote)}/app.js")
    assert read(mount.p(sandbox, "stdout")) == "600\nconsole.log('new');\n"


def test_vscode_atomic_save_is_never_seen_partial_or_missing(pair, mount, sandbox):
    """Write a temporary file, rename it over the original: a reader in the
    sandbox sees the old content or the new one, whole, and never no file."""
    _, remote = pair
    rel = os.path.basename(remote)
    versions = [("v%d " % i) * 20000 + "\n" for i in range(8)]
    target = os.path.join(remote, "doc.txt")
    write(target, versions[0])
    check = ("ok=0; bad=0; end=$((SECONDS+6)); while [ $SECONDS -lt $end ]; do "
             f"c=$(cat {rel}/doc.txt 2>/dev/null) || {{ echo MISSING; bad=1; continue; }}; "
             "case \"$c\" in v*) ;; *) echo \"PARTIAL ${#c}\";; esac; "
             "n=${#c}; [ $n -eq 60000 ] || echo \"SIZE $n\"; done; echo done")
    ctl(mount.p(sandbox, "ctl"), "exec " + check)
    time.sleep(0.5)
    for v in versions[1:]:
        tmp = os.path.join(remote, ".doc.txt.tmp-" + uuid.uuid4().hex[:6])
        with open(tmp, "w") as f:
            f.write(v)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, target)
        time.sleep(0.2)
    assert read(mount.p(sandbox, "exit")) == "0\n"
    assert read(mount.p(sandbox, "stdout")) == "done\n"
    assert read(target) == versions[-1]
    assert sorted(os.listdir(remote)) == ["doc.txt"]


def test_rename_over_a_file_open_for_reading(pair):
    """Readers of the file that was replaced keep its content; nothing is left behind."""
    local, remote = pair
    results = []
    for d in pair:
        old, new = os.path.join(d, "conf"), os.path.join(d, "conf.new")
        write(old, "old content\n")
        os.chmod(old, 0o600)
        write(new, "new content\n")
        with open(old) as reader:
            os.rename(new, old)
            st = os.fstat(reader.fileno())
            results.append((reader.read(), st.st_size, oct(st.st_mode), read(old), sorted(os.listdir(d))))
    assert results[1] == results[0]
    assert results[0] == ("old content\n", 12, oct(0o100600), "new content\n", ["conf"])


def test_unlinked_open_file(pair, mount, sandbox):
    """An open file that is unlinked lives on for its descriptors (read,
    write, fstat, ftruncate), is gone from the sandbox at once, and leaves no
    .fuse_hidden file anywhere."""
    local, remote = pair
    rel = os.path.basename(remote)
    results = []
    for d in pair:
        p = os.path.join(d, "scratch")
        fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o600)
        os.write(fd, b"abc")
        os.fsync(fd)
        os.unlink(p)
        listing = sorted(os.listdir(d))
        os.write(fd, b"def")
        st = os.fstat(fd)
        os.ftruncate(fd, 5)
        data = os.pread(fd, 100, 0)
        os.fchmod(fd, 0o644)
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if d == remote:
            ctl(mount.p(sandbox, "ctl"), f"exec ls -A {rel}; find / -xdev -name '.fuse_hidden*' 2>/dev/null")
            assert read(mount.p(sandbox, "stdout")) == ""
        os.close(fd)
        results.append((listing, st.st_size, st.st_nlink, stat.S_IMODE(st.st_mode), data, mode,
                        sorted(os.listdir(d))))
    assert results[1] == results[0]
    ctl(mount.p(sandbox, "ctl"), "exec find / -xdev -name '.fuse_hidden*' 2>/dev/null; echo end")
    assert read(mount.p(sandbox, "stdout")) == "end\n"


# ---- copies and archives ---------------------------------------------------------

def test_cp_a_in_and_out(pair, tmp_path, server):
    local, remote = pair
    src = os.path.join(local, "tree")
    make_tree(src)
    n_files = sum(len(f) for _, _, f in os.walk(src))
    server.reset()
    sh(CP_A + [src, os.path.join(remote, "tree")])
    cost = count(server)
    assert snapshot(os.path.join(remote, "tree"), times=True, dir_times=True) == \
        snapshot(src, times=True, dir_times=True)
    back = str(tmp_path / "back")
    sh(["cp", "-a", os.path.join(remote, "tree"), back])
    assert snapshot(back, times=True, dir_times=True) == snapshot(src, times=True, dir_times=True)
    # One upload and at most one command per file, a few requests per directory.
    assert cost <= 2 * n_files + 5 * 4 + 5, cost


def test_cp_a_of_a_100_file_tree_request_cost(work, tmp_path, server):
    src = tmp_path / "hundred"
    for d in range(5):
        (src / f"d{d}").mkdir(parents=True)
        for i in range(20):
            p = src / f"d{d}" / f"f{i}.txt"
            p.write_text(f"{d}/{i}\n")
            os.utime(p, ns=(1_500_000_000_000_000_000 + i, 1_500_000_000_000_000_000 + i))
    dest = os.path.join(work, "hundred-" + uuid.uuid4().hex[:6])
    server.reset()
    sh(CP_A + [str(src), dest])
    stats = server.stats()
    print(f"cp -a of 100 files in 5 directories: {stats['requests']} requests: {stats['routes']}")
    assert snapshot(dest, times=True) == snapshot(str(src), times=True)
    uploads = sum(n for k, n in stats["routes"].items() if "upload" in k or k.endswith("/fs/write"))
    # per file: the upload, and one command that sets the time (and prints the attributes);
    # on Vercel a small file's upload is one command that carries its bytes and copies them
    # into place (doc/SEMANTICS.md, Vercel): no fs/write
    assert uploads == (0 if PROVIDER == "vercel" else 100)
    assert stats["requests"] <= 100 * 2 + 6 * 5 + 5


def test_rsync_a_in_and_out(pair, tmp_path):
    # Directory times are not compared: rsync's generator sets a directory's
    # time while its receiver may still write into it, so when either side is
    # slower than a local disk (NFS, sshfs, this mount) a late write can win,
    # whichever way the copy goes. Files' and links' times are compared.
    local, remote = pair
    src = os.path.join(local, "tree")
    make_tree(src)
    sh(RSYNC_A + [src + "/", os.path.join(remote, "tree") + "/"])
    assert snapshot(os.path.join(remote, "tree"), times=True) == snapshot(src, times=True)
    # A second run finds nothing to do (sizes and times agree).
    out = sh(RSYNC_A + ["-i", src + "/", os.path.join(remote, "tree") + "/"]).stdout
    assert out.strip() == "", out
    # Changes are carried over.
    with open(os.path.join(src, "src", "main.c"), "ab") as f:
        f.write(b"/* more */\n")
    os.unlink(os.path.join(src, "docs", "empty"))
    sh(RSYNC_A + ["--delete", src + "/", os.path.join(remote, "tree") + "/"])
    assert snapshot(os.path.join(remote, "tree"), times=True) == snapshot(src, times=True)
    back = str(tmp_path / "back")
    sh(["rsync", "-a", os.path.join(remote, "tree") + "/", back + "/"])
    assert snapshot(back, times=True) == snapshot(src, times=True)


def test_a_new_file_shows_the_owner_the_sandbox_gives_it(pair, mount, sandbox):
    """A file made through the mount belongs to whom the provider's uploads
    and commands write as (Daytona's toolbox: root, the mounting user here;
    Vercel: the sandbox's default user, uid 1000): it shows that owner from
    its create on, not the mounting user's until its directory is listed
    again (tar d saw 'Uid differs' on Vercel)."""
    _, remote = pair
    p = os.path.join(remote, "new.txt")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        open_owner = os.fstat(fd).st_uid, os.fstat(fd).st_gid     # not uploaded yet
        os.write(fd, b"x\n")
    finally:
        os.close(fd)
    made_owner = os.stat(p).st_uid, os.stat(p).st_gid
    ctl(mount.p(sandbox, "ctl"), f"exec stat -c '%u %g' {os.path.basename(remote)}/new.txt")
    uid, gid = map(int, read(mount.p(sandbox, "stdout")).split())
    assert open_owner == made_owner == (uid, gid)
    # the command's end made the mount list the directory again: the same
    os.listdir(remote)
    assert (os.stat(p).st_uid, os.stat(p).st_gid) == (uid, gid)


def test_tar_x_and_c_round_trip(pair, tmp_path, mount, sandbox):
    local, remote = pair
    src = os.path.join(local, "tree")
    make_tree(src)
    # Owners as the sandbox gives them: root on Daytona; on Vercel its user,
    # who cannot give files away (TAR_XP keeps none). The archive names the
    # owner new files get there (numeric, so that names do not differ by host),
    # so that tar d and tar tv compare the rest. The sandbox says who that is.
    ctl(mount.p(sandbox, "ctl"), f"exec stat -c '%u %g' {os.path.basename(remote)}")
    uid, gid = read(mount.p(sandbox, "stdout")).split()
    # (GNU tar 1.34 takes --owner=+UID as 0: a bare number is the uid)
    owner = ["--numeric-owner", f"--owner={uid}", f"--group={gid}"]
    archive = str(tmp_path / "tree.tar")
    # POSIX (pax) format: times with nanoseconds
    sh(["tar", "--format=posix", *owner, "-cf", archive, "-C", src, "."])
    sh(TAR_XP + [archive, "-C", remote])
    assert snapshot(remote, times=True) == snapshot(src, times=True)
    # tar's own check: content, mode, owner, mtime, link targets
    r = sh(["tar", "dpf", archive, "-C", remote], check=False)
    assert r.returncode == 0, r.stdout
    again = str(tmp_path / "again.tar")
    sh(["tar", "--format=posix", "--numeric-owner", "-cf", again, "-C", remote, "."])
    listing = lambda a: sorted(sh(["tar", "tvf", a, "--full-time", "--numeric-owner"]).stdout.splitlines())
    assert listing(again) == listing(archive)     # (readdir order differs)
    out = str(tmp_path / "out")
    os.mkdir(out)
    sh(["tar", "xpf", again, "-C", out])
    assert snapshot(out, times=True) == snapshot(src, times=True)


def test_tar_dangling_link_keeps_its_time_through_a_listing(pair, mount, sandbox):
    """GNU tar's dangling link: a placeholder file (O_EXCL, mode 0) is
    replaced by the link at the end, whose time is then set (queued), and the
    directory is looked up and its time set before that is sent. The lookup's
    listing of the directory, taken while the link's time waits, must not
    bring back the link's time of creation."""
    _, remote = pair
    d = os.path.join(remote, "docs")
    os.mkdir(d)
    link = os.path.join(d, "dangling")
    os.close(os.open(link, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0))
    os.unlink(link)
    os.symlink("../missing", link)
    t = 1_600_000_000_123_458_789
    os.utime(link, ns=(t, t), follow_symlinks=False)
    os.stat(d)                          # the directory's lookup (a listing of it)
    os.utime(d, ns=(t + 1000, t + 1000))
    # The kernel keeps what the utime answered for up to a second (the
    # mount's kernel TTL): past it, the lstat asks the mount's cache.
    time.sleep(1.1)
    assert os.lstat(link).st_mtime_ns == t
    mount.settle()                      # the queued times are sent
    time.sleep(1.1)
    assert os.lstat(link).st_mtime_ns == t
    assert os.readlink(link) == "../missing"
    ctl(mount.p(sandbox, "ctl"),
        f"exec find {os.path.basename(remote)}/docs/dangling -maxdepth 0 -printf '%y %T@ %l'")
    assert read(mount.p(sandbox, "stdout")).split() == ["l", "1600000000.1234587890", "../missing"]


# ---- git and make ----------------------------------------------------------------

def git(*args, cwd, check=True):
    return subprocess.run(["git", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300,
                          check=check)


def make_repo(path):
    os.makedirs(path)
    git("init", "-q", "-b", "main", cwd=path)
    make_tree(os.path.join(path, "t"))
    git("add", "-A", cwd=path)
    git("commit", "-qm", "first", cwd=path)
    with open(os.path.join(path, "t", "src", "main.c"), "a") as f:
        f.write("/* second */\n")
    git("commit", "-qam", "second", cwd=path)


def git_session(clone):
    """What a user does in a clone; returns what must not depend on where it ran."""
    out = {}
    out["status0"] = git("status", "--porcelain", cwd=clone).stdout
    git("checkout", "-q", "-b", "feature", cwd=clone)
    with open(os.path.join(clone, "t", "README"), "w") as f:
        f.write("changed on feature\n")
    os.symlink("src/run.sh", os.path.join(clone, "t", "run-link"))
    os.chmod(os.path.join(clone, "t", "docs", "secret"), 0o755)
    out["status1"] = git("status", "--porcelain", cwd=clone).stdout
    git("add", "-A", cwd=clone)
    git("commit", "-qm", "feature work", cwd=clone)
    out["tree"] = git("rev-parse", "HEAD^{tree}", cwd=clone).stdout
    out["log"] = git("log", "--format=%s", cwd=clone).stdout
    git("checkout", "-q", "main", cwd=clone)
    out["readme_main"] = open(os.path.join(clone, "t", "README")).read()
    out["has_link_main"] = os.path.lexists(os.path.join(clone, "t", "run-link"))
    out["status2"] = git("status", "--porcelain", cwd=clone).stdout
    git("checkout", "-q", "feature", cwd=clone)
    out["link"] = os.readlink(os.path.join(clone, "t", "run-link"))
    out["status3"] = git("status", "--porcelain", cwd=clone).stdout
    git("gc", "-q", cwd=clone)
    fsck = git("fsck", "--full", "--strict", cwd=clone, check=False)
    out["fsck"] = (fsck.returncode, [l for l in (fsck.stdout + fsck.stderr).splitlines()
                                     if not l.startswith("dangling")])
    return out


def test_git_clone_status_checkout_commit_log_fsck(pair, tmp_path):
    local, remote = pair
    repo = str(tmp_path / "origin")
    make_repo(repo)
    results = []
    for d in pair:
        clone = os.path.join(d, "clone")
        git("clone", "-q", repo, clone, cwd=d)
        results.append(git_session(clone))
    assert results[1] == results[0]
    r = results[1]
    assert r["status0"] == "" and r["status2"] == "" and r["status3"] == ""
    assert r["log"] == "feature work\nsecond\nfirst\n"
    assert r["fsck"] == (0, [])
    assert r["readme_main"] == "hello\n" and r["has_link_main"] is False


def test_make_sees_mtimes(pair):
    _, remote = pair
    write(os.path.join(remote, "Makefile"),
          "out.txt: in.txt\n\tcp in.txt out.txt\n\techo built >> log.txt\n")
    write(os.path.join(remote, "in.txt"), "v1\n")
    assert "cp in.txt out.txt" in sh(["make"], cwd=remote).stdout
    assert "up to date" in sh(["make"], cwd=remote).stdout
    time.sleep(0.05)
    write(os.path.join(remote, "in.txt"), "v2\n")
    assert "cp in.txt out.txt" in sh(["make"], cwd=remote).stdout
    assert read(os.path.join(remote, "out.txt")) == "v2\n"
    time.sleep(0.05)
    sh(["touch", os.path.join(remote, "in.txt")])
    assert "cp in.txt out.txt" in sh(["make"], cwd=remote).stdout
    assert "up to date" in sh(["make"], cwd=remote).stdout
    # A target made older than its source by hand is rebuilt.
    os.utime(os.path.join(remote, "out.txt"), (1_000_000_000, 1_000_000_000))
    assert "cp in.txt out.txt" in sh(["make"], cwd=remote).stdout
    assert read(os.path.join(remote, "log.txt")) == "built\n" * 4


def test_rename_over_an_open_file_is_atomic_in_the_sandbox(pair, mount, sandbox, server):
    """The target is held open by a reader (libfuse then hides it first): a
    watcher in the sandbox still never sees it missing, and the replaced file
    is gone from the sandbox soon after, without any further call."""
    _, remote = pair
    rel = os.path.basename(remote)
    target = os.path.join(remote, "held.txt")
    write(target, "v0\n")
    check = ("end=$((SECONDS+5)); while [ $SECONDS -lt $end ]; do "
             f"[ -e {rel}/held.txt ] || echo MISSING; done; echo done")
    ctl(mount.p(sandbox, "ctl"), "exec " + check)
    time.sleep(0.5)
    for i in range(1, 6):
        tmp = os.path.join(remote, f".held.tmp{i}")
        write(tmp, f"v{i}\n")
        with open(target) as reader:
            os.rename(tmp, target)
            assert reader.read() == f"v{i - 1}\n"
        time.sleep(0.3)
    assert read(mount.p(sandbox, "stdout")) == "done\n"
    assert read(target) == "v5\n"
    assert sorted(os.listdir(remote)) == ["held.txt"]
    # An unlink of an open file still leaves the sandbox by itself.
    victim = os.path.join(remote, "gone.txt")
    write(victim, "x")
    with open(victim) as reader:
        os.unlink(victim)
        time.sleep(0.6)
        import json
        import urllib.request
        from conftest import API_KEY
        if PROVIDER == "vercel":
            # no file API: ask the sandbox
            ctl(mount.p(sandbox, "ctl"), f"exec ls -A {rel}")
            names = read(mount.p(sandbox, "stdout")).split()
        else:
            sid = server.api("GET", f"/sandbox/{sandbox}")["id"]
            req = urllib.request.Request(f"{server.base}/toolbox/{sid}/files?path=/home/daytona/{rel}",
                                         headers={"Authorization": "Bearer " + API_KEY})
            with urllib.request.urlopen(req, timeout=30) as r:
                names = [f["name"] for f in json.loads(r.read())]
        assert "gone.txt" not in names
        assert reader.read() == "x"


def test_tail_f_of_a_log_a_command_writes(work, mount, sandbox):
    """ls, then tail -f of a log that a command in the sandbox appends to: tail shows every
    line. tail's first read brought the directory's small files in one request (fs_prefetch.c),
    its log whole; it polled, and read on from that copy, which ended at the first line: the
    mount answered 0 and the kernel shrank the file's size to the copy's (tail -f showed the
    first line only)."""
    import select
    d = "tail-" + uuid.uuid4().hex[:6]
    ctl(mount.p(sandbox, "ctl"), f"exec mkdir {d} && echo a > {d}/a.log && echo line1 > {d}/b.log")
    assert read(mount.p(sandbox, "exit")) == "0\n"
    logs = sorted(os.listdir(os.path.join(work, d)))
    assert logs == ["a.log", "b.log"]
    tail = subprocess.Popen(["tail", "-f", "-s", "0.2", os.path.join(work, d, "b.log")],
                            stdout=subprocess.PIPE)
    try:
        want = b"".join(b"line%d\n" % i for i in range(1, 6))
        got = b""
        appended = False
        deadline = time.time() + 30
        while got != want and time.time() < deadline:
            if got == b"line1\n" and not appended:
                ctl(mount.p(sandbox, "ctl"), f"exec for i in 2 3 4 5; do sleep 0.3; echo line$i >> {d}/b.log; done")
                appended = True
            if select.select([tail.stdout], [], [], 0.5)[0]:
                got += os.read(tail.stdout.fileno(), 4096)
        assert got == want
    finally:
        tail.kill()
        tail.wait()
