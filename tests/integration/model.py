#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A model-based random test of the file semantics of a daytonafs mount.

A seeded generator makes a sequence of file operations (open with every
flag combination, read, write, pwrite past the end, lseek, ftruncate,
truncate, fsync, fstat, stat, lstat, rename, unlink, mkdir, rmdir, symlink,
readlink, chmod, utime, listdir, whole-file reads) over a small namespace,
so that names collide often, with several descriptors open at once. Each
operation is applied to a local directory (the model: the kernel's own
filesystem) and to a directory on the mount, side by side, and every result
is compared: return values, bytes read, errno, stat fields. At the end the
two trees are compared whole (types, modes, sizes, content, link targets,
and the mtimes that utime set).

    tests/integration/model.py --seed 7 --ops 5000 DIR_ON_MOUNT
runs it against an existing mount (DIR_ON_MOUNT must be empty or absent);
tests/integration/test_model.py runs it in scripts/test with a fixed seed
and a bounded count (env DAYTONAFS_MODEL_SEED, DAYTONAFS_MODEL_OPS).
"""
import argparse
import errno
import os
import random
import shutil
import stat
import sys
import tempfile
import time

DIRS = ["", "d1", "d2", "d1/e"]
NAMES = ["a", "b", "c", "l", "d1", "d2", "e"]
SLOTS = 4
MODES = [0o644, 0o600, 0o755, 0o700, 0o444, 0o640, 0o4755, 0o2750, 0o1777]
# A mount whose sandbox acts as a user that is not root (Vercel's) while the model runs as root:
# modes the owner may still use (read and write; and enter, for a directory) and no set-id bits
# (a write by someone not root clears them), so that both sides allow the same.
USER_MODES = [0o644, 0o600, 0o755, 0o700, 0o640, 0o1777]
TIMES = [1_500_000_000_123_456_789, 1_600_000_000_000_000_000, 1_234_567_890_987_654_321]
ACCESS = [os.O_RDONLY, os.O_WRONLY, os.O_RDWR]
EXTRA = [0, os.O_CREAT, os.O_CREAT | os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_CREAT | os.O_TRUNC,
         os.O_CREAT | os.O_APPEND, os.O_APPEND | os.O_TRUNC]


class Mismatch(AssertionError):
    pass


class Side:
    """One directory tree and its open descriptors."""

    def __init__(self, root):
        self.root = root
        self.fds = [None] * SLOTS

    def p(self, rel):
        return os.path.join(self.root, rel) if rel else self.root

    def close_all(self):
        for i, fd in enumerate(self.fds):
            if fd is not None:
                os.close(fd)
                self.fds[i] = None


def stat_view(st, with_size=True):
    """What must agree between the model and the mount: type, all mode bits,
    size (not for directories: their size is the filesystem's business)."""
    v = {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode))}
    if with_size and not stat.S_ISDIR(st.st_mode):
        v["size"] = st.st_size
    return v


