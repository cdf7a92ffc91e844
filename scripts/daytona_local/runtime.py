"""Sandbox runtime: per-sandbox trees, the sandbox's view of paths, processes, sessions.

Layout under DATA:
    sandboxes/<id>/fs/home/            mounted at /home in the sandbox (holds daytona/, the work dir)
    sandboxes/<id>/fs/tmp/             mounted at /tmp
    sandboxes/<id>/fs/run/             mounted at /run (emptied when the sandbox starts)
    sandboxes/<id>/fs/var/             mounted at /var (with var/tmp; var/run -> /run)
    sandboxes/<id>/sessions/<sid>/     session command logs (server side only, not in the view)
    snapshots/<snapshot-id>/fs/        a copy of a sandbox's fs/ tree
    .root/                             the sandbox's `/`: only mount points and the host's
                                       top-level symlinks (bin -> usr/bin, ...), read-only
    .empty/                            an empty directory that stands for DATA inside the view

The view: `/` is the small read-only .root directory; the host's system directories (/usr, /etc,
/opt, and /bin, /sbin, /lib* where they are real directories) are bound read-only on it; /dev is
a minimal device directory, /proc the host's procfs; /home, /tmp, /run and /var are the
sandbox's own. Nothing else of the host is visible: not its /tmp, /root, /home, /mnt, /media or
/work, and in particular no FUSE mount (a daytonafs mount of this very server under the host's
/tmp would otherwise be walked into by `find /` in a sandbox: deadlocks and EBUSY). Should DATA
lie under one of the bound directories, it is masked by an empty read-only directory. Commands
run under bubblewrap with exactly these mounts (with .root itself as bwrap's root, so `ls /` is
the same listing), and the file API resolves paths component by component with the same mount
table, following symlinks inside the view (an absolute link target restarts at the view's
root), so both see the same tree.

Processes are deliberately NOT in a private pid namespace: a detached process started by one
/process/execute must be visible to, and signalable by, a later one. Every process started for a
sandbox carries the environment marker DAYTONA_LOCAL_SANDBOX=<id>@<data dir>; stopping a sandbox
kills every process carrying it, plus their descendants (found through /proc). The data dir makes
the marker the server's own: two servers on one host may have sandboxes of the same id (Vercel's
are names, such as scripts/test-posix's "posix"), and one must not kill the other's commands. (So this is no security
boundary: commands run as the server's user, in the host's pid namespace.)

Sessions are persistent shells. Each command gets fresh pipes for stdin/stdout/stderr which the
shell opens through /proc/<server pid>/fd/<n> (so nothing has to exist in the sandbox's view), and
Python threads label every line with the 0x01x3 / 0x02x3 markers into the command's log file.
"""
import codecs
import errno
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
import uuid

HOME = "/home/daytona"
MARKER = "DAYTONA_LOCAL_SANDBOX"
STDOUT_PREFIX = b"\x01\x01\x01"
STDERR_PREFIX = b"\x02\x02\x02"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HANG_TIMEOUT = 30.0     # /process/execute: how long to wait for pipes after the shell exited

# bwrap reports a child killed by signal N as exit code 128+N, like a shell would, so "the shell
# was killed" (exitCode -1 in the daemon) cannot be told from "the shell exited with 137". This
# tiny reaper runs the shell as its child inside the sandbox and reports a death by signal on a
# status pipe. (perl starts in a few ms; without perl, exit codes are bwrap's.)
PERL_REAPER = r"""
my $fd = shift @ARGV;
my $pid = fork();
exit 126 unless defined $pid;
if ($pid == 0) {
    if (open(my $f, ">&=", $fd)) { close($f); }
    exec { $ARGV[0] } @ARGV;
    exit 127;
}
while (waitpid($pid, 0) == -1) { exit 126 unless $!{EINTR}; }
my $s = $?;
if ($s & 127) {
    if (open(my $f, ">&=", $fd)) { syswrite($f, "signal " . ($s & 127)); }
    exit(128 + ($s & 127));
}
exit($s >> 8);
"""
MAX_SYMLINKS = 40

# The host's top-level entries a sandbox sees, read-only (those that exist). A symlink among them
# (bin -> usr/bin on merged-/usr systems) is recreated as the same symlink.
HOST_ROOTS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "opt")
# The sandbox's own writable directories: (view path, mode); the top-level ones are mounts.
OWN_DIRS = (("/home", 0o755), ("/home/daytona", 0o755), ("/tmp", 0o1777), ("/run", 0o755),
            ("/run/lock", 0o1777), ("/var", 0o755), ("/var/tmp", 0o1777), ("/var/cache", 0o755),
            ("/var/lib", 0o755), ("/var/log", 0o755))
