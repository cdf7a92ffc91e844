# SPDX-License-Identifier: Apache-2.0
"""The helper program daytonafs-run (src/helper): the mount sends it with the
first launch in a sandbox, the launcher installs it in STATE_DIR/bin, and the
commands after run by it instead of the wrapper script (two program starts
fewer before a short command ends: issue 12's exec target). Everything else
about a command is the same either way (tests/unit/test_exec.c runs the run_
tests both ways); these check the install, its limits and its fallbacks."""
import os
import subprocess
import time
import uuid

import pytest

from conftest import _binary, create_sandbox, ctl, mount_maker, read


def _has_helper():
    out = subprocess.run([_binary(), "--version"], capture_output=True, text=True).stdout
    return "helper: daytonafs-run" in out


pytestmark = pytest.mark.skipif(not _has_helper(), reason="a build without musl-gcc has no helper")

BIN = "/tmp/.daytonafs/bin"
# The helper's bytes in base64 are over 40 KB; a launch without them is a few KB.
CARRIES_HELPER = 30000


def run(m, sb, command):
    ctl(m.p(sb, "ctl"), "exec " + command)
    code = read(m.p(sb, "exit"))
    return code, read(m.p(sb, "stdout")), read(m.p(sb, "stderr"))


def parent_of_a_command(m, sb):
    """The command line of what started the command: the helper or the wrapper's bash."""
    code, out, _ = run(m, sb, "tr '\\0' ' ' </proc/$PPID/cmdline")
    assert code == "0\n"
    return out


def wait_for_helper(m, sb, present=True):
    """Until STATE_DIR/bin holds the helper (the install runs in the background
    of the launch on Daytona): its names."""
    deadline = time.time() + 15
    while True:
        code, out, _ = run(m, sb, f"ls {BIN} 2>/dev/null | grep '^run-' || true")
        names = out.split()
        if bool(names) == present or time.time() > deadline:
            return names
        time.sleep(0.2)


def launches(server):
    """The bytes of each launch (/process/execute, or Vercel's command) since the last reset."""
    out = []
    for e in server.local("GET", "/_local/log?limit=100000"):
        path = e["path"].split("?")[0]
        if path.endswith("/process/execute") or path.endswith("/cmd"):
            out.append(e["bytes_in"])
    return out


@pytest.fixture
def fresh(server, tmp_root):
    with mount_maker(server, tmp_root, name=lambda: "mnt-helper-" + uuid.uuid4().hex[:6]) as make:
        yield make


def test_commands_run_by_the_helper_once_it_is_installed(fresh, server):
    m = fresh()
    sb = create_sandbox(m, "hlp")
    server.reset()
    assert run(m, sb, "echo first") == ("0\n", "first\n", "")
    sent = launches(server)
    assert len(sent) == 1 and sent[0] > CARRIES_HELPER, sent
    names = wait_for_helper(m, sb)
    assert len(names) == 1 and len(names[0]) == len("run-") + 16, names
    parent = parent_of_a_command(m, sb)
    n = os.readlink(m.p(sb, "cmd", "last"))
    assert parent.startswith(f"{BIN}/{names[0]} /tmp/.daytonafs/cmd/{n}/run "), parent
    # the later launches only look for it
    server.reset()
    assert run(m, sb, "echo second; echo err >&2; exit 3") == ("3\n", "second\n", "err\n")
    sent = launches(server)
    assert len(sent) == 1 and sent[0] < CARRIES_HELPER, sent
    # it is the sandbox user's alone
    code, out, _ = run(m, sb, f"stat -c %a {BIN} {BIN}/{names[0]}")
    assert out == "700\n700\n"
    ctl(m.p(sb, "ctl"), "delete")


def test_a_secret_of_env_is_not_on_the_helpers_command_line(fresh):
    """A process's command line is anyone's to read (ps): env.K=V reaches the
    helper in the record's env file (0700), as it reached the wrapper in its
    script, never as an argument."""
    m = fresh()
    sb = create_sandbox(m, "hlpenv")
    run(m, sb, "true")
    wait_for_helper(m, sb)
    ctl(m.p(sb, "ctl"), "exec env.DFS_SECRET=hunter2 -- tr '\\0' ' ' </proc/$PPID/cmdline; "
                        "echo; echo \"$DFS_SECRET\"")
    assert read(m.p(sb, "exit")) == "0\n"
    line, value = read(m.p(sb, "stdout")).splitlines()
    assert "/bin/run-" in line and "hunter2" not in line
    assert value == "hunter2"
    ctl(m.p(sb, "ctl"), "delete")