class Model:
    def __init__(self, seed, local_root, mount_root, log=None, as_user=False):
        self.rng = random.Random(seed)
        self.as_user = as_user
        self.seed = seed
        self.a = Side(local_root)     # the model
        self.b = Side(mount_root)     # the mount
        self.log = log
        self.set_mtimes = set(TIMES)
        self.count = 0

    # ---- generation
    def entries(self):
        """What the model's tree holds now: (all entries, directories incl. the root)."""
        ents, dirs = [], [""]
        for dirpath, dirnames, filenames in os.walk(self.a.root):
            rel = os.path.relpath(dirpath, self.a.root)
            rel = "" if rel == "." else rel
            for n in dirnames:
                p = os.path.join(rel, n) if rel else n
                ents.append(p)
                if not os.path.islink(os.path.join(self.a.root, p)):
                    dirs.append(p)
            ents += [os.path.join(rel, n) if rel else n for n in filenames]
        return ents, dirs

    def rel(self):
        """A path: mostly one that exists or could be made, sometimes anything,
        so that both the common case and the errors are exercised."""
        r = self.rng
        ents, dirs = self.entries()
        k = r.random()
        if k < 0.45 and ents:
            return r.choice(ents)
        if k < 0.85:
            d = r.choice(dirs)
        else:
            d = r.choice(DIRS)
        n = r.choice(NAMES)
        return os.path.join(d, n) if d else n

    def data(self):
        k = self.rng.random()
        if k < 0.1:
            return b""
        if k < 0.8:
            n = self.rng.randint(1, 300)
        else:
            n = self.rng.randint(300, 70000)
        return self.rng.randbytes(n)

    def gen(self):
        r = self.rng
        slot = r.randrange(SLOTS)
        open_slots = [i for i, fd in enumerate(self.a.fds) if fd is not None]
        if open_slots and r.random() < 0.9:
            slot = r.choice(open_slots)
        ops = [
            (16, lambda: ("open", slot, self.file_rel(), r.choice(ACCESS) | r.choice(EXTRA), r.choice([0o644, 0o600, 0o755]))),
            (5, lambda: ("close", slot)),
            (6, lambda: ("read", slot, r.choice([0, 1, 100, 4096, 100000]))),
            (5, lambda: ("pread", slot, r.choice([1, 100, 5000]), r.randint(0, 80000))),
            (10, lambda: ("write", slot, self.data())),
            (5, lambda: ("pwrite", slot, self.data(), r.choice([0, r.randint(0, 5000), r.randint(0, 120000)]))),
            (4, lambda: ("lseek", slot, r.randint(0, 20000), r.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END]))),
            (4, lambda: ("ftruncate", slot, r.choice([0, r.randint(0, 5000), r.randint(0, 100000)]))),
            (3, lambda: ("fsync", slot)),
            (3, lambda: ("fstat", slot)),
            (3, lambda: ("truncate", self.rel(), r.choice([0, r.randint(0, 5000), r.randint(5000, 90000)]))),
            (6, lambda: ("stat", self.rel())),
            (6, lambda: ("lstat", self.rel())),
            (6, lambda: ("rename", self.rel(), self.rel())),
            (5, lambda: ("unlink", self.rel())),
            (5, lambda: ("mkdir", self.rel(), r.choice([0o755, 0o700, 0o777, 0o750]))),
            (4, lambda: ("rmdir", self.rel())),
            (5, lambda: ("symlink", r.choice(["a", "b", "d1", "missing", "e/../c", "./c", "d1/e"]), self.rel())),
            (3, lambda: ("readlink", self.rel())),
            (4, lambda: self.chmod_op()),
            (3, lambda: ("utime", self.rel(), r.choice(TIMES), r.choice(TIMES))),
            (4, lambda: ("listdir", r.choice(self.entries()[1] + DIRS))),
            (5, lambda: ("readfile", self.rel())),
        ]
        total = sum(w for w, _ in ops)
        x = r.uniform(0, total)
        op = None
        for w, f in ops:
            x -= w
            if x <= 0:
                op = f()
                break
        op = op or ops[-1][1]()
        if isinstance(op[1], int) and op[0] != "open" and not open_slots and r.random() < 0.8:
            op = ops[0][1]()   # nothing open: mostly open something instead
        return op

    def chmod_op(self):
        rel = self.rel()
        if not self.as_user:
            return ("chmod", rel, self.rng.choice(MODES))
        mode = self.rng.choice(USER_MODES)
        if os.path.isdir(self.a.p(rel)):
            mode |= 0o700
        return ("chmod", rel, mode)

    def file_rel(self):
        """A regular file of the model, mostly (else any path)."""
        files = [p for p in self.entries()[0] if os.path.isfile(os.path.join(self.a.root, p))]
        if files and self.rng.random() < 0.6:
            return self.rng.choice(files)
        return self.rel()

    # ---- application
    def apply(self, side, op):
        """Applies op to one side; returns a comparable result."""
        kind = op[0]
        try:
            if kind == "open":
                _, slot, rel, flags, mode = op
                if side.fds[slot] is not None:
                    os.close(side.fds[slot])
                    side.fds[slot] = None
                fd = os.open(side.p(rel), flags, mode)
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    # A directory descriptor: not what this test is about
                    # (lseek and the like on directories differ by filesystem).
                    os.close(fd)
                    return ("ok", "dir")
                side.fds[slot] = fd
                return ("ok",)
            if kind in ("close", "read", "pread", "write", "pwrite", "lseek", "ftruncate", "fsync", "fstat"):
                fd = side.fds[op[1]]
                if fd is None:
                    return ("noslot",)
                if kind == "close":
                    side.fds[op[1]] = None
                    os.close(fd)
                    return ("ok",)
                if kind == "read":
                    return ("ok", os.read(fd, op[2]))
                if kind == "pread":
                    return ("ok", os.pread(fd, op[2], op[3]))
                if kind == "write":
                    return ("ok", os.write(fd, op[2]))
                if kind == "pwrite":
                    return ("ok", os.pwrite(fd, op[2], op[3]))
                if kind == "lseek":
                    return ("ok", os.lseek(fd, op[2], op[3]))
                if kind == "ftruncate":
                    os.ftruncate(fd, op[2])
                    return ("ok",)
                if kind == "fsync":
                    os.fsync(fd)
                    return ("ok",)
                if kind == "fstat":
                    return ("ok", stat_view(os.fstat(fd)))
            if kind == "truncate":
                os.truncate(side.p(op[1]), op[2])
                return ("ok",)
            if kind == "stat":
                return ("ok", stat_view(os.stat(side.p(op[1]))))
            if kind == "lstat":
                return ("ok", stat_view(os.lstat(side.p(op[1]))))
            if kind == "rename":
                os.rename(side.p(op[1]), side.p(op[2]))
                return ("ok",)
            if kind == "unlink":
                os.unlink(side.p(op[1]))
                return ("ok",)
            if kind == "mkdir":
                os.mkdir(side.p(op[1]), op[2])
                return ("ok",)
            if kind == "rmdir":
                os.rmdir(side.p(op[1]))
                return ("ok",)
            if kind == "symlink":
                os.symlink(op[1], side.p(op[2]))
                return ("ok",)
            if kind == "readlink":
                return ("ok", os.readlink(side.p(op[1])))
            if kind == "chmod":
                os.chmod(side.p(op[1]), op[2])
                return ("ok",)
            if kind == "utime":
                os.utime(side.p(op[1]), ns=(op[2], op[3]))
                st = os.stat(side.p(op[1]))
                return ("ok", st.st_mtime_ns)
            if kind == "listdir":
                return ("ok", sorted(os.listdir(side.p(op[1]))))
            if kind == "readfile":
                with open(side.p(op[1]), "rb") as f:
                    return ("ok", f.read())
        except OSError as e:
            return ("err", errno.errorcode.get(e.errno, e.errno))
        raise ValueError(op)

    def step(self):
        op = self.gen()
        self.count += 1
        ra = self.apply(self.a, op)
        rb = self.apply(self.b, op)
        if self.log:
            self.log.write(f"{self.count} {describe(op)} -> {short(ra)}\n")
        if ra != rb:
            raise Mismatch(f"seed {self.seed}, op {self.count}: {describe(op)}\n"
                           f"  model: {short(ra)}\n  mount: {short(rb)}")

    def run(self, n):
        for _ in range(n):
            self.step()
        self.a.close_all()
        self.b.close_all()
        self.compare_trees()

    # ---- the final comparison
    def tree(self, root):
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                rel = os.path.relpath(full, root)
                st = os.lstat(full)
                v = stat_view(st)
                if stat.S_ISLNK(st.st_mode):
                    v["target"] = os.readlink(full)
                elif stat.S_ISREG(st.st_mode):
                    with open(full, "rb") as f:
                        v["content"] = f.read()
                    if st.st_mtime_ns in self.set_mtimes:
                        v["mtime"] = st.st_mtime_ns
                out[rel] = v
        return out

    def compare_trees(self):
        ta, tb = self.tree(self.a.root), self.tree(self.b.root)
        if ta.keys() != tb.keys():
            raise Mismatch(f"seed {self.seed}: the trees differ in names: model only "
                           f"{sorted(ta.keys() - tb.keys())}, mount only {sorted(tb.keys() - ta.keys())}")
        for k in sorted(ta):
            va, vb = dict(ta[k]), dict(tb[k])
            if "mtime" in va and "mtime" not in vb:
                vb["mtime"] = os.lstat(os.path.join(self.b.root, k)).st_mtime_ns
            if va != vb:
                raise Mismatch(f"seed {self.seed}: {k} differs at the end:\n  model: {short(va)}\n"
                               f"  mount: {short(vb)}")
        return len(ta)