OWN_LINKS = (("/var/run", "/run"), ("/var/lock", "/run/lock"))
OWN_MOUNTS = ("/home", "/tmp", "/run", "/var")
CGROUP_VIEW = "/sys/fs/cgroup"     # the sandbox's cgroup files (written by the runtime)
ETC_RUN_LINKS = ("resolv.conf", "hosts", "hostname")
# bwrap's --dev: these host devices, plus pts/ and shm/ and the symlinks below
DEVICES = ("full", "null", "random", "tty", "urandom", "zero")
DEV_LINKS = (("core", "/proc/kcore"), ("fd", "/proc/self/fd"), ("ptmx", "pts/ptmx"),
             ("stderr", "/proc/self/fd/2"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"))

# Go converts invalid UTF-8 to U+FFFD byte by byte when a []byte becomes a JSON string.
codecs.register_error("go_replace", lambda e: ("\ufffd" * (e.end - e.start), e.end))


def go_string(data):
    """bytes -> str exactly as Go's JSON encoder would show them (invalid bytes -> U+FFFD each)."""
    return data.decode("utf-8", "go_replace")


def os_error(code, path):
    return OSError(code, os.strerror(code), path)


SHELLS = ("zsh", "bash", "sh")


def pick_shell(name=None):
    """The shell /process/execute and sessions run: the one named (zsh, bash or sh), else zsh
    when the host has it (Daytona's default image has zsh, and its daemon runs the first of
    zsh/bash listed in /etc/shells), else the daemon's rule."""
    if name is not None:
        if name not in SHELLS:
            raise ValueError("the shell must be one of " + ", ".join(SHELLS))
        path = shutil.which(name, path=DEFAULT_PATH)
        if path is None:
            raise RuntimeError("--shell %s: no %s on this host" % (name, name))
        return path
    return shutil.which("zsh", path=DEFAULT_PATH) or daemon_shell()


def daemon_shell():
    """The daemon's rule: the first of zsh/bash listed in /etc/shells, else $SHELL, else sh."""
    try:
        with open("/etc/shells") as f:
            listed = {ln.strip() for ln in f if ln.strip() and not ln.startswith("#")}
    except OSError:
        listed = set()
    for cand in ("/usr/bin/zsh", "/bin/zsh", "/usr/bin/bash", "/bin/bash"):
        if cand in listed and os.access(cand, os.X_OK):
            return cand
    return os.environ.get("SHELL") or shutil.which("sh") or "/bin/sh"


# =============================================================================================
# The view: path mapping and symlink resolution inside the sandbox


class Resolved:
    __slots__ = ("view", "host", "writable", "mount_root")

    def __init__(self, view, host, writable, mount_root):
        self.view, self.host, self.writable, self.mount_root = view, host, writable, mount_root

    def __repr__(self):
        return "Resolved(%r -> %r%s)" % (self.view, self.host, "" if self.writable else ", ro")


class View:
    """Maps sandbox paths to host paths. mounts: [(view_prefix, host_dir, writable)]."""

    def __init__(self, mounts, workdir=HOME):
        # longest prefix first; "/" last
        self.mounts = sorted(((p.rstrip("/") or "/", h, w) for p, h, w in mounts),
                             key=lambda m: -len(m[0]))
        self.workdir = workdir

    def to_host(self, view):
        """(host path, writable, is the mount root itself) of an already resolved view path."""
        for prefix, host, writable in self.mounts:
            if prefix == "/":
                if view == "/":
                    return host, writable, True
                return (host.rstrip("/") + view), writable, False
            if view == prefix:
                return host, writable, True
            if view.startswith(prefix + "/"):
                return host + view[len(prefix):], writable, False
        raise AssertionError("no root mount")

    def absolute(self, path):
        return path if path.startswith("/") else self.workdir + "/" + path

    def resolve(self, path, follow=True, missing="last"):
        """Resolve `path` (relative to the work dir) like the kernel would inside the sandbox.

        follow:  follow a symlink in the last component.
        missing: "last" - only the last component may be missing (its parent must exist);
                 "any"  - any trailing components may be missing (for mkdir -p).
        Raises OSError ENOENT / ENOTDIR / ELOOP like the kernel."""
        if path == "":
            raise os_error(errno.ENOENT, path)
        todo = [c for c in self.absolute(path).split("/") if c][::-1]   # a stack, next on top
        if path.endswith("/") and todo:
            todo.insert(0, ".")          # "file/" must be a directory: checked like "file/."
        stack, links = [], 0
        while todo:
            comp = todo.pop()
            if comp == ".":
                continue
            if comp == "..":
                if stack:
                    stack.pop()
                continue
            view = "/" + "/".join(stack + [comp])
            host, _, is_root = self.to_host(view)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                rest = [c for c in todo if c != "."]
                if rest and missing != "any":
                    raise os_error(errno.ENOENT, path)
                # nothing exists below here: the rest is plain names (".." handled lexically)
                stack.append(comp)
                for c in reversed(todo):
                    if c == "..":
                        if stack:
                            stack.pop()
                    elif c != ".":
                        stack.append(c)
                break
            except NotADirectoryError:
                raise os_error(errno.ENOTDIR, path)
            if stat.S_ISLNK(st.st_mode) and not is_root and (todo or follow):
                links += 1
                if links > MAX_SYMLINKS:
                    raise os_error(errno.ELOOP, path)
                target = os.readlink(host)
                if target.startswith("/"):
                    stack = []
                todo.extend([c for c in target.split("/") if c][::-1])
                continue
            if todo and not stat.S_ISDIR(st.st_mode):
                raise os_error(errno.ENOTDIR, path)   # "file/x", "file/." and "file/"
            stack.append(comp)
        view = "/" + "/".join(stack)
        host, writable, is_root = self.to_host(view)
        return Resolved(view, host, writable, is_root)

    def resolve_entry(self, dir_resolved, name):
        """Resolve one directory entry (following it if it is a symlink): (Resolved, stat)."""
        view = (dir_resolved.view.rstrip("/") or "") + "/" + name
        host, writable, is_root = self.to_host(view)     # the entry may be a mount point
        st = os.lstat(host)
        if not stat.S_ISLNK(st.st_mode) or is_root:
            return Resolved(view, host, writable, is_root), st
        r = self.resolve(view)
        return r, os.stat(r.host)


# =============================================================================================
# Process bookkeeping


def _read_proc(pid, name):
    try:
        with open("/proc/%d/%s" % (pid, name), "rb") as f:
            return f.read()
    except OSError:
        return None


def _ppid(pid):
    data = _read_proc(pid, "stat")
    if not data:
        return None
    try:
        return int(data[data.rindex(b")") + 2:].split()[1])
    except (ValueError, IndexError):
        return None


def find_marked_pids(marker, suffix=False):
    """Pids of live processes of a sandbox: those carrying its marker (Runtime.marker), and their
    descendants. With suffix, those whose marker ends with it: "@DATA_DIR" finds every sandbox's
    of one server."""
    me = os.getpid()
    needle = ("%s=%s" % (MARKER, marker)).encode()
    prefix = ("%s=" % MARKER).encode()
    marked, parents = set(), {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        if pid == me:
            continue
        env = _read_proc(pid, "environ")
        if env and (any(v.startswith(prefix) and v.endswith(needle[len(prefix):])
                        for v in env.split(b"\0")) if suffix else needle in env.split(b"\0")):
            marked.add(pid)
        pp = _ppid(pid)
        if pp is not None:
            parents[pid] = pp
    found = set(marked)
    changed = True
    while changed:          # descendants (processes that scrubbed their environment)
        changed = False
        for pid, pp in parents.items():
            if pp in found and pid not in found and pid != me:
                found.add(pid)
                changed = True
    return found


def process_usage(pids):
    """CPU time (user, system, in microseconds) and resident memory (bytes) of these pids."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    user = system = rss = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command name: state is field 3, so utime (14) is fields[11]
        user += int(fields[11])
        system += int(fields[12])
        rss += int(fields[21]) * page
    u, s = user * 1000000 // tick, system * 1000000 // tick
    return {"user_usec": u, "system_usec": s, "cpu_usec": u + s, "rss": rss}


def _read_kv(path):
    try:
        with open(path) as f:
            return {k: int(v) for k, v in (ln.split() for ln in f if ln.strip())}
    except (OSError, ValueError):
        return {}


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def kill_group(pgid, sig):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# =============================================================================================
# /process/execute


class ExecResult:
    def __init__(self, exit_code, output, timed_out=False):
        self.exit_code, self.output, self.timed_out = exit_code, output, timed_out


# =============================================================================================
# Sessions


class SessionError(Exception):
    """status + Go-style message ("not found: session not found")."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


class Command:
    def __init__(self, cmd_id, command, log_path, is_async, suppress_echo):
        self.id, self.command, self.log_path = cmd_id, command, log_path
        self.is_async, self.suppress_echo = is_async, suppress_echo
        self.exit_code = None
        self.cond = threading.Condition()
        self.exited = threading.Event()      # exit code known
        self.drained = threading.Event()     # both output streams closed and labelled
        self.last_data = time.monotonic()
        self.log = open(log_path, "ab", buffering=0)
        self.in_r, self.in_w = os.pipe()      # the command's stdin, kept open like the daemon's FIFO
        self.cancelled = False

    def append_log(self, data):
        with self.cond:
            if self.log is not None:
                self.log.write(data)
            self.last_data = time.monotonic()
            self.cond.notify_all()

    def set_exit(self, code):
        with self.cond:
            if self.exit_code is None:
                self.exit_code = code
            self.cond.notify_all()
        self.exited.set()

    def finish(self):
        with self.cond:
            if self.log is not None:
                self.log.close()
                self.log = None
            self.cond.notify_all()
        self.drained.set()

    def close_input(self):
        for attr in ("in_w", "in_r"):
            fd = getattr(self, attr)
            if fd is not None:
                setattr(self, attr, None)
                try:
                    os.close(fd)
                except OSError:
                    pass

    def to_json(self):
        d = {"id": self.id, "command": self.command}
        if self.exit_code is not None:
            d["exitCode"] = self.exit_code
        return d


def _labeler(fd, prefix, cmd):
    """The daemon's `while read -r line; do printf PREFIX%s\\n "$line"; done`: every line gets the
    stream's marker and a newline; NUL bytes are lost; a final partial line is terminated."""
    pending = b""
    try:
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            lines = (pending + data).split(b"\n")
            pending = lines.pop()
            if lines:
                cmd.append_log(b"".join(prefix + ln.replace(b"\0", b"") + b"\n" for ln in lines))
        pending = pending.replace(b"\0", b"")
        if pending:
            cmd.append_log(prefix + pending + b"\n")
    finally:
        os.close(fd)


class Session:
    def __init__(self, runtime, sandbox_id, session_id, sandbox_env, legacy=False):
        self.id = session_id
        self.dir = os.path.join(runtime.sandbox_dir(sandbox_id), "sessions", uuid.uuid4().hex)
        os.makedirs(self.dir, exist_ok=True)
        self.commands = {}            # insertion ordered
        self.lock = threading.Lock()
        self.queue = []
        self.queue_cond = threading.Condition(self.lock)
        self.deleted = False
        self.dead = False             # the shell exited
        self.current = None
        self.nonce = uuid.uuid4().hex
        self._stderr = open(os.path.join(self.dir, "shell.stderr"), "ab")
        self.proc = runtime.spawn(sandbox_id, sandbox_env, [runtime.shell], HOME,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=self._stderr)
        self.worker = threading.Thread(target=self._run, name="session-%s" % session_id,
                                       daemon=True)
        self.worker.start()

    # -- API used by the toolbox
    def submit(self, command, is_async, suppress_echo):
        cmd_id = str(uuid.uuid4())
        cmd_dir = os.path.join(self.dir, cmd_id)
        os.makedirs(cmd_dir, exist_ok=True)
        cmd = Command(cmd_id, command, os.path.join(cmd_dir, "output.log"), is_async,
                      suppress_echo)
        with self.lock:
            if self.dead or self.deleted:
                cmd.close_input()
                cmd.finish()
                raise SessionError(400, "bad request: failed to write command: write |1: broken pipe")
            self.commands[cmd_id] = cmd
            self.queue.append(cmd)
            self.queue_cond.notify_all()
        return cmd

    def get(self, cmd_id):
        with self.lock:
            return self.commands.get(cmd_id)

    def to_json(self):
        with self.lock:
            cmds = [c.to_json() for c in self.commands.values()]
        return {"sessionId": self.id, "commands": cmds}

    def send_input(self, cmd, data):
        if self.dead:
            raise SessionError(410, "gone: session process has exited")
        if cmd.exit_code is not None:
            raise SessionError(410, "gone: command has already completed with exit code %d"
                               % cmd.exit_code)
        b = data.encode("utf-8", "surrogateescape")
        if not b.endswith(b"\n"):
            b += b"\n"
        fd = cmd.in_w
        if fd is None:
            raise SessionError(410, "gone: command has already completed")
        if not cmd.suppress_echo:
            # echoed before it is written, so that the log reads like a terminal (the daemon
            # echoes after writing; the order is not part of the contract)
            cmd.append_log(STDOUT_PREFIX + b)
        try:
            view = memoryview(b)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        except OSError as e:
            raise SessionError(500, "failed to write to input pipe: %s" % _go_errstr(e))

    def delete(self, grace=5.0):
        """SIGTERM to the shell's process group, SIGKILL after `grace` seconds."""
        with self.lock:
            self.deleted = True
            self.queue_cond.notify_all()
            unfinished = [c for c in self.commands.values() if c.exit_code is None]
        for c in unfinished:             # before the kill, so that waiters see "cancelled"
            c.cancelled = True
        pgid = self.proc.pid
        kill_group(pgid, signal.SIGTERM)
        if grace > 0:
            t = threading.Timer(grace, kill_group, (pgid, signal.SIGKILL))
            t.daemon = True
            t.start()
        else:
            kill_group(pgid, signal.SIGKILL)
        for c in unfinished:
            with c.cond:
                c.cond.notify_all()

    def cleanup_dir(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the worker: one command at a time, like the daemon's single shell
    def _run(self):
        pid = os.getpid()
        ctl = self.proc.stdout
        try:
            while True:
                with self.lock:
                    while not self.queue and not self.deleted and not self.dead:
                        self.queue_cond.wait()
                    if not self.queue:
                        break
                    cmd = self.queue.pop(0)
                    self.current = cmd
                if self.dead or self.deleted:
                    self._abandon(cmd, 1 if self.deleted else -1)
                    continue
                self._run_one(cmd, pid, ctl)
        finally:
            with self.lock:
                rest, self.queue = self.queue, []
            for cmd in rest:
                self._abandon(cmd, 1)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self._stderr.close()

    def _abandon(self, cmd, code):
        cmd.set_exit(code)
        cmd.close_input()
        cmd.finish()

    def _run_one(self, cmd, pid, ctl):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        script = os.memfd_create("cmd")
        os.write(script, cmd.command.encode("utf-8", "surrogateescape") + b"\n")
        labelers = [threading.Thread(target=_labeler, args=(out_r, STDOUT_PREFIX, cmd), daemon=True),
                    threading.Thread(target=_labeler, args=(err_r, STDERR_PREFIX, cmd), daemon=True)]
        for t in labelers:
            t.start()
        p = "/proc/%d/fd/" % pid
        wrapper = ("{ source %s%d; } <%s%d >%s%d 2>%s%d\nprintf 'E%s %%d\\n' \"$?\"\n"
                   % (p, script, p, cmd.in_r, p, out_w, p, err_w, self.nonce))
        code = None
        try:
            self.proc.stdin.write(wrapper.encode())
            self.proc.stdin.flush()
            want = ("E%s " % self.nonce).encode()
            while True:
                line = ctl.readline()
                if not line:
                    break
                if line.startswith(want):
                    try:
                        code = int(line[len(want):].strip())
                    except ValueError:
                        code = -1
                    break
        except (BrokenPipeError, OSError, ValueError):
            pass
        for fd in (out_w, err_w, script):
            os.close(fd)
        if code is None:
            # the shell went away (`exit` in the command, a kill, or a session delete)
            self.dead = True
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = -1
            code = 1 if self.deleted else (rc if rc >= 0 else -1)
        cmd.set_exit(code)
        cmd.close_input()
        # like the daemon's `wait "$r1" "$r2"`: the next command waits until background processes
        # that inherited this command's stdout/stderr have closed them
        for t in labelers:
            t.join()
        cmd.finish()
        with self.lock:
            self.current = None


# =============================================================================================
# The runtime


class Runtime:
    def __init__(self, data_dir, use_bwrap=None, shell=None):
        os.makedirs(data_dir, exist_ok=True)
        self.data_dir = os.path.realpath(data_dir)
        self.sandboxes_dir = os.path.join(self.data_dir, "sandboxes")
        self.snapshots_dir = os.path.join(self.data_dir, "snapshots")
        self.empty_dir = os.path.join(self.data_dir, ".empty")
        self.root_dir = os.path.join(self.data_dir, ".root")
        for d in (self.sandboxes_dir, self.snapshots_dir, self.empty_dir):
            os.makedirs(d, exist_ok=True)
        self.host_dirs, host_links = host_layout()
        _sync_root(self.root_dir, [n for n, _ in self.host_dirs], host_links)
        # DATA must stay invisible where it lies under a bound host directory (--data /opt/x)
        self.masks = [("/" + n + self.data_dir[len(src):]) for n, src in self.host_dirs
                      if self.data_dir == src or self.data_dir.startswith(src.rstrip("/") + "/")]
        # files the bound /etc links to under the host's /run (resolv.conf on systemd-resolved
        # hosts): copied into the sandbox's own /run so that the links still resolve
        self.run_files = [f for f in (os.path.realpath("/etc/" + n) for n in ETC_RUN_LINKS
                                      if os.path.islink("/etc/" + n))
                          if f.startswith("/run/") and os.path.isfile(f)]
        self._laid_out = set()       # sandbox ids whose tree has all of OWN_DIRS
        # the read-only part of every sandbox's view (bwrap's table in _bwrap_argv)
        self._host_mounts = ([("/", self.root_dir, False), ("/proc", "/proc", False),
                              ("/dev", self.root_dir + "/dev", False)]
                             + [("/" + n, src, False) for n, src in self.host_dirs]
                             + [("/dev/" + n, "/dev/" + n, False) for n in DEVICES
                                if os.path.lexists(self.root_dir + "/dev/" + n)]
                             + [(m, self.empty_dir, False) for m in self.masks])
        self.shell = pick_shell(shell)
        self.perl = shutil.which("perl")
        self.warning = None
        self.bwrap = None
        if use_bwrap is not False:
            self.bwrap = shutil.which("bwrap")
            if self.bwrap and not self._probe_bwrap():
                self.warning = "bwrap cannot run here; commands run directly on the host"
                self.bwrap = None
            elif not self.bwrap:
                self.warning = "bwrap not found; commands run directly on the host"
            if self.warning and use_bwrap:
                raise RuntimeError(self.warning)
        else:
            self.warning = "--no-bwrap: commands run directly on the host"
        if self.warning:
            self.warning += (" (cwd and HOME are the sandbox's directories, but absolute paths in "
                             "commands differ from the file API's)")
        self._lock = threading.Lock()
        self._sessions = {}          # sandbox id -> {session id: Session}
        # sandbox id -> {"volumes": [(mount path, host dir)], "block_network": bool,
        #                "cpu": n, "memory": GiB}; set by the server (the store knows)
        self.surface_of = None
        self._daemon_env = {}        # sandbox id -> the daemon's env after POST /env
        self._cgroup_lock = threading.Lock()   # one writer of the cgroup files at a time
        self._stopping = set()       # sandbox ids being stopped (executes report -1)
        # session shells do not survive the server: drop the logs a previous run left behind
        for sid in os.listdir(self.sandboxes_dir):
            shutil.rmtree(os.path.join(self.sandboxes_dir, sid, "sessions"), ignore_errors=True)

    def _probe_bwrap(self):
        """bwrap can be installed but unusable (no user namespaces, seccomp in a container)."""
        try:
            r = subprocess.run(self._bwrap_argv() + ["--", "true"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20)
            return r.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    # -- paths
    def sandbox_dir(self, sandbox_id):
        if not sandbox_id or "/" in sandbox_id or sandbox_id in (".", ".."):
            raise ValueError("bad sandbox id")
        return os.path.join(self.sandboxes_dir, sandbox_id)

    def tree(self, sandbox_id):
        return os.path.join(self.sandbox_dir(sandbox_id), "fs")

    def _bwrap_argv(self, tree=None):
        """bwrap's mount table: .root as `/`, the host's system directories read-only, a
        minimal /dev, /proc, then the sandbox's own directories. The file API's view() is the
        same table."""
        cmd = [self.bwrap, "--ro-bind", self.root_dir, "/"]
        for name, src in self.host_dirs:
            cmd += ["--ro-bind", src, "/" + name]
        cmd += ["--dev", "/dev", "--proc", "/proc"]
        if tree:
            for m in OWN_MOUNTS:
                cmd += ["--bind", tree + m, m]
        for m in self.masks:
            cmd += ["--tmpfs", m, "--remount-ro", m]
        if tree:
            cmd += self._surface_argv(os.path.basename(os.path.dirname(tree)))
        return cmd

    # -- what the API sets per sandbox: volumes, network policy, cgroup files (issue 16)
    def _surface(self, sandbox_id):
        return (self.surface_of(sandbox_id) if self.surface_of else None) or {}

    def _surface_argv(self, sandbox_id):
        surface = self._surface(sandbox_id)
        cmd = []
        for view, host in self._volume_mounts(sandbox_id, surface):
            cmd += ["--bind", host, view]
        cg = self._write_cgroup(sandbox_id, surface)
        if cg:
            cmd += ["--ro-bind", cg, CGROUP_VIEW]
        if surface.get("block_network"):
            cmd += ["--unshare-net"]      # only a loopback interface inside
        return cmd

    def _volume_mounts(self, sandbox_id, surface):
        """[(mount path, host dir)] of the sandbox's volumes, parents first, with their
        directories made: the volume's own, and the mount point in whatever lies under it
        (the sandbox's tree, an outer volume, or .root, which bwrap cannot write to)."""
        vols = sorted(surface.get("volumes") or (), key=lambda v: len(v[0]))
        if not vols:
            return []
        t = self.tree(sandbox_id)
        mounts = [("/", self.root_dir, True)] + [(m, t + m, True) for m in OWN_MOUNTS]
        for view, host in vols:
            os.makedirs(host, exist_ok=True)
            os.makedirs(View(mounts).to_host(view)[0], exist_ok=True)
            mounts.append((view, host, True))
        return vols

    def _cgroup_dir(self, sandbox_id, surface):
        """The host directory shown at /sys/fs/cgroup, with its mount point in .root (every
        sandbox of this server has that /sys/fs/cgroup, and nothing else of /sys), or None
        when no limits are known (a runtime used without the store)."""
        if "memory" not in surface:
            return None
        os.makedirs(self.root_dir + CGROUP_VIEW, exist_ok=True)
        d = os.path.join(self.sandbox_dir(sandbox_id), "cgroup")
        os.makedirs(d, exist_ok=True)
        return d

    def _write_cgroup(self, sandbox_id, surface):
        """A cgroup v2 style directory for the sandbox (cpu.stat, cpu.max, memory.current,
        memory.peak, memory.max), written before each process starts: the host's own cgroup
        files describe the server, not the sandbox. Usage is summed over the sandbox's live
        processes at that moment (CPU of processes that already exited is not counted)."""
        d = self._cgroup_dir(sandbox_id, surface)
        if d is None:
            return None
        try:
            with self._cgroup_lock:      # concurrent starts share the files and their temp names
                self._write_cgroup_files(d, self.marker(sandbox_id), surface)
        except OSError as e:
            # stale numbers are better than a command that cannot start
            sys.stderr.write("daytona-local: cgroup files of %s: %s\n" % (sandbox_id, e))
        return d

    @staticmethod
    def _write_cgroup_files(d, marker, surface):
        usage = process_usage(find_marked_pids(marker))
        old = _read_kv(os.path.join(d, "cpu.stat"))
        usec = max(usage["cpu_usec"], old.get("usage_usec", 0))
        peak = max(usage["rss"], _read_int(os.path.join(d, "memory.peak")))
        files = {"cpu.stat": "usage_usec %d\nuser_usec %d\nsystem_usec %d\n" % (
                     usec, max(usage["user_usec"], old.get("user_usec", 0)),
                     max(usage["system_usec"], old.get("system_usec", 0))),
                 "cpu.max": "%d 100000\n" % (int(surface.get("cpu") or 1) * 100000),
                 "memory.current": "%d\n" % usage["rss"],
                 "memory.peak": "%d\n" % peak,
                 "memory.max": "%d\n" % int((surface.get("memory") or 1) * (1 << 30))}
        for name, text in files.items():
            tmp = os.path.join(d, "." + name)
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, os.path.join(d, name))

    def view(self, sandbox_id):
        t = self.tree(sandbox_id)
        self._ensure_layout(sandbox_id)
        extra = []
        if os.path.isdir(t):
            surface = self._surface(sandbox_id)
            extra = [(v, h, True) for v, h in self._volume_mounts(sandbox_id, surface)]
            cg = self._cgroup_dir(sandbox_id, surface)
            if cg:
                extra.append((CGROUP_VIEW, cg, False))
        return View(self._host_mounts + [(m, t + m, True) for m in OWN_MOUNTS] + extra)

    def _ensure_layout(self, sandbox_id, force=False):
        """Give an existing tree the sandbox's own directories (trees made by older versions
        lack /run and /var; bwrap needs every bind source to exist)."""
        if sandbox_id in self._laid_out and not force:
            return
        t = self.tree(sandbox_id)
        if not os.path.isdir(t):
            return
        for v, mode in OWN_DIRS:
            _ensure_dir(t + v, mode)
        for v, target in OWN_LINKS:
            if not os.path.lexists(t + v):
                os.symlink(target, t + v)
        for f in self.run_files:
            if not os.path.lexists(t + f):
                try:
                    os.makedirs(os.path.dirname(t + f), exist_ok=True)
                    shutil.copy2(f, t + f)
                except OSError:
                    pass
        self._laid_out.add(sandbox_id)

    def exists(self, sandbox_id):
        return os.path.isdir(self.tree(sandbox_id))

    # -- lifecycle (called by the store)
    def create(self, sandbox_id, env=None, from_snapshot=None):
        sb = self.sandbox_dir(sandbox_id)
        t = self.tree(sandbox_id)
        os.makedirs(sb, exist_ok=True)
        snap = os.path.join(self.snapshots_dir, from_snapshot, "fs") if from_snapshot else None
        if not os.path.isdir(t):
            if snap and os.path.isdir(snap):
                tmp = t + ".partial"
                shutil.rmtree(tmp, ignore_errors=True)
                _copy_tree(snap, tmp)
                os.rename(tmp, t)
            else:
                os.makedirs(t)
        self._ensure_layout(sandbox_id, force=True)

    def start(self, sandbox_id):
        if not self.exists(sandbox_id):
            self.create(sandbox_id)
        with self._lock:
            self._stopping.discard(sandbox_id)
            live = bool(self._sessions.get(sandbox_id))
        if not live:
            # sessions do not survive a stop; their logs go with them; /run starts empty like
            # a tmpfs after a reboot
            shutil.rmtree(os.path.join(self.sandbox_dir(sandbox_id), "sessions"),
                          ignore_errors=True)
            _empty_dir(os.path.join(self.tree(sandbox_id), "run"))
        self._ensure_layout(sandbox_id, force=True)

    def marker(self, sandbox_id):
        """The value of MARKER in the environment of this server's processes of a sandbox."""
        return "%s@%s" % (sandbox_id, self.data_dir)

    def stop(self, sandbox_id):
        with self._lock:
            self._stopping.add(sandbox_id)
            sessions = self._sessions.pop(sandbox_id, {})
            self._daemon_env.pop(sandbox_id, None)    # the daemon restarts with the image's
        for s in sessions.values():
            s.delete(grace=0)
        self.kill_all(sandbox_id)

    def archive(self, sandbox_id):
        # the tree stays where it is; start() finds it again
        self.stop(sandbox_id)

    def destroy(self, sandbox_id):
        self.stop(sandbox_id)
        self._laid_out.discard(sandbox_id)
        shutil.rmtree(self.sandbox_dir(sandbox_id), ignore_errors=True)

    def snapshot(self, sandbox_id, snapshot_id):
        dst = os.path.join(self.snapshots_dir, snapshot_id)
        tmp = dst + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        _copy_tree(self.tree(sandbox_id), os.path.join(tmp, "fs"))
        shutil.rmtree(dst, ignore_errors=True)
        os.rename(tmp, dst)
        return _tree_bytes(os.path.join(dst, "fs"))

    def delete_snapshot(self, snapshot_id):
        if snapshot_id and "/" not in snapshot_id and snapshot_id not in (".", ".."):
            shutil.rmtree(os.path.join(self.snapshots_dir, snapshot_id), ignore_errors=True)

    def kill_all(self, sandbox_id=None):
        """SIGKILL every process of the sandbox (of every sandbox of this server, without one),
        repeatedly, until none is left (a process may fork while we are scanning). Done only after
        two empty scans in a row: a process caught inside execve() shows an empty environment for
        that instant, and an orphan (its parent gone) has no marked ancestor to be found through."""
        empty = 0
        for _ in range(100):
            if sandbox_id is None:
                pids = find_marked_pids("@" + self.data_dir, suffix=True)
            else:
                pids = find_marked_pids(self.marker(sandbox_id))
            if not pids:
                empty += 1
                if empty == 2:
                    return True
                time.sleep(0.01)
                continue
            empty = 0
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            time.sleep(0.01)
        return False

    # -- processes
    def environment(self, sandbox_id, sandbox_env=None, extra=None):
        with self._lock:
            daemon = self._daemon_env.get(sandbox_id)
        if daemon is not None:
            env = dict(daemon)
        else:
            env = self._daemon_start_env(sandbox_id, sandbox_env)
        for k, v in (extra or {}).items():
            env[str(k)] = str(v)
        env[MARKER] = self.marker(sandbox_id)   # last: it is how stop() finds the sandbox's processes
        return env

    def _daemon_start_env(self, sandbox_id, sandbox_env):
        """The environment the daemon starts with: the image's, then the sandbox's env."""
        home = HOME if self.bwrap else self.view(sandbox_id).to_host(HOME)[0]
        env = {"PATH": DEFAULT_PATH, "HOME": home, "USER": "daytona", "LOGNAME": "daytona",
               "LANG": os.environ.get("LANG", "C.UTF-8"),
               "DAYTONA_SANDBOX_ID": sandbox_id, "DAYTONA_SANDBOX_USER": "daytona"}
        for k, v in (sandbox_env or {}).items():
            env[str(k)] = str(v)
        return env

    def update_daemon_env(self, sandbox_id, sandbox_env, set_vars, unset, unset_value_prefix):
        """POST /env: change the daemon's own environment, which every process started later
        inherits, until the sandbox stops. Order as the daemon applies it: unset, then
        unsetValuePrefix (sparing names being set), then set."""
        with self._lock:
            env = self._daemon_env.get(sandbox_id)
        if env is None:
            env = self._daemon_start_env(sandbox_id, sandbox_env)
        env = dict(env)
        for k in unset:
            env.pop(k, None)
        if unset_value_prefix:
            for k in [k for k, v in env.items()
                      if v.startswith(unset_value_prefix) and k not in set_vars]:
                del env[k]
        env.update(set_vars)
        env.pop(MARKER, None)
        with self._lock:
            self._daemon_env[sandbox_id] = env

    def spawn(self, sandbox_id, sandbox_env, argv, cwd_view, extra_env=None, **popen_kw):
        """Start argv inside the sandbox in a new session (its own process group)."""
        view = self.view(sandbox_id)
        env = self.environment(sandbox_id, sandbox_env, extra_env)
        if self.bwrap:
            t = self.tree(sandbox_id)
            cmd = self._bwrap_argv(t) + ["--chdir", cwd_view, "--"] + argv
            host_cwd = t
        else:
            cmd = argv
            host_cwd = view.resolve(cwd_view).host
        return subprocess.Popen(cmd, cwd=host_cwd, env=env, start_new_session=True,
                                close_fds=True, **popen_kw)

    def _look_path(self, sandbox_id, name):
        """Go's exec.LookPath in the sandbox: the view path of an executable, or None."""
        view = self.view(sandbox_id)
        cands = [name] if "/" in name else [d + "/" + name for d in DEFAULT_PATH.split(":")]
        for cand in cands:
            try:
                host = view.resolve(view.absolute(cand)).host
                if os.path.isfile(host) and os.access(host, os.X_OK):
                    return cand
            except (OSError, ValueError):
                continue
        return None

    def execute(self, sandbox_id, sandbox_env, command, cwd=None, envs=None, timeout=None,
                argv=None):
        """/process/execute: the command text is fed to the shell on stdin; stdout and stderr are
        merged in write order. Returns when the shell has exited and the pipe is closed (or
        HANG_TIMEOUT after the exit, when a background process keeps it open).
        With argv (old daemons), argv is exec'd directly, without a shell and with no stdin; a
        program that cannot be found gives -1 and no output, as a failed exec.Command."""
        view = self.view(sandbox_id)
        cwd_view = view.absolute(cwd) if cwd else HOME
        try:
            r = view.resolve(cwd_view)
            if not stat.S_ISDIR(os.stat(r.host).st_mode):
                raise os_error(errno.ENOTDIR, cwd_view)
            cwd_view = r.view
        except OSError as e:
            return ExecResult(-1, ("chdir %s: %s" % (cwd or cwd_view, _go_errstr(e))).encode())
        status_r = status_w = None
        if argv is not None:
            program = self._look_path(sandbox_id, argv[0])
            if program is None:
                return ExecResult(-1, b"")
            argv = [program] + list(argv[1:])
            stdin = subprocess.DEVNULL
        else:
            argv = [self.shell]
            stdin = subprocess.PIPE
        kw = {}
        if self.bwrap and self.perl:
            status_r, status_w = os.pipe()
            argv = [self.perl, "-e", PERL_REAPER, str(status_w)] + argv
            kw["pass_fds"] = (status_w,)
        try:
            proc = self.spawn(sandbox_id, sandbox_env, argv, cwd_view, envs,
                              stdin=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, **kw)
        except OSError as e:
            return ExecResult(-1, ("fork/exec %s: %s" % (argv[0], _go_errstr(e))).encode())
        finally:
            if status_w is not None:
                os.close(status_w)

        def feed():
            try:
                proc.stdin.write(command.encode("utf-8", "surrogateescape"))
            except (BrokenPipeError, OSError, ValueError):
                pass
            finally:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        if stdin == subprocess.PIPE:
            threading.Thread(target=feed, daemon=True).start()

        out = bytearray()
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout if timeout and timeout > 0 else None
        exited_at = None
        timed_out = False
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    timed_out = True
                    kill_group(proc.pid, signal.SIGKILL)
                    break
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > HANG_TIMEOUT:
                    break
                wait = 0.05 if exited_at is None else 0.2
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - now))
                ready, _, _ = select.select([fd], [], [], wait)
                if ready:
                    data = os.read(fd, 1 << 16)
                    if not data:
                        break
                    out += data
        finally:
            proc.stdout.close()
        rc = proc.wait()
        signalled = False
        if status_r is not None:
            os.set_blocking(status_r, False)
            try:
                signalled = os.read(status_r, 64).startswith(b"signal")
            except BlockingIOError:
                pass
            os.close(status_r)
        if timed_out:
            return ExecResult(-1, b"", timed_out=True)
        if rc < 0 or signalled or sandbox_id in self._stopping:
            rc = -1          # killed by a signal (Go's ProcessState.ExitCode())
        return ExecResult(rc, bytes(out))

    # -- sessions
    def create_session(self, sandbox_id, session_id, sandbox_env, legacy=False):
        with self._lock:
            sessions = self._sessions.setdefault(sandbox_id, {})
            if session_id in sessions:
                raise SessionError(409, "conflict: session already exists")
            sessions[session_id] = None           # reserve the name while the shell starts
        try:
            s = Session(self, sandbox_id, session_id, sandbox_env, legacy)
        except Exception:
            with self._lock:
                self._sessions.get(sandbox_id, {}).pop(session_id, None)
            raise
        with self._lock:
            self._sessions.setdefault(sandbox_id, {})[session_id] = s
        return s

    def get_session(self, sandbox_id, session_id):
        with self._lock:
            return self._sessions.get(sandbox_id, {}).get(session_id)

    def list_sessions(self, sandbox_id):
        with self._lock:
            return [s for s in self._sessions.get(sandbox_id, {}).values() if s is not None]

    def delete_session(self, sandbox_id, session_id):
        with self._lock:
            s = self._sessions.get(sandbox_id, {}).get(session_id)
            if s is None:
                return False
            del self._sessions[sandbox_id][session_id]
        s.delete()
        threading.Thread(target=lambda: (s.worker.join(30), s.cleanup_dir()), daemon=True).start()
        return True

    def shutdown(self):
        """Server exit: every process of every sandbox ends, as a machine's do when it goes down
        (sessions' shells, and what commands left running: a detached command's wrapper and the
        command itself would otherwise outlive the server, and its tests). A server started again
        on the same data finds the sandboxes' files, not their processes."""
        with self._lock:
            all_sessions = [s for d in self._sessions.values() for s in d.values() if s]
            self._sessions.clear()
        for s in all_sessions:
            s.delete(grace=0)
        self.kill_all()


def _go_errstr(e):
    """Go's syscall.Errno text: the C strerror in lower case."""
    msg = os.strerror(e.errno) if e.errno else str(e)
    return msg[:1].lower() + msg[1:]


def _ensure_dir(path, mode):
    if not os.path.lexists(path):          # lexists: a link the sandbox put there is its business
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode)


def _empty_dir(path):
    try:
        names = os.listdir(path)
    except OSError:
        return
    for n in names:
        p = os.path.join(path, n)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p, ignore_errors=True)
        else:
            try:
                os.unlink(p)
            except OSError:
                pass


