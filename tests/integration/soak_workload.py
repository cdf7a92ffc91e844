# SPDX-License-Identifier: Apache-2.0
"""The workload of the fault soak (test_faults_soak.py): a seeded plan of file
operations, run through a daytonafs mount while the local server injects faults.

The plan is a pure function of the seed: which operation, on which path, with
which content (each version's bytes come from a per-op key). The run then
follows the plan and records what every syscall returned and how long it took,
and updates the model (soak_model.py) with what each path may now hold. Only
two things depend on outcomes: an append to a path whose content is uncertain
becomes an overwrite, and a failed close is followed at once by a new save of
the same path, as an editor that retries would do, and a look at the sandbox
half a second later (the race of B1: the failed close's last try at release
may land after the new save).
"""
import collections
import errno
import math
import os
import random
import shlex
import threading
import time

from soak_model import ABSENT, DIR

NAME_TAILS = ["a", "b c", "x.txt", "d-e"]
CHUNK = 1024 * 1024
HISTORY_KEYS = ("size", "version", "stat_size", "got", "sandbox_after", "dir_fsync", "exit", "note")
MKDIR_TRIES = 3
RESAVE_LOOK_S = 0.5      # how long after a save that followed a failed close the sandbox is looked at


def errname(e):
    return errno.errorcode.get(e.errno, str(e.errno))


def make_plan(seed, n_ops, max_size):
    """The operations, as if every one of them succeeded (the intended namespace)."""
    r = random.Random(f"soak-plan-{seed}")
    files = {}          # intended files -> intended size
    dirs = [""]
    plan = []
    counter = [0]
    big = 64 * 1024

    def new_name(d):
        counter[0] += 1
        n = "f%05d_%s" % (counter[0], r.choice(NAME_TAILS))
        return f"{d}/{n}" if d else n

    def size():
        # tilted to small files: 80 % up to 64 KiB, the rest up to max_size (log-uniform)
        if r.random() < 0.8 or max_size <= big:
            s = 2 ** r.uniform(0, math.log2(min(big, max_size)))
        else:
            s = 2 ** r.uniform(math.log2(big), math.log2(max_size))
        return max(1, min(max_size, int(s)))

    for i in range(n_ops):
        key = f"{seed}:{i}"
        x = r.random()
        names = sorted(files)
        if x < 0.24 or len(names) < 3:
            p = new_name(r.choice(dirs))
            op = {"kind": "write_new", "path": p, "size": size()}
            files[p] = op["size"]
        elif x < 0.34:
            p = r.choice(names)
            op = {"kind": "overwrite", "path": p, "size": size()}
            files[p] = op["size"]
        elif x < 0.39:
            p = r.choice(names)
            s = max(1, int(2 ** r.uniform(0, 14)))
            if files[p] + s > 2 * max_size:
                op = {"kind": "overwrite", "path": p, "size": s}
                files[p] = s
            else:
                op = {"kind": "append", "path": p, "size": s}
                files[p] += s
        elif x < 0.48:
            src = r.choice(names)
            if r.random() < 0.3:
                dst = r.choice([n for n in names if n != src])
            else:
                dst = new_name(r.choice(dirs))
            op = {"kind": "rename", "path": src, "path2": dst}
            files[dst] = files.pop(src)
        elif x < 0.57:
            p = r.choice(names)
            op = {"kind": "unlink", "path": p, "fsync_dir": r.random() < 0.5}
            del files[p]
        elif x < 0.61:
            base = r.choice([d for d in dirs if d.count("/") < 2])
            counter[0] += 1
            d = (f"{base}/" if base else "") + "d%05d" % counter[0]
            op = {"kind": "mkdir", "path": d}
            dirs.append(d)
        elif x < 0.65:
            # an edit session: saves in a row, big and small in turn, as an
            # editor's autosave (a big save whose close fails, then a small
            # one at once, is the race of B1)
            p = r.choice(names) if r.random() < 0.7 else new_name(r.choice(dirs))
            hi = min(1024 * 1024, max_size)
            sizes = []
            for j in range(r.randint(3, 7)):
                if j % 2 == 0 and hi > big:
                    sizes.append(int(2 ** r.uniform(math.log2(big), math.log2(hi))))
                else:
                    sizes.append(max(1, int(2 ** r.uniform(0, 12))))
            op = {"kind": "edit", "path": p, "sizes": sizes}
            files[p] = sizes[-1]
        elif x < 0.91:
            bigs = [n for n in names if files[n] >= 512 * 1024]
            # a third of the reads on big files: those take the streaming path
            p = r.choice(bigs) if bigs and r.random() < 0.33 else r.choice(names)
            op = {"kind": "read", "path": p}
        elif x < 0.97:
            op = {"kind": "listdir", "path": r.choice(dirs)}
        elif x < 0.985:
            op = {"kind": "exec_sha", "path": r.choice(names)}
        else:
            p = new_name(r.choice(dirs))
            op = {"kind": "exec_create", "path": p}
            files[p] = 1
        op["i"] = i
        op["key"] = key
        plan.append(op)
    return plan


