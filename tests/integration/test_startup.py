# SPDX-License-Identifier: Apache-2.0
"""Start-up: help, version, and the one-line failures that stop a mount before it happens."""
import pytest
import os
import socket
import subprocess
import time

from conftest import API_KEY, VERCEL_PROJECT, VERCEL_TEAM, _binary


def clean_env():
    """The environment without any provider's credentials."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("DAYTONA_", "VERCEL_"))}


def credentials(server, key=API_KEY, token_in_env=True):
    """(environment, -o options) that mount the local server of the provider
    under test: Daytona's key and URL, or Vercel's token, team and project
    with provider=vercel and the URL as an option."""
    if server.provider == "vercel":
        env = {"VERCEL_TEAM_ID": VERCEL_TEAM, "VERCEL_PROJECT_ID": VERCEL_PROJECT}
        if token_in_env:
            env["VERCEL_TOKEN"] = key
        return env, ["provider=vercel", "api_url=" + server.api_url]
    env = {"DAYTONA_API_URL": server.api_url}
    if token_in_env:
        env["DAYTONA_API_KEY"] = key
    return env, []


def run(args, env_extra, tmp_path, timeout=30):
    env = clean_env()
    env["HOME"] = str(tmp_path)           # no config file from the real home
    env["XDG_CONFIG_HOME"] = str(tmp_path / "cfg")
    env.update(env_extra)
    return subprocess.run([_binary()] + args, env=env, capture_output=True, text=True, timeout=timeout)


def start_mount(argv, env, mnt, cwd=None):
    """Starts daytonafs by hand; returns once mnt is mounted or the process has exited."""
    p = subprocess.Popen([_binary()] + argv, env=env, stderr=subprocess.PIPE, text=True, cwd=cwd)
    for _ in range(200):
        if os.path.ismount(mnt) or p.poll() is not None:
            break
        time.sleep(0.05)
    return p


def stop_mount(p, mnt):
    subprocess.run(["fusermount3", "-u", str(mnt)])
    p.wait(20)


def test_help_and_version(tmp_path):
    r = run(["--help"], {}, tmp_path)
    assert r.returncode == 0
    assert "usage:" in r.stdout and "api_key_file" in r.stdout and "autostart" in r.stdout
    r = run(["--version"], {}, tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("daytonafs ")


def test_missing_credentials(tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = run(["-f", str(mnt)], {}, tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "DAYTONA_API_KEY" in lines[0]
    assert not os.path.ismount(mnt)


def test_key_on_command_line_refused(tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = run(["-f", "-o", "api_key=secret123", str(mnt)], {}, tmp_path)
    assert r.returncode != 0
    assert "api_key_file" in r.stderr and "secret123" not in r.stderr


def test_unreachable_api(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()   # nothing listens there now
    mnt = tmp_path / "m"
    mnt.mkdir()
    r = run(["-f", "-o", "connect_timeout=2,retries=0", str(mnt)],
            {"DAYTONA_API_KEY": "k", "DAYTONA_API_URL": f"http://127.0.0.1:{port}/api"}, tmp_path)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot reach" in r.stderr and "DAYTONA_API_URL" in r.stderr


def test_wrong_key(server, tmp_path):
    mnt = tmp_path / "m"
    mnt.mkdir()
    env, opts = credentials(server, "wrong-key")
    r = run(["-f"] + (["-o", ",".join(opts)] if opts else []) + [str(mnt)], env, tmp_path)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "rejected the credentials" in r.stderr
    assert "wrong-key" not in r.stderr


def test_key_file(server, tmp_path):
    key = tmp_path / "key"
    key.write_text(API_KEY + "\n")
    key.chmod(0o600)
    mnt = tmp_path / "m"
    mnt.mkdir()
    env = clean_env()
    extra, opts = credentials(server, token_in_env=False)
    env.update(extra, HOME=str(tmp_path))
    p = start_mount(["-f", "-o", ",".join(opts + [f"api_key_file={key}", f"cache_dir={tmp_path}/c"]), str(mnt)],
                    env, mnt)
    try:
        assert os.path.ismount(mnt)
        assert "ctl" in os.listdir(mnt)
        # The key is not in the process's command line nor its environment.
        cmdline = open(f"/proc/{p.pid}/cmdline", "rb").read()
        assert API_KEY.encode() not in cmdline
    finally:
        stop_mount(p, mnt)
    assert p.returncode == 0, p.stderr.read()


def test_config_file(server, tmp_path):
    cfg = tmp_path / "cfg" / "daytonafs"
    cfg.mkdir(parents=True)
    if server.provider == "vercel":
        creds = (f"provider = vercel\nvercel_token = {API_KEY}\nvercel_team_id = {VERCEL_TEAM}\n"
                 f"vercel_project_id = {VERCEL_PROJECT}\n")
    else:
        creds = f"api_key = {API_KEY}\n"
    (cfg / "config").write_text(f"# test\n{creds}api_url = {server.api_url}\nattr_timeout = 3\n")
    (cfg / "config").chmod(0o600)
    mnt = tmp_path / "m"
    mnt.mkdir()
    env = clean_env()
    env.update({"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    p = start_mount(["-f", "-o", f"cache_dir={tmp_path}/c", str(mnt)], env, mnt)
    try:
        assert os.path.ismount(mnt), p.stderr.read() if p.poll() is not None else "not mounted"
    finally:
        stop_mount(p, mnt)


def test_fstab_style_invocation(server, tmp_path):
    """mount.fuse3 runs "daytonafs SOURCE MOUNTPOINT -o ...": the source is ignored."""
    key = tmp_path / "key"
    key.write_text(API_KEY + "\n")
    key.chmod(0o600)
    mnt = tmp_path / "m"
    mnt.mkdir()
    env = clean_env()
    extra, opts = credentials(server, token_in_env=False)
    env.update(extra, HOME=str(tmp_path))
    p = start_mount(["daytonafs", str(mnt), "-o", ",".join(opts + [f"api_key_file={key}", f"cache_dir={tmp_path}/c"]),
                     "-f"], env, mnt)
    try:
        assert os.path.ismount(mnt), p.stderr.read() if p.poll() is not None else "not mounted"
    finally:
        stop_mount(p, mnt)


def test_relative_cache_dir(server, tmp_path):
    """-o cache_dir=RELATIVE (and a relative mount point) name paths from where daytonafs was
    started. libfuse makes / the working directory once mounted, -f or not: a relative cache_dir
    was then looked up from /, and every create of the mount failed with ENOENT."""
    from sandbox_view import SandboxView
    from conftest import create_sandbox
    (tmp_path / "m").mkdir()
    env = clean_env()
    extra, opts = credentials(server)
    env.update(extra, HOME=str(tmp_path))
    p = start_mount(["-f", "-o", ",".join(opts + ["cache_dir=rel-cache"]), "m"], env, tmp_path / "m",
                    cwd=tmp_path)

    class Here:
        path = str(tmp_path / "m")

        def p(self, *parts):
            return os.path.join(self.path, *parts)
    try:
        assert os.path.ismount(tmp_path / "m"), p.stderr.read() if p.poll() is not None else "not mounted"
        name = create_sandbox(Here(), "rel")
        f = tmp_path / "m" / name / "fs" / "tmp" / "relative-cache.txt"
        f.write_bytes(b"staged under a relative cache_dir\n")
        assert SandboxView(server, name).read("/tmp/relative-cache.txt") == b"staged under a relative cache_dir\n"
        assert (tmp_path / "rel-cache" / "staging").is_dir()
        assert not os.path.exists("/rel-cache")
        with open(tmp_path / "m" / name / "ctl", "w") as c:
            c.write("delete\n")
    finally:
        stop_mount(p, tmp_path / "m")
    assert p.returncode == 0, p.stderr.read()
