"""The sandbox tree and processes of vercel-local: daytona-local's bubblewrap runtime with the
layout of Vercel's default image.

What changes from daytona_local.runtime.Runtime (everything else is inherited, not copied):
  * the sandbox's own writable directories also include /vercel (HOME; the working directory is
    /vercel/sandbox) and /root (HOME of `sudo` commands);
  * commands run as the image's default user, uid/gid 1000 (`ubuntu` for image sandboxes,
    `vercel-sandbox` for legacy runtime sandboxes), named so by a passwd/group overlay, when
    the server runs as root; `sudo: true` commands run as root;
  * `sudo` inside the sandbox is a shim over /usr/bin/sudo: the default user keeps the
    capability to change its uid (ambient CAP_SETUID/CAP_SETGID), and the shim uses it to
    become root, passwordless, like the image's `NOPASSWD:ALL` rule. A real setuid sudo cannot
    work here: bubblewrap sets no_new_privs.

Files the server writes through the file API belong to the default user (chown), as on Vercel, and
the file API acts as that user: fs/write, fs/mkdir and fs/read check the permission bits as the
kernel would for it (api.py `_denied`), so a directory it may not write refuses uploads (403).
"""
import os
import shutil
import subprocess

from daytona_local import runtime as base
from daytona_local.runtime import View

HOME = "/vercel"
WORKDIR = "/vercel/sandbox"
ROOT_HOME = "/root"
USER_ID = 1000
IMAGE_USER = "ubuntu"              # the default image (POST /v3/sandboxes)
RUNTIME_USER = "vercel-sandbox"    # legacy runtimes (POST /v2/sandboxes with `runtime`)
# (view path, mode, owned by the default user): created in every sandbox's tree
EXTRA_DIRS = ((HOME, 0o755, True), (WORKDIR, 0o755, True), (ROOT_HOME, 0o700, False))
EXTRA_MOUNTS = (HOME, ROOT_HOME)
SUDO_PATH = "/usr/bin/sudo"

SUDO_SHIM = r"""#!/bin/sh
# vercel-local's sudo: the default user may run anything as root without a password (the image's
# "NOPASSWD:ALL"); HOME becomes the target user's and the environment is kept ("!env_reset").
user=root
while [ $# -gt 0 ]; do
    case "$1" in
        -u) user="$2"; shift 2 ;;
        -u*) user="${1#-u}"; shift ;;
        --) shift; break ;;
        -*) shift ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: sudo [-u user] command [args...]" >&2; exit 1; }
uid=$(id -u "$user" 2>/dev/null) || { echo "sudo: unknown user $user" >&2; exit 1; }
gid=$(id -g "$user")
home=$(getent passwd "$user" | cut -d: -f6)
HOME="${home:-/}" USER="$user" LOGNAME="$user" SUDO_USER="$(id -un)" \
    exec setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all \
    --ambient-caps=-all -- "$@"
"""