def short(v, limit=300):
    s = repr(v)
    return s if len(s) <= limit else s[:limit] + f"... ({len(s)} chars)"


def describe(op):
    parts = []
    for x in op:
        if isinstance(x, bytes):
            parts.append(f"<{len(x)} bytes>")
        elif isinstance(x, int) and op[0] in ("open",) and x > 0o7777:
            parts.append(flags_name(x))
        else:
            parts.append(repr(x))
    return "(" + ", ".join(parts) + ")"


def flags_name(flags):
    names = [("O_WRONLY", os.O_WRONLY), ("O_RDWR", os.O_RDWR), ("O_CREAT", os.O_CREAT), ("O_EXCL", os.O_EXCL),
             ("O_TRUNC", os.O_TRUNC), ("O_APPEND", os.O_APPEND)]
    got = [n for n, f in names if flags & f] or ["O_RDONLY"]
    return "|".join(got)


def run(seed, ops, mount_dir, local_dir=None, log=None, as_user=False):
    """Runs the model; returns (operations, entries compared, seconds). as_user: the mount's
    sandbox acts as a user that is not root (USER_MODES)."""
    own_local = local_dir is None
    local_dir = local_dir or tempfile.mkdtemp(prefix=f"model-{seed}-")
    os.makedirs(local_dir, exist_ok=True)
    os.makedirs(mount_dir, exist_ok=True)
    if os.listdir(mount_dir):
        raise SystemExit(f"{mount_dir} is not empty")
    t0 = time.time()
    old = os.umask(0o022)
    try:
        m = Model(seed, local_dir, mount_dir, log, as_user)
        m.run(ops)
        entries = len(m.tree(local_dir))
    finally:
        os.umask(old)
        if own_local:
            shutil.rmtree(local_dir, ignore_errors=True)
    return ops, entries, time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", type=int, default=2000)
    ap.add_argument("--log", help="write each operation and its result here")
    ap.add_argument("--as-user", action="store_true",
                    help="the sandbox acts as a user that is not root (Vercel): owner-usable modes only")
    ap.add_argument("dir", help="an empty (or missing) directory on the mount")
    args = ap.parse_args()
    log = open(args.log, "w") if args.log else None
    try:
        n, entries, secs = run(args.seed, args.ops, args.dir, log=log, as_user=args.as_user)
    except Mismatch as e:
        print(f"MISMATCH: {e}", file=sys.stderr)
        return 1
    finally:
        if log:
            log.close()
    print(f"seed {args.seed}: {n} operations agree, {entries} entries compared at the end, {secs:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
