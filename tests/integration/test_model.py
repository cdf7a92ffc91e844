# SPDX-License-Identifier: Apache-2.0
"""The model-based random test (model.py): thousands of file operations on
the mount and on a local directory side by side, every result compared.

scripts/test runs it with a fixed seed and a bounded count; a longer run:
    DAYTONAFS_MODEL_SEED=42 DAYTONAFS_MODEL_OPS=50000 scripts/test --quick
or, against any mount:  tests/integration/model.py --seed 42 --ops 50000 DIR
"""
import pytest
import os

import model


@pytest.mark.provider("daytona", reason="the model is root's view: Vercel's sandbox user is not root, so a directory made read-only (chmod 0444) refuses new files there (EACCES)")
def test_model_agrees_with_local_filesystem(mount, sandbox, tmp_path):
    seed = int(os.environ.get("DAYTONAFS_MODEL_SEED", "20260101"))
    ops = int(os.environ.get("DAYTONAFS_MODEL_OPS", "2500"))
    target = mount.p(sandbox, "work", f"model-{seed}")
    log_path = tmp_path / "model.log"
    with open(log_path, "w") as log:
        try:
            n, entries, secs = model.run(seed, ops, target, local_dir=str(tmp_path / "local"), log=log)
        except model.Mismatch as e:
            raise AssertionError(f"{e}\n(operation log: {log_path})") from None
    print(f"model: seed {seed}, {n} operations, {entries} entries at the end, {secs:.1f} s")
    assert n == ops