def test_name_env_reaches_commands_run_by_the_helper(fresh):
    """NAME/env's variables (STATE_DIR/env), and the command's own env.K=V over them."""
    m = fresh()
    sb = create_sandbox(m, "hlpnenv")
    run(m, sb, "true")
    wait_for_helper(m, sb)
    with open(m.p(sb, "env"), "w") as f:
        f.write("DFS_A=it's a \"value\" $HOME\nDFS_B=from-env-file\n")
    ctl(m.p(sb, "ctl"), "exec env.DFS_B=from-exec -- tr '\\0' ' ' </proc/$PPID/cmdline; echo; "
                        "printf '%s|%s\\n' \"$DFS_A\" \"$DFS_B\"")
    assert read(m.p(sb, "exit")) == "0\n"
    line, values = read(m.p(sb, "stdout")).splitlines()
    assert "/bin/run-" in line
    assert values == "it's a \"value\" $HOME|from-exec"
    with open(m.p(sb, "env"), "w") as f:
        f.write("-DFS_A\n")
    assert run(m, sb, "echo \"${DFS_A-unset}|$DFS_B\"") == ("0\n", "unset|from-env-file\n", "")
    ctl(m.p(sb, "ctl"), "delete")


def test_a_lost_helper_is_sent_again(fresh, server):
    """A sandbox that lost it (a restart that emptied /tmp): the launcher says
    so, and the next launch brings it again."""
    if server.provider == "vercel":
        pytest.skip("vercel-local's sh is the host's dash (Amazon Linux's is bash), which does not "
                    "name the machine: its launcher says nothing rather than run uname every time")
    m = fresh()
    sb = create_sandbox(m, "hlplost")
    run(m, sb, "true")
    wait_for_helper(m, sb)
    assert run(m, sb, f"rm -rf {BIN}") == ("0\n", "", "")
    time.sleep(3.5)     # an install just sent may still be under way: not before (exec.c)
    server.reset()
    assert run(m, sb, "echo by-the-wrapper")[1] == "by-the-wrapper\n"
    assert "/bin/run-" not in parent_of_a_command(m, sb)
    sent = launches(server)
    assert len(sent) == 2 and sent[0] < CARRIES_HELPER and sent[1] > CARRIES_HELPER, sent
    assert len(wait_for_helper(m, sb)) == 1
    assert "/bin/run-" in parent_of_a_command(m, sb)
    ctl(m.p(sb, "ctl"), "delete")


def test_a_helper_that_cannot_be_installed_costs_little(fresh, server):
    """STATE_DIR/bin that cannot be made (a file there): commands run by the
    wrapper, exactly, and the mount sends the helper a bounded number of times
    (the first, then HELPER_RESENDS_MAX = 2 after a launch said it missing)."""
    m = fresh()
    sb = create_sandbox(m, "hlpfail")
    setup = fresh()
    # another mount puts a file where the directory would go
    assert run(setup, sb, f"rm -rf {BIN}; echo no >{BIN}") == ("0\n", "", "")
    server.reset()
    for i in range(8):
        assert run(m, sb, f"echo {i}; echo e{i} >&2; exit {i}") == (f"{i}\n", f"{i}\n", f"e{i}\n")
        if i in (0, 2):
            time.sleep(3.5)    # past the install's grace: a "missing" counts again
    sent = launches(server)
    assert 1 <= sum(1 for b in sent if b > CARRIES_HELPER) <= 3, sent
    assert read(setup.p(sb, "fs", "tmp", ".daytonafs", "bin")) == "no\n"
    assert "/bin/run-" not in parent_of_a_command(m, sb)
    ctl(m.p(sb, "ctl"), "delete")


def test_exec_helper_0_runs_everything_by_the_wrapper(fresh, server):
    m = fresh("exec_helper=0")
    sb = create_sandbox(m, "hlpoff")
    server.reset()
    for i in range(3):
        assert run(m, sb, f"echo {i}") == ("0\n", f"{i}\n", "")
    assert all(b < CARRIES_HELPER for b in launches(server))
    assert wait_for_helper(m, sb, present=False) == []
    assert "/bin/run-" not in parent_of_a_command(m, sb)
    ctl(m.p(sb, "ctl"), "delete")
