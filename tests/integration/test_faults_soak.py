# SPDX-License-Identifier: Apache-2.0
"""Fault soak: nothing lost, nothing wrong, nothing hangs, under injected faults.

The local server injects faults of every kind (500, 502, 503, 429 with
Retry-After, dropped connections, resets in the middle of a body, slow bodies)
into a share of all control-plane and toolbox requests (soak_faults.py), while
a seeded plan of file operations runs through a mount (soak_workload.py): new
files of 1 B to a few MiB, overwrites, appends, editor-like runs of saves of one
file, renames (some over an existing file), unlinks (some followed by an fsync
of the directory), mkdirs, read-backs, listings, and commands through ctl that
hash or create files in the sandbox. A failed close is followed at once by a
new save of the file, and the sandbox is looked at a moment later. A model
(soak_model.py) keeps the states each path may be in.

Then the faults go, the deferred work is flushed (fsync of every directory,
unmount), and every path is checked against the model through the toolbox API
(files/info, files/download) and through a fresh mount. The test fails on any
silent loss (close returned 0, the content is gone or older), corruption, wrong
read (data that is no allowed version, without an error), resurrected delete
(unlink returned 0, the file is back), failed close whose data is neither in
the sandbox nor in CACHE_DIR/unsaved/, or syscall longer than the bound that
the mount's -o timeout and retries give. Each violation is listed with the
operations on its path.

scripts/test runs it bounded (1,500 operations planned at 10 %, none started
after 45 s: about a minute on a 2-core machine); scripts/test-long runs 4,000
at 10 % and 2,000 at 30 %. By hand, longer or harsher (30 % runs about 4
operations a second), e.g.:
    SOAK_OPS=8000 SOAK_RATE=0.3 SOAK_SEED=7 SOAK_MAX_SECONDS=3600 \\
        DAYTONAFS_BIN=$PWD/build-asan/daytonafs \\
        /usr/bin/python3 -m pytest -q -s tests/integration/test_faults_soak.py
Settings: SOAK_OPS (1500), SOAK_RATE (0.10), SOAK_SEED (1), SOAK_MAX_SIZE in
bytes (3 MiB), SOAK_TIMEOUT and SOAK_RETRIES (the mount's -o timeout, retries:
10, 3), SOAK_MAX_SECONDS (no new operation starts after this many seconds:
300), SOAK_REPORT (a file for the figures, failed closes, violations and every
operation's record, as JSON).

The plan (operations, paths, contents) and the fault rules' random draws
depend on the seed alone. Which request a draw falls on also depends on
timing (deferred batches every 0.5 s, cache expiry), so two runs of one seed
agree up to the first request that timing moved, then differ in detail.
"""
import collections
import errno
import hashlib
import http.client
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import API_KEY, Mount, create_sandbox, ctl
import soak_faults
from soak_model import ABSENT, DIR, Model
from soak_workload import Runner, Violation, make_plan


def env_num(name, default, kind=int):
    return kind(os.environ.get(name, default))


class Toolbox:
    """The sandbox's files, asked straight from the server (no faults by then)."""

    def __init__(self, server, sandbox_id):
        self.base = f"{server.base}/toolbox/{sandbox_id}/files"

    def _get(self, what, path):
        url = f"{self.base}/{what}?path={urllib.parse.quote(path, safe='')}"
        req = urllib.request.Request(url, headers={"Authorization": "Bearer " + API_KEY})
        # Retried: during the run the faults hit these requests too.
        for attempt in range(10):
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                if e.code < 500 and e.code != 429:
                    return e.code, e.read()
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        return 0, b""

    def state(self, path):
        """(state, bytes or None) of a path: "A", "D", "F:sha256" or "ERR..."."""
        st, body = self._get("info", path)
        if st == 404:
            return ABSENT, None
        if st != 200:
            return f"ERRinfo {st}", None
        if json.loads(body).get("isDir"):
            return DIR, None
        st, body = self._get("download", path)
        if st == 404:
            return ABSENT, None
        if st != 200:
            return f"ERRdownload {st}", None
        return "F:" + hashlib.sha256(body).hexdigest(), body


def mount_state(path):
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            return DIR, None
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return ABSENT, None
    except OSError as e:
        return "ERR" + errno.errorcode.get(e.errno, str(e.errno)), None
    return "F:" + hashlib.sha256(data).hexdigest(), data


def unsaved_hashes(cache_dir):
    out = {}
    d = os.path.join(cache_dir, "unsaved")
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, name), "rb") as f:
            out[hashlib.sha256(f.read()).hexdigest()] = name
    return out


def upload_fetcher(server):
    """Answered bulk uploads from the server's request log, (time, bytes in), new ones only."""
    seen = [0.0]

    def fetch():
        new = [(e["t"], e["bytes_in"]) for e in server.local("GET", "/_local/log?limit=10000")
               if e["route"].endswith("/files/bulk-upload") and e["status"] == 200 and e["t"] > seen[0]]
        if new:
            seen[0] = max(t for t, _ in new)
        return new
    return fetch


