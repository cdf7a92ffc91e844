# SPDX-License-Identifier: Apache-2.0
"""After tar x through the mount, once attr_timeout passed, the uploaded files
are looked up by one listing of their directory, not a stat each (issue 12:
60 GET /files/info on Daytona, 34 commands on Vercel, for ls -l of 60 files),
on both providers. And a mkdir keeps its parent's cached attributes."""
import os
import subprocess
import time
import uuid

import routes
from conftest import Mount, sh

ATTR = 1       # the mount's attr_timeout: the wait below passes it
NDIRS, PER_DIR = 2, 30


def make_tar(tmp_path):
    src = tmp_path / "src"
    for d in range(NDIRS):
        os.makedirs(src / f"d{d}")
        for i in range(PER_DIR):
            (src / f"d{d}" / f"f{i:02}.c").write_text(f"/* {d} {i} */\n" + "x" * (200 + i) + "\nneedle\n")
    sh(["tar", "-cf", str(tmp_path / "t.tar"), "-C", str(src), "."])
    return tmp_path / "t.tar"


def stats(server):
    """Requests that stat one path: Daytona's GET /files/info (on Vercel a
    stat is a command, as a listing is: those are counted in total)."""
    return routes.count(server, "stat") if server.provider == "daytona" else 0


def test_stat_after_tar_x_lists_each_directory_once(server, tmp_root, sandbox, tmp_path):
    tar = make_tar(tmp_path)
    # dir_timeout long: the listings stay, the files' attributes expire
    m = Mount(server, tmp_root, [f"attr_timeout={ATTR}", "dir_timeout=60"], name="tarstat")
    try:
        top = m.p(sandbox, "work", "tarstat-" + uuid.uuid4().hex[:6])
        os.mkdir(top)
        # (Vercel's sandbox user may not give files to root: tar as root here keeps no owner)
        sh(["tar", "--no-same-owner", "-xf", str(tar), "-C", top])
        dirs = [os.path.join(top, f"d{d}") for d in range(NDIRS)]
        names = sorted(f"f{i:02}.c" for i in range(PER_DIR))

        def wait():
            time.sleep(ATTR + 0.6)     # ours and the kernel's (1 s) attributes expire
            server.reset()

        wait()
        for d in dirs:
            out = subprocess.run(["ls", "-l", d], stdout=subprocess.PIPE, text=True, check=True).stdout
            assert sum(1 for n in names if n in out) == PER_DIR, out
        got = routes.by_kind(server)
        assert stats(server) == 0, got
        assert routes.total(server) <= 2 * NDIRS, (got, routes.sandbox_requests(server))
        n_ls = routes.total(server)

        wait()
        for d in dirs:
            for n in names:
                st = os.stat(os.path.join(d, n))
                assert st.st_size == len(f"/* {dirs.index(d)} {int(n[1:3])} */\n") + 200 + int(n[1:3]) + 8
        got = routes.by_kind(server)
        assert stats(server) == 0, got
        assert routes.total(server) <= 2 * NDIRS, (got, routes.sandbox_requests(server))
        n_stat = routes.total(server)

        wait()
        out = subprocess.run(["grep", "-r", "-c", "needle", "."], cwd=top, stdout=subprocess.PIPE,
                             text=True).stdout
        assert sorted(out.splitlines()) == sorted(f"./d{d}/f{i:02}.c:1" for d in range(NDIRS)
                                                  for i in range(PER_DIR))
        got = routes.by_kind(server)
        assert stats(server) == 0, got
        assert routes.count(server, "download") <= 4, got
        if server.provider == "daytona":
            assert routes.count(server, "exec") <= 2 * NDIRS + 2, got
        else:
            # listings and bulk reads are all commands on Vercel
            assert routes.total(server) <= 4 * NDIRS + 6, got
        print(f"ls -l: {n_ls} requests, stat: {n_stat}, grep -r: {routes.total(server)} {got}")
    finally:
        m.unmount()


def test_mkdir_keeps_the_parents_attributes(server, tmp_root, sandbox):
    """mkdir -p of a path 6 levels deep, then a stat of each level: the
    mkdirs and the lookups of the new names only; each parent keeps its
    cached attributes, its link count one more (it dropped them, and each
    stat of a level cost a listing)."""
    from conftest import SANDBOX_HOME
    m = Mount(server, tmp_root, ["attr_timeout=60", "dir_timeout=60"], name="mkdirstat")
    try:
        name = "mkdirstat-" + uuid.uuid4().hex[:6]
        top = m.p(sandbox, "work", name)
        os.mkdir(top)
        os.stat(top)
        levels = [os.path.join(top, *"abcdef"[:k]) for k in range(1, 7)]
        server.reset()
        for p in levels:
            os.mkdir(p)
        made = routes.total(server)
        server.reset()
        for p in [top] + levels:
            st = os.stat(p)
            sp = os.path.join(SANDBOX_HOME, name, os.path.relpath(p, top))
            hst = os.stat(routes.host_path(server, sandbox, sp))
            assert st.st_nlink == hst.st_nlink, (p, st.st_nlink, hst.st_nlink)
        assert routes.total(server) == 0, routes.by_kind(server)
        print(f"mkdir of 6 levels: {made} requests, their stats: 0 {routes.by_kind(server)}")
    finally:
        m.unmount()
