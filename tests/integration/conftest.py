# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the daytonafs integration tests.

A session-wide local Daytona server (scripts/daytona-local) and a mount of
daytonafs on it; tests use the mount as users do, with real programs, and
assert on content, errno and the server's request counters (/_local/stats).

DAYTONAFS_TEST_PROVIDER=vercel runs the same tests against the local Vercel
server (scripts/vercel-local) with -o provider=vercel. A test that holds for
one provider only is marked @pytest.mark.provider("daytona", reason=...)
and is skipped, with its reason, under the other.
"""
import contextlib
import errno
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API_KEY = "integration-test-key"
PROVIDER = os.environ.get("DAYTONAFS_TEST_PROVIDER", "daytona")
VERCEL_TEAM = "team_it"
VERCEL_PROJECT = "prj_it"
# Where a sandbox's commands start (the mount's work/), and the route of a command.
SANDBOX_HOME = "/vercel/sandbox" if PROVIDER == "vercel" else "/home/daytona"
EXEC_ROUTE = "/cmd" if PROVIDER == "vercel" else "/process/execute"


def pytest_configure(config):
    config.addinivalue_line("markers", "provider(name, reason): the test holds for that provider only")


def pytest_collection_modifyitems(config, items):
    for item in items:
        m = item.get_closest_marker("provider")
        if m and m.args and PROVIDER not in m.args:
            why = m.kwargs.get("reason", "")
            item.add_marker(pytest.mark.skip(reason=f"{'/'.join(m.args)} only: {why}"))


@pytest.fixture(scope="session")
def provider():
    """The provider the tests run against: "daytona" or "vercel"."""
    return PROVIDER


def _binary():
    path = os.environ.get("DAYTONAFS_BIN") or os.path.join(ROOT, "build", "daytonafs")
    if not os.path.exists(path):
        pytest.exit(f"daytonafs binary not found at {path}: build first (scripts/test does)", 2)
    return path


# Mounts that are up: Server.reset() settles them first.
LIVE_MOUNTS = []


class Server:
    def __init__(self, tmp, extra_args=()):
        self.data = os.path.join(tmp, "server-data")
        self.log = open(os.path.join(tmp, "server.log"), "w")
        self.provider = PROVIDER
        if PROVIDER == "vercel":
            argv = [os.path.join(ROOT, "scripts", "vercel-local"), "--port", "0", "--data", self.data,
                    "--token", API_KEY, "--team", VERCEL_TEAM, "--project", VERCEL_PROJECT,
                    "--transition-ms", "20", "--quiet", *extra_args]
        else:
            argv = [os.path.join(ROOT, "scripts", "daytona-local"), "--port", "0", "--data", self.data,
                    "--api-key", API_KEY, "--transition-ms", "20", "--quiet", *extra_args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("http"):
            self.proc.kill()
            raise RuntimeError(f"{os.path.basename(argv[0])} did not start (first line {line!r})")
        self.api_url = line
        self.base = line[: -len("/api")]

    def local(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def api(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              "Authorization": "Bearer " + API_KEY})
        with urllib.request.urlopen(req, timeout=60) as r:
            raw = r.read()
            return json.loads(raw) if raw else None

    def stats(self):
        return self.local("GET", "/_local/stats")

    def reset(self):
        """Zeroes the request counters, after every live mount has sent the
        changes it defers (deletes, times: doc/SEMANTICS.md), so that those do
        not land in the next test's count."""
        for m in list(LIVE_MOUNTS):
            m.settle()
        self.local("POST", "/_local/stats/reset")

    def count(self, route_fragment=None, method=None):
        """Requests since the last reset, optionally those whose route contains a fragment."""
        routes = self.stats()["routes"]
        total = 0
        for key, n in routes.items():
            m, _, route = key.partition(" ")
            if method and m != method:
                continue
            if route_fragment and not route.endswith(route_fragment):
                continue
            total += n
        return total

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class Mount:
    def __init__(self, server, tmp, extra_opts=(), name="mnt"):
        self.server = server
        self.path = os.path.join(tmp, name)
        os.makedirs(self.path, exist_ok=True)
        self.cache = os.path.join(tmp, name + "-cache")
        env = dict(os.environ)
        env.pop("DAYTONA_TARGET", None)
        opts = ["cache_dir=" + self.cache, "poll_max=200"]
        if getattr(server, "provider", "daytona") == "vercel":
            for k in ("DAYTONA_API_KEY", "DAYTONA_API_URL", "VERCEL_OIDC_TOKEN"):
                env.pop(k, None)
            env.update({"VERCEL_TOKEN": API_KEY, "VERCEL_TEAM_ID": VERCEL_TEAM,
                        "VERCEL_PROJECT_ID": VERCEL_PROJECT})
            opts += ["provider=vercel", "api_url=" + server.api_url]
        else:
            env.update({"DAYTONA_API_KEY": API_KEY, "DAYTONA_API_URL": server.api_url})
        if os.environ.get("DAYTONAFS_TEST_LOGLEVEL"):
            opts.append("loglevel=" + os.environ["DAYTONAFS_TEST_LOGLEVEL"])
        opts += list(extra_opts)
        self.log = open(os.path.join(tmp, name + ".log"), "w")
        self.proc = subprocess.Popen([_binary(), "-f", "-o", ",".join(opts), self.path],
                                     env=env, stdout=self.log, stderr=self.log)
        deadline = time.time() + 20
        while not os.path.ismount(self.path):
            if self.proc.poll() is not None:
                raise RuntimeError(f"daytonafs exited with {self.proc.returncode}; see {self.log.name}")
            if time.time() > deadline:
                raise RuntimeError("daytonafs did not mount within 20 s")
            time.sleep(0.05)
        LIVE_MOUNTS.append(self)

    def p(self, *parts):
        return os.path.join(self.path, *parts)

    def settle(self):
        """fsync of each sandbox's fs/ directory: waits for the changes this mount
        deferred there (a directory's fsync sends them)."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return
        for name in names:
            try:
                fd = os.open(self.p(name, "fs"), os.O_RDONLY | os.O_DIRECTORY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)

    SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

    def unmount(self, check=True):
        """Unmounts; with check, fails on a non-zero exit or any sanitizer report in the log."""
        if self in LIVE_MOUNTS:
            LIVE_MOUNTS.remove(self)
        subprocess.run(["fusermount3", "-u", self.path], check=False)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            subprocess.run(["fusermount3", "-uz", self.path], check=False)
            self.proc.wait(10)
        self.log.close()
        if not check:
            return
        log = open(self.log.name, errors="replace").read()
        reports = [m for m in self.SANITIZER_MARKS if m in log]
        assert not reports, f"daytonafs reported {reports}; see {self.log.name}:\n{log[-4000:]}"
        assert self.proc.returncode == 0, f"daytonafs exited {self.proc.returncode}; see {self.log.name}"


@contextlib.contextmanager
def mount_maker(server, tmp, defaults=(), name=None):
    """make(*opts) -> a Mount on server with defaults + opts (name(): its directory name,
    else Mount's); every one made is unmounted, with its checks, at the end."""
    made = []

    def make(*opts):
        kw = {"name": name()} if name else {}
        m = Mount(server, tmp, extra_opts=tuple(defaults) + opts, **kw)
        made.append(m)
        return m
    try:
        yield make
    finally:
        for m in made:
            m.unmount()


@pytest.fixture(scope="session")
def tmp_root():
    d = tempfile.mkdtemp(prefix="daytonafs-it-")
    yield d
    if os.environ.get("DAYTONAFS_TEST_KEEP"):
        print(f"\nkept {d} (DAYTONAFS_TEST_KEEP): server and mount logs")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def server(tmp_root):
    s = Server(tmp_root)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def mount(server, tmp_root):
    m = Mount(server, tmp_root)
    yield m
    m.unmount()


def ctl(path, text):
    """Writes a command to a ctl file the way a shell does, raising OSError on failure."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def create_sandbox(mount, prefix="sb"):
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ctl(mount.p("ctl"), f"create {name}")
    return name


@pytest.fixture(scope="module")
def sandbox(mount):
    """A started sandbox for one test module: (mount, name, fs path)."""
    name = create_sandbox(mount, "t")
    yield name
    try:
        ctl(mount.p(name, "ctl"), "delete")
    except OSError:
        pass


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def write(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)


def fail_a_close_keeping_it_open(path, data, faults):
    """Creates path with data and closes it with its upload failing (a 500: EIO), while a dup
    keeps the file open, as a release the kernel has not sent yet does. Returns the dup."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    keep = os.dup(fd)             # the handle stays: no release
    faults.add("upload", status=500, schedule=[True])
    try:
        os.close(fd)
    except OSError as e:
        if e.errno == errno.EIO:
            return keep
        os.close(keep)
        raise
    os.close(keep)
    pytest.fail("the close of %s succeeded although its upload failed" % path)


def sh(cmd, cwd=None, check=True, timeout=120, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), cwd=cwd, check=check, timeout=timeout,
                          capture_output=True, text=kw.pop("text", True), **kw)


@pytest.fixture
def sandbox_faults(server):
    """Faults by kind of request (sandbox_view.Faults), none before the test and none after."""
    from sandbox_view import Faults
    f = Faults(server)
    f.clear()
    yield f
    f.clear()


@pytest.fixture(scope="module")
def view(server, sandbox):
    """The module's sandbox as another client sees it (sandbox_view.SandboxView)."""
    from sandbox_view import SandboxView
    return SandboxView(server, sandbox)