def host_layout():
    """The HOST_ROOTS of this host: ([(name, host directory to bind)], [(name, link target)]).
    A top-level symlink is kept as a symlink when it leads into a bound directory (lib ->
    usr/lib); one that leads elsewhere is bound as the directory it points to."""
    dirs, links = [], []
    for name in HOST_ROOTS:
        try:
            st = os.lstat("/" + name)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            dirs.append((name, "/" + name))
        elif stat.S_ISLNK(st.st_mode):
            links.append(name)
    bound = {n for n, _ in dirs}
    kept = []
    for name in links:
        real = os.path.realpath("/" + name)
        if real.strip("/").split("/")[0] in bound:
            kept.append((name, os.readlink("/" + name)))
        elif os.path.isdir(real):
            dirs.append((name, real))
    return dirs, kept


def _sync_root(root, dir_names, links):
    """Make `root` the sandbox's `/`: a directory per mount point, the top-level symlinks, and a
    /dev like bwrap's --dev (placeholders for the devices, which are mounts in the view).
    Entries that do not belong (the host changed since the last run) are removed."""
    top = {n: ("dir",) for n in dir_names}
    top.update((n, ("link", t)) for n, t in links)
    for m in OWN_MOUNTS + ("/dev", "/proc"):
        top[m[1:]] = ("dir",)
    dev = {n: ("file",) for n in DEVICES if os.path.exists("/dev/" + n)}
    dev.update(pts=("dir",), shm=("dir",))
    dev.update((n, ("link", t)) for n, t in DEV_LINKS)
    _sync_dir(root, top)
    _sync_dir(os.path.join(root, "dev"), dev)
    for n in [n for n, k in top.items() if k == ("dir",) and n != "dev"] + ["dev/pts", "dev/shm"]:
        _sync_dir(os.path.join(root, n), {})          # mount points and bwrap's empty dirs


