# SPDX-License-Identifier: Apache-2.0
"""Transient faults and the answers that only look final (doc/SEMANTICS.md, sections 1,
10 and 11): what is retried, what counts as done, and what a ctl line too long leaves."""
import errno
import os
import uuid

import pytest

from conftest import ctl, read, write
from test_posix import Toolbox


def fault(server, **rule):
    server.local("POST", "/_local/faults", rule)


@pytest.fixture
def no_faults(server):
    yield
    server.local("DELETE", "/_local/faults")


# ---- ctl lines over 1 MiB (B5) -------------------------------------------------------------

def write_long_line(path, line, nxt):
    """Writes line (over 1 MiB) the way a program does (write until done), then the line nxt
    in the same open; the errno each write got (None: none)."""
    fd = os.open(path, os.O_WRONLY)
    got = [None, None]
    try:
        try:
            off = 0
            while off < len(line):
                off += os.write(fd, line[off:])
        except OSError as e:
            got[0] = e.errno
        try:
            os.write(fd, nxt)
        except OSError as e:
            got[1] = e.errno
    finally:
        os.close(fd)    # close runs what is left of a line: here, nothing
    return got


def test_a_sandbox_ctl_line_over_1_mib_is_refused_whole_and_nothing_of_it_runs_at_close(mount, sandbox):
    def numbers():
        return {n for n in os.listdir(mount.p(sandbox, "cmd")) if n.isdigit()}

    before = numbers()
    line = b"exec echo HEAD-RAN; echo " + b"x" * (1 << 20) + b"; echo TAIL-RAN\n"
    assert write_long_line(mount.p(sandbox, "ctl"), line, b"exec echo NEXT-RAN\n") == [errno.EFBIG, None]
    new = sorted(numbers() - before)
    # Only the line written after the refused one ran.
    assert len(new) == 1, new
    assert read(mount.p(sandbox, "cmd", new[0], "command")) == "echo NEXT-RAN\n"
    assert read(mount.p(sandbox, "cmd", new[0], "exit")) == "0\n"
    assert read(mount.p(sandbox, "cmd", new[0], "stdout")) == "NEXT-RAN\n"


def test_a_root_ctl_line_over_1_mib_is_refused_whole(mount):
    name = "efbig-" + uuid.uuid4().hex[:8]
    line = f"create {name} label.k=".encode() + b"y" * (1 << 20) + b"\n"
    assert write_long_line(mount.p("ctl"), line, f"create {name}\n".encode()) == [errno.EFBIG, None]
    # The next line ran alone: the sandbox exists, without the refused line's label.
    assert name in os.listdir(mount.p())
    assert "yyyy" not in read(mount.p(name, "info"))
    ctl(mount.p(name, "ctl"), "delete")
