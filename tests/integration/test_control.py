# SPDX-License-Identifier: Apache-2.0
"""The control plane as the mount sees it: sandbox names that cannot be shown
as they are, a hostile or broken list, secrets in /proc, the start-up check,
old daemons, an eventually consistent list, a missing toolbox address, and
paused sandboxes (doc/SEMANTICS.md: "The sandbox list", "Sandbox names",
section 8).

Against the local server where it can play the part, else against the fake
in fake_daytona.py (127.0.0.1 only)."""
import os

from conftest import API_KEY


# ---- B8: the key is not in /proc/PID/environ ----------------------------------------

def test_key_not_in_proc_environ(mount):
    env = open(f"/proc/{mount.proc.pid}/environ", "rb").read()
    assert API_KEY.encode() not in env
    assert b"DAYTONA_API_URL=" in env     # the rest of the environment is untouched
