"""Run untrusted (model-written) Python against tests: the verdict is decided where the program cannot reach.

`run(job)` starts `python -I -S rewards/_sandbox_runner.py` in a fresh temporary directory with a
scrubbed environment, in its own session. That runner is the trusted judge: it forks the candidate
process (which runs the program) into the isolation below, and only afterwards reads the tests (from
its stdin), runs them itself, and calls the program's functions through proxies whose arguments and
return values cross between the two processes as plain data (`_sandbox_wire`: ints, floats, str,
bytes, bool, None, lists, tuples, dicts, sets). A return value that is not plain data fails its test,
so nothing the program does inside its own process (patching builtins or the harness, walking frames,
writing to pipes, objects whose `__eq__` is always true) can turn into a pass.

The candidate gets what this machine allows (see `features()`):

- always: rlimits on CPU seconds, address space, file size, open files, processes; no core dumps;
  a wall-clock deadline enforced twice (the judge kills the candidate, and the trainer kills the whole
  process group 5 s later);
- `netns`: a new network namespace (only a down loopback); also new IPC and UTS namespaces;
- `mountns`: a private mount namespace where every mount is read-only except a size-capped tmpfs over
  /tmp (cwd /tmp/home; the stdlib is bound read-only under /tmp/py), plus a private /proc;
- `pidns`: the candidate is pid 1 of a new pid namespace: it cannot see or signal the judge or the
  trainer, and killing it kills everything it forked;
- `uid` (trainer runs as root): a per-sandbox unprivileged uid from a pool (so RLIMIT_NPROC, which
  counts a uid's processes, is per sandbox), with no capabilities and no_new_privs;
- `userns` (trainer is not root): an unprivileged user namespace makes the other namespaces possible;
- `seccomp` (x86-64): a syscall filter (`_sandbox_seccomp.py`): no new namespaces, mounts, ptrace, ...

and, where the cgroup tree is writable (root), its own cgroup with memory (sum over all its processes)
and pids limits (`_sandbox_cgroup.py`), removed after the run.

A job the sandbox had to stop scores 0 and is reported as "timeout" (wall clock or CPU limit) or
"violation" (killed by a limit, or it broke the plain-data protocol). The program sees the standard
library only. Example:

>>> r = run(Job(code="def f(x):\\n    return 2 * x", tests=["assert f(2) == 4", "assert f(3) == 5"]))
>>> (r.status, r.passed, r.total)
('ok', 1, 2)
"""
from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import rlreason.rewards._sandbox_cgroup as cgroup
import rlreason.rewards._sandbox_seccomp as _sandbox_seccomp

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_runner.py")
log = logging.getLogger(__name__)


@dataclass
class Limits:
    """Resource limits for one sandboxed run."""

    timeout_s: float = 10.0  # wall clock for the whole job (all tests / cases)
    cpu_s: int = 10  # RLIMIT_CPU (the kernel sends SIGXCPU, then SIGKILL)
    memory_mb: int = 1024  # the sandbox's cgroup memory limit (all its processes), and RLIMIT_AS of each
    file_mb: int = 16  # RLIMIT_FSIZE: largest file the program may write
    disk_mb: int = 64  # size of the tmpfs over /tmp that holds the working directory (with `mountns`)
    nofile: int = 64  # RLIMIT_NOFILE
    nproc: int = 32  # the cgroup's pids limit, and RLIMIT_NPROC of the sandbox's own uid


@dataclass
class Job:
    """A program and its tests. `mode` "asserts": the candidate runs `prelude` then `code`; the judge runs
    `context` (trusted: e.g. the task's prompt with its helpers) then each test string, with
    `entry_points` and the names the tests read from the program bound to proxies. "stdio": the candidate
    runs `code` once per case {"input", "output"}; the judge compares stdout (trailing whitespace ignored).
    "tool": the candidate runs `code` once (no tests); the result's `detail` is its output (stdout, stderr and
    an exception's last line, at most 64 Ki characters) and `passed` is 1 when it exited 0 (`rlreason/rollout/tools.py`)."""

    code: str
    tests: List[str] = field(default_factory=list)
    cases: List[Dict[str, str]] = field(default_factory=list)
    mode: str = "asserts"
    prelude: str = ""
    context: str = ""
    entry_points: List[str] = field(default_factory=list)
    limits: Limits = field(default_factory=Limits)


@dataclass
class Result:
    status: str  # "ok" | "timeout" | "violation"
    passed: int = 0
    total: int = 0
    detail: str = ""


class SandboxError(RuntimeError):
    """The sandbox itself could not start or answered nonsense (not the program's fault)."""


_SCRUBBED_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}
UID_BASE, UID_POOL = 210000, 256  # sandbox uids 210000..210255 (root only): one per running sandbox
UID_LOCKS = "/tmp/rlreason-sandbox-uids"  # flock files: the pool is shared by every trainer on the machine
_SECCOMP = ("seccomp",) if _sandbox_seccomp.available() else ()
ALL_FEATURES_ROOT = ("netns", "mountns", "pidns", "uid") + _SECCOMP
ALL_FEATURES_USER = ("userns", "netns", "mountns", "pidns") + _SECCOMP
_JUDGE_KEYS = ("tests", "cases", "context", "entry_points")  # sent on the runner's stdin, never to the candidate