class Violation:
    """What the model does not allow: its class (B1, B2, B4, other), the path,
    what was seen, and the planned operation it was seen at (None: at rest)."""

    def __init__(self, cls, path, text, i=None):
        self.cls, self.path, self.text, self.i = cls, path, text, i


class Runner:
    """Runs a plan through the mount. root: the soak directory on the mount;
    spath: the same directory in the sandbox; box: the sandbox's directory on
    the mount (ctl, stdout, exit)."""

    def __init__(self, model, root, spath, box, op_bound_s, hang_s, on_hang, fetch_uploads=None,
                 sandbox_state=None):
        self.model = model
        self.sandbox_state = sandbox_state
        self.root, self.spath, self.box = root, spath, box
        self.op_bound_s = op_bound_s
        self.records = []
        self.history = collections.defaultdict(list)      # path -> record indices
        self.violations = []
        self.errors = collections.Counter()
        self.kinds = collections.Counter()
        self.failed_closes = []
        self.uploads = []           # (t, bytes_in) of answered bulk uploads, from the server's log
        self.fetch_uploads = fetch_uploads
        self.longest = (0.0, None)  # (seconds, description) of the longest syscall
        self.over_bound = []
        self.dir_fsync = collections.Counter()
        self._busy = None
        self._stop = threading.Event()
        self._hang_s, self._on_hang = hang_s, on_hang
        self.hung = None

    # ---- plumbing
    def full(self, p):
        return os.path.join(self.root, p) if p else self.root

    def sbox(self, p):
        return f"{self.spath}/{p}"

    def call(self, what, fn, *args):
        """One syscall, timed; the watchdog ends the mount if it never returns."""
        t0 = time.monotonic()
        self._busy = (what, t0)
        try:
            return fn(*args)
        finally:
            self._busy = None
            d = time.monotonic() - t0
            self._rec["dur"] = max(self._rec.get("dur", 0.0), d)
            if d > self.longest[0]:
                self.longest = (d, f"op {self._rec['i']} {what}")
            if d > self.op_bound_s:
                self.over_bound.append((d, self._rec["i"], what))

    def _watchdog(self):
        while not self._stop.wait(1.0):
            busy = self._busy
            if busy and time.monotonic() - busy[1] > self._hang_s:
                self.hung = f"{busy[0]} did not return within {self._hang_s:.0f} s"
                self._on_hang()
                return

    def note(self, **kw):
        self._rec.update(kw)

    def fail(self, stage, e):
        self._rec.update(res=errname(e), stage=stage)
        self.errors[f"{self._rec['kind']}/{stage}: {errname(e)}"] += 1

    def violate(self, cls, path, text):
        self.violations.append(Violation(cls, path, text, self._rec["i"]))
        self._rec.setdefault("violation", []).append(cls)

    def parents_exist(self, path):
        d = os.path.dirname(path)
        while d:
            if not self.model.must_exist(d):
                return False
            d = os.path.dirname(d)
        return True

    def enoent_check(self, path, e, other=None):
        """ENOENT is a violation when path and every directory on the way (and
        on the way to other, a rename's destination) must exist."""
        if e.errno != errno.ENOENT or not self.model.must_exist(path) or not self.parents_exist(path):
            return
        if other is not None and not self.parents_exist(other):
            return
        self.violate("other", path, f"ENOENT for a path that must exist "
                     f"(allowed {self.model.describe_states(self.model.get(path))})")

    # ---- the run
    def run(self, plan, max_seconds):
        wd = threading.Thread(target=self._watchdog, daemon=True)
        wd.start()
        t_start = time.monotonic()
        try:
            for op in plan:
                if time.monotonic() - t_start > max_seconds:
                    break
                self.execute(op)
                if self.fetch_uploads and op["i"] % 50 == 49:
                    self.uploads += self.fetch_uploads()
                if self.hung:
                    break
        finally:
            self._stop.set()
            if self.fetch_uploads:
                self.uploads += self.fetch_uploads()
        return time.monotonic() - t_start

    def execute(self, op):
        kind = op["kind"]
        self._rec = {"i": op["i"], "kind": kind, "path": op["path"], "res": "ok"}
        if "path2" in op:
            self._rec["path2"] = op["path2"]
        self._rec["t"] = time.monotonic()
        self.kinds[kind] += 1
        try:
            getattr(self, "op_" + kind)(op)
        except OSError as e:
            # a syscall of the harness itself failed in an unplanned place
            self.fail("harness", e)
        n = len(self.records)
        self.records.append(self._rec)
        for p in (op["path"], op.get("path2")):
            if p is not None:
                self.history[p].append(n)

    # ---- saves
    def op_write_new(self, op):
        self.save(op, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, None)

    def op_overwrite(self, op):
        self.save(op, os.O_WRONLY | os.O_TRUNC, None)

    def op_append(self, op):
        base = self.model.certain_file(op["path"])
        if base is None:
            self._rec["kind"] = "overwrite"
            self._rec["note"] = "append of an uncertain file: overwrite"
            self.save(op, os.O_WRONLY | os.O_TRUNC, None)
        else:
            self.save(op, os.O_WRONLY | os.O_APPEND, base)

    def op_edit(self, op):
        for j, size in enumerate(op["sizes"]):
            if j:
                self.next_record("edit")
            self.save(dict(op, size=size, key=f"{op['key']}:{j}"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, None)

    def next_record(self, kind):
        """Ends the current record and starts another for the same operation."""
        self.records.append(self._rec)
        self.history[self._rec["path"]].append(len(self.records) - 1)
        self._rec = {"i": self._rec["i"], "kind": kind, "path": self._rec["path"], "res": "ok",
                     "t": time.monotonic()}
        self.kinds[kind] += 1

    def save(self, op, flags, base, resave=False):
        m, p = self.model, op["path"]
        key = op["key"] + (":resave" if resave else "")
        size = op["size"]
        if base is None:
            h = m.versions.add_seeded(key, size)
        else:
            h = m.versions.add_append(base, key, size)
        data = m.versions.data(h)[-size:] if base is not None else m.versions.data(h)
        self.note(size=size, version=h[:12])
        try:
            fd = self.call("open", os.open, self.full(p), flags, 0o644)
        except OSError as e:
            self.fail("open", e)
            self.enoent_check(p, e)
            if flags & os.O_CREAT and e.errno == errno.ENOENT and self.parents_exist(p):
                self.violate("other", p, "ENOENT creating a file in a directory that must exist "
                             f"({os.path.dirname(p) or 'the soak directory'})")
            return
        try:
            off = 0
            while off < len(data):
                off += self.call("write", os.write, fd, data[off:off + CHUNK])
        except OSError as e:
            self.fail("write", e)
            try:
                self.call("close", os.close, fd)
            except OSError:
                pass
            m.widen(p, {"F:" + h, "P:" + h})
            m.wrote(p, h, failed_close=True)
            return
        t0 = time.time()
        try:
            self.call("close", os.close, fd)
        except OSError as e:
            self.fail("close", e)
            m.widen(p, {"F:" + h})
            m.wrote(p, h, failed_close=True)
            fc = {"i": op["i"], "path": p, "version": h, "size": len(m.versions.data(h)), "t": t0,
                  "resave": not resave, "errno": errname(e)}
            self.failed_closes.append(fc)
            if not resave:
                # Save again at once, as an application that retries does: a
                # newer version while the failed one may still be in flight.
                self.next_record("resave")
                again = dict(op, size=1 + random.Random(key).randrange(4096))
                self.save(again, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, None, resave=True)
            return
        m.set(p, {"F:" + h})
        m.wrote(p, h)
        if resave and self.sandbox_state:
            self.check_after_resave(p)

    def check_after_resave(self, p):
        """A moment after a save that followed a failed close: the sandbox must
        hold the new save, not the failed one (whose last try at release may
        still be on its way: B1). Later saves of the path would hide it."""
        time.sleep(RESAVE_LOOK_S)
        st, data = self.sandbox_state(p)
        self.note(sandbox_after=f"{st[2:14] if st.startswith('F:') else st}")
        if not st.startswith("ERR") and not self.model.accepts(p, st, data):
            cls, text = self.model.classify(p, st, data, f"the sandbox (API) {RESAVE_LOOK_S} s after "
                                            f"the close of this save returned 0")
            self.violate(cls, p, text)

    # ---- namespace
    def op_rename(self, op):
        src, dst = op["path"], op["path2"]
        try:
            self.call("rename", os.rename, self.full(src), self.full(dst))
        except OSError as e:
            self.fail("rename", e)
            self.enoent_check(src, e, other=dst)
            self.model.renamed(src, dst, ok=False)
            return
        self.model.renamed(src, dst, ok=True)

    def op_unlink(self, op):
        p = op["path"]
        try:
            self.call("unlink", os.unlink, self.full(p))
        except OSError as e:
            self.fail("unlink", e)
            self.enoent_check(p, e)
            self.model.unlinked(p, ok=False)
            return
        self.model.unlinked(p, ok=True)
        if op.get("fsync_dir"):
            try:
                dfd = self.call("open dir", os.open, os.path.dirname(self.full(p)), os.O_RDONLY | os.O_DIRECTORY)
                try:
                    self.call("fsync dir", os.fsync, dfd)
                    self.note(dir_fsync="ok")
                finally:
                    os.close(dfd)
            except OSError as e:
                self.note(dir_fsync=errname(e))
            self.dir_fsync[self._rec["dir_fsync"]] += 1

    def op_mkdir(self, op):
        """mkdir, tried again after a failure as mkdir -p would: the plan goes
        on using the directory, and a lost one would turn its whole subtree
        into ENOENTs. EEXIST on a second try: the first one made it."""
        p = op["path"]
        made = False
        for attempt in range(MKDIR_TRIES):
            try:
                self.call("mkdir", os.mkdir, self.full(p))
                made = True
            except OSError as e:
                if attempt and e.errno == errno.EEXIST:
                    made = True
                else:
                    self.fail("mkdir", e)
                    if e.errno != errno.ENOENT:     # (no parent: trying again is no use)
                        continue
            break
        if not made:
            self.model.widen(p, {DIR})
            return
        if self._rec["res"] != "ok":
            self.note(note=f"{self._rec.pop('stage')}: {self._rec['res']} first, made on try {attempt + 1}", res="ok")
        self.model.set(p, {DIR})

    # ---- observations
    def op_read(self, op):
        p = op["path"]
        try:
            fd = self.call("open", os.open, self.full(p), os.O_RDONLY)
        except OSError as e:
            self.fail("open", e)
            self.enoent_check(p, e)
            return
        parts = []
        try:
            self.note(stat_size=os.fstat(fd).st_size)
            while True:
                b = self.call("read", os.read, fd, CHUNK)
                if not b:
                    break
                parts.append(b)
        except OSError as e:
            self.fail("read", e)
            return
        finally:
            try:
                os.close(fd)
            except OSError:
                pass
        data = b"".join(parts)
        self.check_content(p, data, "read through the mount")

    def check_content(self, p, data, when):
        m = self.model
        st = m.state_of(data)
        self.note(got=f"{st[2:14]} ({len(data)} B)")
        if not m.accepts(p, st, data):
            cls, text = m.classify(p, st, data, when)
            self.violate(cls, p, text)

    def op_listdir(self, op):
        d = op["path"]
        try:
            names = set(self.call("listdir", os.listdir, self.full(d)))
        except OSError as e:
            self.fail("listdir", e)
            if e.errno == errno.ENOENT and d and self.model.must_exist(d):
                self.enoent_check(d, e)
            return
        self.check_listing(d, names, "listing through the mount")

    def check_listing(self, d, names, when):
        m = self.model
        known = set()
        for p, states in list(m.allowed.items()):
            if not p or os.path.dirname(p) != d:
                continue
            n = os.path.basename(p)
            known.add(n)
            if ABSENT not in states and n not in names:
                self.violate("other", p, f"{when}: the name is missing where "
                             f"{m.describe_states(states)} was expected")
            if states == {ABSENT} and n in names:
                if m.removed_by.get(p) == "unlink":
                    self.violate("B4", p, f"{when}: resurrected delete: unlink returned 0, yet the name is listed")
                else:
                    self.violate("other", p, f"{when}: the name is listed after a "
                                 f"{m.removed_by.get(p, 'removal')} that returned 0")
        for n in sorted(names - known):
            p = f"{d}/{n}" if d else n
            self.violate("other", p, f"{when}: a name that no operation made")

    # ---- commands through ctl
    def exec(self, line):
        """Runs one command through NAME/ctl; (exit status text, stdout) or None on an error."""
        fd = self.call("open ctl", os.open, os.path.join(self.box, "ctl"), os.O_WRONLY | os.O_TRUNC)
        try:
            self.call("write ctl", os.write, fd, (line + "\n").encode())
        finally:
            os.close(fd)
        with open(os.path.join(self.box, "exit"), "rb") as f:
            status = self.call("read exit", f.read).decode().strip()
        with open(os.path.join(self.box, "stdout"), "rb") as f:
            out = self.call("read stdout", f.read).decode(errors="replace")
        return status, out

    def op_exec_sha(self, op):
        p = op["path"]
        try:
            status, out = self.exec(f"exec sha256sum -- {shlex.quote(self.sbox(p))} 2>/dev/null")
        except OSError as e:
            self.fail("exec", e)
            return
        self.note(exit=status)
        if status == "0" and out:
            st = "F:" + out.split()[0]
        elif status == "1" and not out:
            st = ABSENT
        else:
            self.note(res="exit " + status)
            return
        if not self.model.accepts(p, st):
            cls, text = self.model.classify(p, st, None, "sha256sum in the sandbox (exec)")
            self.violate(cls, p, text)

    def op_exec_create(self, op):
        p = op["path"]
        text = f"made by exec {op['key']}\n".encode()
        h = self.model.versions.add_raw(text)
        self.model.wrote(p, h)
        try:
            status, _ = self.exec(f"exec printf '%s\\n' {shlex.quote(text.decode().strip())} "
                                  f"> {shlex.quote(self.sbox(p))}")
        except OSError as e:
            # the command may have run all the same (a lost answer is not re-sent)
            self.fail("exec", e)
            self.model.widen(p, {"F:" + h})
            return
        self.note(exit=status)
        if status == "0":
            self.model.set(p, {"F:" + h})
        else:
            self.model.widen(p, {"F:" + h})

    # ---- history of a path, for the failure message
    def path_history(self, paths, limit=40):
        idx = sorted({n for p in paths for n in self.history.get(p, [])})
        lines = []
        for n in idx[-limit:]:
            r = self.records[n]
            args = r["path"] + (f" -> {r['path2']}" if "path2" in r else "")
            extra = " ".join(f"{k}={r[k]}" for k in HISTORY_KEYS if k in r)
            res = r["res"] + (f" at {r['stage']}" if "stage" in r else "")
            lines.append(f"      #{r['i']:<5} {r['kind']:<11} {args}: {res} ({r.get('dur', 0):.3f} s) {extra}")
        if len(idx) > limit:
            lines.insert(0, f"      ({len(idx) - limit} earlier operations left out)")
        return lines