def _sync_dir(path, spec):
    os.makedirs(path, exist_ok=True)
    os.chmod(path, 0o755)
    for n in os.listdir(path):
        p = os.path.join(path, n)
        want = spec.get(n)
        if os.path.islink(p):
            ok = want is not None and want[0] == "link" and os.readlink(p) == want[1]
        elif os.path.isdir(p):
            ok = want == ("dir",)
        else:
            ok = want == ("file",)
        if not ok:
            if os.path.isdir(p) and not os.path.islink(p):
                shutil.rmtree(p)
            else:
                os.unlink(p)
    for n, kind in spec.items():
        p = os.path.join(path, n)
        if os.path.lexists(p):
            continue
        if kind[0] == "dir":
            os.mkdir(p, 0o755)
            os.chmod(p, 0o755)
        elif kind[0] == "link":
            os.symlink(kind[1], p)
        else:
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))


def _copy_tree(src, dst):
    """A faithful copy (modes, owners, times, symlinks, fifos, hard links): cp -a."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    r = subprocess.run(["cp", "-a", "--reflink=auto", "--", src, dst],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if r.returncode != 0:
        msg = r.stderr.decode(errors="replace").strip()
        if not os.path.isdir(dst):
            raise OSError(errno.EIO, "copy failed: " + msg)
        # cp copies everything it can; a file that vanished or a special file it could not
        # recreate should not fail the whole snapshot
        sys.stderr.write("daytona-local: warning: copying %s: %s\n" % (src, msg))


def _tree_bytes(root):
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for n in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total