@contextmanager
def sandbox_uid(wait_s: float = 30.0) -> Iterator[int]:
    """A uid from the pool that no other sandbox on this machine holds, locked while the job runs."""
    os.makedirs(UID_LOCKS, mode=0o700, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for uid in range(UID_BASE, UID_BASE + UID_POOL):
            fd = os.open(os.path.join(UID_LOCKS, str(uid)), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                os.close(fd)  # releases the lock
            return
        if time.monotonic() > deadline:
            raise SandboxError(f"all {UID_POOL} sandbox uids busy for {wait_s} s")
        time.sleep(0.05)


@contextmanager
def sandbox_cgroup(limits: Limits, use: bool) -> Iterator[List[str]]:
    """The `cgroup.procs` files of a fresh cgroup for one sandbox ([] without cgroups); removed afterwards."""
    where = cgroup.controllers() if use else None
    if where is None:
        yield []
        return
    try:
        group = cgroup.Cgroup.create(where, limits.memory_mb << 20, limits.nproc)
    except OSError as e:
        raise SandboxError(f"could not create the sandbox's cgroup: {e}") from e
    try:
        yield group.procs_files
    finally:
        group.close()


def _answer(out: bytes, err: bytes, returncode: int, features: Tuple[str, ...]) -> Result:
    """The runner's verdict line as a Result; SandboxError when the sandbox itself failed."""
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1])
        status = answer["status"]
    except (IndexError, ValueError, TypeError, KeyError):
        raise SandboxError(f"sandbox runner gave no answer (exit {returncode}): {err.decode(errors='replace')[-500:]}")
    if status == "setup_error":  # namespaces, cgroup, mounts or uid failed before the program ran
        raise SandboxError(f"sandbox setup failed with features {features}: {answer.get('detail')}")
    if status not in ("ok", "timeout", "violation"):
        raise SandboxError(f"sandbox runner answered status {status!r}")
    passed, total = answer.get("passed", 0), answer.get("total", 0)
    if not (type(passed) is int and type(total) is int and 0 <= passed <= total):
        raise SandboxError(f"sandbox runner answered counts {passed!r}/{total!r}")
    return Result(status, passed, total, str(answer.get("detail", "")))


def _launch(job: Job, features: Tuple[str, ...], uid: int, procs: List[str]) -> Result:
    workdir = tempfile.mkdtemp(prefix="rlreason-sandbox-")
    try:
        spec = {k: v for k, v in asdict(job).items() if k not in _JUDGE_KEYS}
        spec.update(features=list(features), uid=uid, cgroup_procs=procs)
        spec["limits"]["cpu_s"] = int(spec["limits"]["cpu_s"])
        with open(os.path.join(workdir, "job.json"), "w") as f:
            json.dump(spec, f)
        if "uid" in features and "mountns" not in features:
            os.chown(workdir, uid, uid)
        env = {**_SCRUBBED_ENV, "HOME": workdir, "TMPDIR": workdir}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", RUNNER], cwd=workdir, env=env, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )
        judge_part = json.dumps({k: getattr(job, k) for k in _JUDGE_KEYS}).encode()
        try:
            out, err = proc.communicate(judge_part, timeout=job.limits.timeout_s + 5)
        except subprocess.TimeoutExpired:  # the runner's own deadline failed: kill the whole group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Result("timeout", 0, 0, "killed by the trainer's backstop deadline")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything left behind in the group
            except ProcessLookupError:
                pass
        return _answer(out, err, proc.returncode, features)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _run(job: Job, features: Tuple[str, ...]) -> Result:
    with sandbox_cgroup(job.limits, use=os.geteuid() == 0) as procs:
        if "uid" not in features:
            return _launch(job, features, os.getuid(), procs)
        with sandbox_uid() as uid:
            return _launch(job, features, uid, procs)


@functools.lru_cache(maxsize=1)
def features() -> Tuple[str, ...]:
    """The isolation features this machine supports, probed once by running a trivial job with all of
    them (root: netns, mountns, pidns, uid; otherwise via a user namespace; seccomp on x86-64). When that
    fails, root keeps a uid of the pool (and seccomp): a program must never run as root, where one
    `kill(-1, SIGKILL)` ends every process on the machine. Otherwise the sandbox falls back to rlimits +
    session + scrubbed env + temp dir. Either fallback logs a warning once."""
    root = os.geteuid() == 0
    probe = Job(code="x = 1", tests=["assert x == 1"], limits=Limits(timeout_s=20))
    reasons = []
    for wanted in ((ALL_FEATURES_ROOT, ("uid",) + _SECCOMP) if root else (ALL_FEATURES_USER, ())):
        try:
            if _run(probe, wanted).status == "ok":
                break
            reasons.append(f"{wanted}: probe job did not pass")
        except SandboxError as e:
            reasons.append(str(e))
    else:
        raise SandboxError(f"the sandbox cannot run at all: {'; '.join(reasons)}")
    if reasons:
        log.warning("sandbox: namespaces unavailable (%s); running with %s, rlimits, a new session, a scrubbed "
                    "environment and a temp dir only: no network, filesystem or pid isolation",
                    reasons[0], ", ".join(wanted) or "no other isolation")
    return wanted


def run(job: Job, isolation: Optional[Tuple[str, ...]] = None) -> Result:
    """Run `job` in the sandbox with `isolation` features (default: all this machine supports)."""
    if job.mode not in ("asserts", "stdio", "tool"):
        raise ValueError(f"sandbox job mode must be asserts | stdio | tool, got {job.mode!r}")
    return _run(job, features() if isolation is None else tuple(isolation))