# A bulk upload's body is the file plus its multipart framing: about 304 bytes
# with curl's boundary, plus the path (measured against the local server).
UPLOAD_FRAMING = 304
UPLOAD_FRAMING_SLACK = 24


def uploaded_after(uploads, t, size, path):
    """Whether the server answered 200 to an upload of this size (and path
    length) since t: the data reached the sandbox, even if a later save
    replaced it there."""
    want = size + UPLOAD_FRAMING + len(path.encode())
    return any(ut >= t and abs(b - want) <= UPLOAD_FRAMING_SLACK for ut, b in uploads)


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Settings:
    """The knobs, from the environment (see the module's docstring)."""

    def __init__(self):
        self.seed = env_num("SOAK_SEED", 1)
        self.ops = env_num("SOAK_OPS", 1500)
        self.rate = env_num("SOAK_RATE", 0.10, float)
        self.max_size = env_num("SOAK_MAX_SIZE", 3 * 1024 * 1024)
        self.timeout_s = env_num("SOAK_TIMEOUT", 10)
        self.retries = env_num("SOAK_RETRIES", 3)
        self.max_seconds = env_num("SOAK_MAX_SECONDS", 300, float)
        self.report = os.environ.get("SOAK_REPORT")
        self.bound = soak_faults.syscall_bound_s(self.timeout_s, self.retries, self.max_size)


def settle(runner, mnt):
    """Faults off: fsync every directory (the deferred changes), deepest first,
    then unmount (what is still staged). Returns (errors by errno, unmount seconds)."""
    errors = collections.Counter()
    dirs = [p for p, s in runner.model.allowed.items() if DIR in s]
    for d in sorted(dirs, key=lambda p: -p.count("/")):
        try:
            fsync_dir(runner.full(d))
        except OSError as e:
            errors[errno.errorcode.get(e.errno, str(e.errno))] += 1
    t0 = time.monotonic()
    mnt.unmount(check=False)
    return errors, time.monotonic() - t0


def verify_at_rest(runner, api_state, vroot):
    """Every path of the model, through the API and through a fresh mount;
    returns (paths in an allowed state by source, the file versions the API holds)."""
    model = runner.model
    verified = collections.Counter()
    held = set()
    for p in sorted(model.allowed):
        for src, (st, data) in (("API", api_state(p)), ("fresh mount", mount_state(os.path.join(vroot, p)))):
            if st.startswith("F:") and src == "API":
                held.add(st[2:])
            if model.accepts(p, st, data):
                verified[src] += 1
                continue
            cls, text = model.classify(p, st, data, f"at rest, {src}")
            runner.violations.append(Violation(cls, p, text))
    # Names that no operation made (an upload that landed on another name).
    for dirpath, dirnames, filenames in os.walk(vroot):
        for n in dirnames + filenames:
            rel = os.path.relpath(os.path.join(dirpath, n), vroot)
            if rel not in model.allowed:
                runner.violations.append(Violation("other", rel, "at rest, fresh mount: a name no operation made"))
    return verified, held


def locate_failed_closes(runner, unsaved, held, spath):
    """Where the data of each failed close went: unsaved/, the sandbox, or the
    sandbox and then replaced by a later save. Anything else is a loss."""
    went = collections.Counter()
    for fc in runner.failed_closes:
        if fc["version"] in unsaved:
            fc["went"] = "unsaved/"
        elif fc["version"] in held:
            fc["went"] = "sandbox"
        elif uploaded_after(runner.uploads, fc["t"], fc["size"], f"{spath}/{fc['path']}"):
            fc["went"] = "sandbox, then replaced"
        else:
            fc["went"] = "NEITHER"
            runner.violations.append(Violation(
                "other", fc["path"], f"the data of the failed close ({fc['size']} B, {fc['errno']}) is "
                f"neither in the sandbox nor in unsaved/", fc["i"]))
        went[fc["went"]] += 1
    return went


def check_mount_exit(runner, m):
    log = open(m.log.name, errors="replace").read()
    reports = [mark for mark in Mount.SANITIZER_MARKS if mark in log]
    if reports or m.proc.returncode != 0:
        runner.violations.append(Violation(
            "other", "", f"the mount {os.path.basename(m.path)} exited {m.proc.returncode} "
            f"with {reports or 'no sanitizer report'}; see {m.log.name}"))


def listed(counter):
    return ", ".join(f"{k} {v}" for k, v in counter.items()) or "none"


def failure_message(figures, runner):
    lines = figures + ["", "VIOLATIONS ([class] path (op): what; then the operations on that path):"]
    by_path = collections.OrderedDict()
    for v in runner.violations:
        by_path.setdefault(v.path, []).append(v)
    for p, vs in by_path.items():
        for v in vs:
            at = f" (op {v.i})" if v.i is not None else ""
            lines.append(f"  [{v.cls}] {p or '-'}{at}: {v.text}")
        if p:
            lines += runner.path_history([p])
    return "\n".join(lines)


@pytest.mark.provider("daytona", reason="its faults would hit Vercel's routes as well (^/api/), but its loss "
                     "accounting tells which upload carried a failed close's data by the request's size in "
                     "the server's log (a multipart bulk-upload: size + 304 + path); a Vercel upload is a "
                     "command of base64 here-documents, or a gzip, whose size does not tell the file")