class VercelRuntime(base.Runtime):
    def __init__(self, data_dir, use_bwrap=None):
        super().__init__(data_dir, use_bwrap)
        # mount points of the extra directories in the read-only `/`
        for m in EXTRA_MOUNTS:
            os.makedirs(self.root_dir + m, mode=0o755, exist_ok=True)
        self.as_root = os.geteuid() == 0
        self.setpriv = shutil.which("setpriv")
        self.drop_user = bool(self.as_root and self.setpriv and self.bwrap)
        self.overlays = []              # (view path, host file), bound read-only over the host's
        self.users = {}                 # sandbox id -> user name (IMAGE_USER or RUNTIME_USER)
        etc = os.path.join(self.data_dir, ".etc")
        os.makedirs(etc, exist_ok=True)
        for user in (IMAGE_USER, RUNTIME_USER):
            passwd = "%s:x:%d:%d::%s:/bin/bash\n" % (user, USER_ID, USER_ID, HOME)
            group = "%s:x:%d:\n" % (user, USER_ID)
            for name, line in (("passwd", passwd), ("group", group)):
                _write_overlay(os.path.join(etc, "%s.%s" % (name, user)), "/etc/" + name, line)
        if self.drop_user and os.path.exists(SUDO_PATH):
            shim = os.path.join(etc, "sudo")
            with open(shim, "w") as f:
                f.write(SUDO_SHIM)
            os.chmod(shim, 0o755)
            self.overlays.append((SUDO_PATH, shim))
        elif self.drop_user:
            self.warning = ((self.warning + "; ") if self.warning else "") + \
                "no %s on this host: `sudo` is missing in sandboxes" % SUDO_PATH
        self._etc = etc

    def set_user(self, sandbox_id, legacy_runtime):
        self.users[sandbox_id] = RUNTIME_USER if legacy_runtime else IMAGE_USER

    def user(self, sandbox_id):
        return self.users.get(sandbox_id, IMAGE_USER)

    def _user_overlays(self, sandbox_id):
        user = self.user(sandbox_id)
        return self.overlays + [("/etc/passwd", os.path.join(self._etc, "passwd." + user)),
                                ("/etc/group", os.path.join(self._etc, "group." + user))]

    def _bwrap_argv(self, tree=None):
        cmd = super()._bwrap_argv(tree)
        if tree:
            for m in EXTRA_MOUNTS:
                cmd += ["--bind", tree + m, m]
            sandbox_id = os.path.basename(os.path.dirname(tree))
            for view, host in self._user_overlays(sandbox_id):
                cmd += ["--ro-bind", host, view]
        return cmd

    def view(self, sandbox_id):
        t = self.tree(sandbox_id)
        self._ensure_layout(sandbox_id)
        mounts = list(self._host_mounts)
        mounts += [(m, t + m, True) for m in base.OWN_MOUNTS + EXTRA_MOUNTS]
        mounts += [(v, h, False) for v, h in self._user_overlays(sandbox_id)]
        return View(mounts, workdir=WORKDIR)

    def _ensure_layout(self, sandbox_id, force=False):
        fresh = force or sandbox_id not in self._laid_out
        super()._ensure_layout(sandbox_id, force)
        t = self.tree(sandbox_id)
        if not fresh or not os.path.isdir(t):
            return
        for v, mode, owned in EXTRA_DIRS:
            if not os.path.lexists(t + v):
                os.makedirs(t + v, exist_ok=True)
                os.chmod(t + v, mode)
                if owned:
                    self.chown_default(t + v)

    def default_ids(self):
        """(uid, gid) the file API acts as: the default user's, as on Vercel (a server that is not
        root can only act as itself)."""
        return (USER_ID, USER_ID) if self.as_root else (os.geteuid(), os.getegid())

    def chown_default(self, host_path):
        """Give a file the server created to the sandbox's default user."""
        if self.as_root:
            try:
                os.lchown(host_path, USER_ID, USER_ID)
            except OSError:
                pass

    def environment(self, sandbox_id, sandbox_env=None, extra=None, sudo=False):
        user = "root" if sudo else self.user(sandbox_id)
        home = ROOT_HOME if sudo else HOME
        if not self.bwrap:
            home = self.view(sandbox_id).to_host(home)[0]
        env = {"PATH": base.DEFAULT_PATH, "HOME": home, "USER": user, "LOGNAME": user,
               "LANG": os.environ.get("LANG", "C.UTF-8")}
        for src in (sandbox_env or {}), (extra or {}):
            for k, v in src.items():
                env[str(k)] = str(v)
        env[base.MARKER] = self.marker(sandbox_id)   # last: it is how stop() finds the sandbox's processes
        return env

    def command_argv(self, argv, sudo):
        """argv as run inside bwrap: as the default user unless sudo."""
        if sudo or not self.drop_user:
            return argv
        return [self.setpriv, "--reuid=%d" % USER_ID, "--regid=%d" % USER_ID, "--clear-groups",
                "--inh-caps=+setuid,+setgid", "--ambient-caps=+setuid,+setgid", "--"] + argv

    def spawn_command(self, sandbox_id, sandbox_env, argv, cwd_view, env, sudo, **popen_kw):
        """Start one command of the API (no shell) in the sandbox, in its own process group."""
        full_env = self.environment(sandbox_id, sandbox_env, env, sudo)
        if self.bwrap:
            t = self.tree(sandbox_id)
            cmd = self._bwrap_argv(t) + ["--chdir", cwd_view, "--"] + \
                self.command_argv(argv, sudo)
            host_cwd = t
        else:
            cmd = argv
            host_cwd = self.view(sandbox_id).resolve(cwd_view).host
        return subprocess.Popen(cmd, cwd=host_cwd, env=full_env, start_new_session=True,
                                close_fds=True, **popen_kw)


def _write_overlay(path, host_file, own_line):
    """host_file without the entries for our uid or name, plus own_line."""
    name = own_line.split(":", 1)[0]
    uid = own_line.split(":")[2]
    kept = []
    try:
        with open(host_file) as f:
            for ln in f:
                fields = ln.split(":")
                if len(fields) > 2 and (fields[0] == name or fields[2] == uid):
                    continue
                kept.append(ln if ln.endswith("\n") else ln + "\n")
    except OSError:
        pass
    with open(path + ".tmp", "w") as f:
        f.write("".join(kept) + own_line)
    os.chmod(path + ".tmp", 0o644)
    os.replace(path + ".tmp", path)
