"""rlreason.rewards.sandbox: limits are per sandbox (cgroup, uid pool), so one sandbox's bomb cannot fail another's
honest program, and each sandbox's cgroup is made, joined and removed (issue 22)."""
from __future__ import annotations

import os
import textwrap
import threading
import time

import pytest

from rlreason.rewards import REWARDS
from rlreason.rewards import _sandbox_cgroup as cg
from rlreason.rewards.sandbox import UID_BASE, UID_POOL, Job, Limits, features, run, sandbox_uid
from rlreason.types import Completion, Rollout, Sample

CGROUPS = os.geteuid() == 0 and cg.controllers() is not None
needs_cgroups = pytest.mark.skipif(not CGROUPS, reason="no writable cgroup tree here (not root): the sandbox "
                                   "limits memory per process and processes per sandbox uid only (docs/rewards.md)")

HONEST = """
    import os, time
    def f(x):
        time.sleep(1)  # by now the bombs beside it hold every process / byte they can get
        kids = [os.fork() for _ in range(4)]
        if 0 in kids:
            os._exit(0)
        for pid in kids:
            os.waitpid(pid, 0)
        data = bytearray(96 << 20)
        return x + 1"""
FORK_BOMB = """
    import os, time
    def f(x): return x + 1
    while True:  # grab every process slot and keep it
        try:
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
        except OSError:
            time.sleep(0.01)"""
MEMORY_BOMB = """
    import os, time
    kids = []
    for _ in range(4):  # 4 x 200 MiB: each process under its own RLIMIT_AS, the sandbox far over its memory
        pid = os.fork()
        if pid == 0:
            block = bytearray(200 << 20)
            time.sleep(2)
            os._exit(0)
        kids.append(pid)
    survived = all(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in kids)
    def f(x): return x + 1 if survived else None"""


def rollout(codes):
    samples = [Sample(id=f"s{i}", task="code", prompt="p", answer={"tests": ["assert f(3) == 4"]}) for i in range(len(codes))]
    return Rollout(samples, [Completion(f"```python\n{textwrap.dedent(c)}\n```", [1], [0.0], "stop") for c in codes], 1)


def leftovers():
    """Sandbox cgroups of this process and processes of sandbox uids still alive on the machine."""
    groups = []
    for parent in (cg.controllers() or {}).values():
        groups += [d for d in os.listdir(parent) if d.startswith(f"rlreason-sandbox-{os.getpid()}-")]
    procs = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if UID_BASE <= os.stat(f"/proc/{pid}").st_uid < UID_BASE + UID_POOL:
                procs.append(pid)
        except FileNotFoundError:
            pass
    return groups, procs


@pytest.mark.skipif("uid" not in features(), reason="per-sandbox uids need root")
def test_bombs_do_not_fail_a_concurrent_honest_program_and_leave_nothing_behind():
    codes = [FORK_BOMB, HONEST, MEMORY_BOMB, HONEST]
    out = REWARDS.get("code_tests")(rollout(codes), timeout_s=6, memory_mb=384, workers=4)
    assert out.scores[1] == out.scores[3] == 1.0, out
    assert out.scores[0] == 0.0 and out.outcomes[0] == "wrong" and out.counts["timeouts"] >= 1  # held its slots to the end
    if CGROUPS:  # 800 MiB over 4 processes in a 384 MiB sandbox: killed, although each was under RLIMIT_AS
        assert out.scores[2] == 0.0, "the memory limit is not per sandbox"
    assert leftovers() == ([], [])


@needs_cgroups
def test_each_sandbox_gets_its_own_limited_cgroup_which_is_removed_after_a_timeout():
    seen = []

    def watch():
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and not seen:
            for parent in cg.controllers().values():
                for d in os.listdir(parent):
                    if d.startswith(f"rlreason-sandbox-{os.getpid()}-"):
                        files = {n: open(os.path.join(parent, d, n)).read().split() for n in os.listdir(os.path.join(parent, d))
                                 if n in ("memory.max", "memory.limit_in_bytes", "pids.max", "cgroup.procs")}
                        if files.get("cgroup.procs"):
                            seen.append(files)
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    r = run(Job(code="while True:\n    pass", tests=["pass"], limits=Limits(timeout_s=2, cpu_s=5, memory_mb=200, nproc=7)))
    thread.join()
    assert r.status == "timeout"
    limits = {k: v for files in seen for k, v in files.items() if k != "cgroup.procs"}
    assert limits.get("pids.max") == ["7"] and (limits.get("memory.max") or limits.get("memory.limit_in_bytes")) == [str(200 << 20)]
    assert leftovers() == ([], [])


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid pool is for root")
def test_uid_pool_gives_concurrent_sandboxes_distinct_uids():
    with sandbox_uid() as a, sandbox_uid() as b:
        assert a != b and {a, b} <= set(range(UID_BASE, UID_BASE + UID_POOL))
    with sandbox_uid() as c:
        assert c == min(a, b)  # released


def test_cgroup_v2_and_v1_are_found_from_mountinfo(tmp_path):
    mnt = tmp_path / "cg2"
    (mnt / "trainer").mkdir(parents=True)
    (mnt / "trainer" / "cgroup.controllers").write_text("cpu memory pids\n")
    (mnt / "trainer" / "cgroup.subtree_control").write_text("memory pids\n")
    v2 = f"30 25 0:26 / {mnt} rw,nosuid - cgroup2 cgroup2 rw\n"
    v1 = ("31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
          "32 25 0:28 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n")
    assert cg.find(v2, "0::/trainer\n") == {"v2": str(mnt / "trainer")}
    group = cg.Cgroup.create({"v2": str(mnt / "trainer")}, 1 << 20, 4)
    assert os.path.isdir(group.dirs[0]) and group.procs_files == [os.path.join(group.dirs[0], "cgroup.procs")]
    group.close()
    assert sorted(os.listdir(mnt / "trainer")) == ["cgroup.controllers", "cgroup.subtree_control"]  # removed
    (mnt / "trainer" / "cgroup.controllers").write_text("cpu hugetlb\n")  # memory and pids bound to v1
    own = "4:memory:/job\n8:pids:/\n0::/trainer\n"
    assert cg.find(v2 + v1, own) == {"memory": "/sys/fs/cgroup/memory/job", "pids": "/sys/fs/cgroup/pids/"}
    assert cg.find(v2, own) is None


@needs_cgroups
def test_cgroups_left_by_a_dead_trainer_are_removed():
    parent = next(iter(cg.controllers().values()))
    dead = 4194304 + 7  # above pid_max's largest value: no such process
    stale, alive = os.path.join(parent, f"rlreason-sandbox-{dead}-0"), os.path.join(parent, f"rlreason-sandbox-{os.getpid()}-999999")
    os.mkdir(stale)
    os.mkdir(alive)
    try:
        cg.remove_stale(cg.controllers())
        assert not os.path.exists(stale) and os.path.exists(alive)
    finally:
        for d in (stale, alive):
            if os.path.exists(d):
                os.rmdir(d)