def test_faults_soak_nothing_lost_nothing_wrong(server, tmp_root):
    # The mounts live in the session's own directory, not in pytest's
    # tmp_path: other pytest sessions of the same user delete old tmp_path
    # directories, and that rm -r would walk into a live mount.
    cfg = Settings()
    mnt = Mount(server, tmp_root, [f"timeout={cfg.timeout_s}", f"retries={cfg.retries}"], name="soak")
    verify_mnt = None
    box_name = None
    try:
        box_name = create_sandbox(mnt, "soak")
        ctl(mnt.p(box_name, "ctl"), "autostop 0")
        toolbox = Toolbox(server, server.api("GET", f"/sandbox/{box_name}")["id"])
        spath = f"/home/daytona/soak-{cfg.seed}"
        root = mnt.p(box_name, "fs", spath[1:])
        os.mkdir(root)

        model = Model()
        model.set("", {DIR})
        runner = Runner(model, root, spath, mnt.p(box_name), cfg.bound, cfg.bound + 60,
                        on_hang=mnt.proc.kill, fetch_uploads=upload_fetcher(server),
                        sandbox_state=lambda p: toolbox.state(f"{spath}/{p}" if p else spath))
        plan = make_plan(cfg.seed, cfg.ops, cfg.max_size)
        server.local("POST", "/_local/stats/reset")
        ids = soak_faults.install(server, cfg.rate, cfg.seed)
        try:
            elapsed = runner.run(plan, cfg.max_seconds)
        finally:
            faults, seen = soak_faults.injected(server, ids)
            server.local("DELETE", "/_local/faults")
        requests = server.stats()["requests"]

        settle_errors, t_unmount = settle(runner, mnt)
        runner.uploads += runner.fetch_uploads()
        verify_mnt = Mount(server, tmp_root, name="soak-verify")
        verified, held = verify_at_rest(runner, runner.sandbox_state, verify_mnt.p(box_name, "fs", spath[1:]))
        verify_mnt.unmount(check=False)
        unsaved = unsaved_hashes(mnt.cache)
        went = locate_failed_closes(runner, unsaved, held, spath)
        for m in (mnt, verify_mnt):
            check_mount_exit(runner, m)
        if runner.hung:
            runner.violations.append(Violation("other", "", "HANG: " + runner.hung))
        for d, i, what in runner.over_bound:
            runner.violations.append(Violation("other", "", f"{what} took {d:.1f} s, over the bound "
                                               f"of {cfg.bound:.0f} s", i))

        fails = [r for r in runner.records if r["res"] != "ok"]
        durs = sorted(r.get("dur", 0.0) for r in runner.records)
        n_faults = sum(faults.values())
        figures = [
            f"soak: seed {cfg.seed}, rate {cfg.rate:.0%}, -o timeout={cfg.timeout_s},retries={cfg.retries}; "
            f"{len(plan)} operations planned, {len(runner.records)} syscall groups run in {elapsed:.0f} s",
            f"  by kind: {listed(collections.Counter(dict(sorted(runner.kinds.items()))))}",
            f"  requests: {requests} ({seen} matched the fault rules); faults injected: {n_faults} "
            f"({n_faults / max(seen, 1):.1%}): {listed(collections.Counter(faults))}",
            f"  failed: {len(fails)}; by errno: {listed(collections.Counter(r['res'] for r in fails))}",
            f"  by operation and stage: {listed(collections.Counter(dict(sorted(runner.errors.items()))))}",
            f"  fsync of the directory after unlink: {listed(runner.dir_fsync)}",
            f"  settle (faults off): fsync of every directory: errors {listed(settle_errors)}; "
            f"unmount {t_unmount:.1f} s",
            f"  failed closes: {len(runner.failed_closes)}; their data went to: {listed(went)}; "
            f"files in unsaved/: {len(unsaved)}",
            f"  paths verified: {len(model.allowed)}; in an allowed state: API {verified['API']}, "
            f"fresh mount {verified['fresh mount']}",
            f"  longest syscall: {runner.longest[0]:.2f} s ({runner.longest[1]}), bound {cfg.bound:.0f} s; "
            f"operations: median {durs[len(durs) // 2]:.3f} s, longest {durs[-1]:.2f} s",
            f"  violations: {len(runner.violations)}: {listed(collections.Counter(v.cls for v in runner.violations))}",
        ]
        print("\n" + "\n".join(figures))
        if cfg.report:
            with open(cfg.report, "w") as f:
                json.dump({"figures": figures, "failed_closes": runner.failed_closes,
                           "violations": [vars(v) for v in runner.violations],
                           "records": runner.records}, f, indent=1, default=str)
        if runner.violations:
            pytest.fail(failure_message(figures, runner), pytrace=False)
    finally:
        try:
            server.local("DELETE", "/_local/faults")
        except OSError:
            pass
        for m in (verify_mnt, mnt):
            if m and not m.log.closed:
                m.unmount(check=False)
        if box_name:
            try:
                server.api("DELETE", f"/sandbox/{box_name}")
            except OSError:
                pass
