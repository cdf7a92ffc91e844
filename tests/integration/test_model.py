# SPDX-License-Identifier: Apache-2.0
"""The model-based random test (model.py): thousands of file operations on
the mount and on a local directory side by side, every result compared.

scripts/test runs it with a fixed seed and a bounded count (1,200 operations;
2,500 without scripts/test), scripts/test-long 10,000 on each provider; a longer run:
    DAYTONAFS_MODEL_SEED=42 DAYTONAFS_MODEL_OPS=50000 scripts/test --quick
or, against any mount:  tests/integration/model.py --seed 42 --ops 50000 DIR
"""
import os

import model
from conftest import PROVIDER


def test_model_agrees_with_local_filesystem(mount, sandbox, tmp_path):
    seed = int(os.environ.get("DAYTONAFS_MODEL_SEED", "20260101"))
    ops = int(os.environ.get("DAYTONAFS_MODEL_OPS", "2500"))
    target = mount.p(sandbox, "work", f"model-{seed}")
    log_path = tmp_path / "model.log"
    with open(log_path, "w") as log:
        try:
            # Vercel's sandbox acts as its user, not root (the model here is root): the model
            # then keeps to modes its owner may use (model.USER_MODES).
            n, entries, secs = model.run(seed, ops, target, local_dir=str(tmp_path / "local"), log=log,
                                         as_user=PROVIDER == "vercel")
        except model.Mismatch as e:
            raise AssertionError(f"{e}\n(operation log: {log_path})") from None
    print(f"model: seed {seed}, {n} operations, {entries} entries at the end, {secs:.1f} s")
    assert n == ops
