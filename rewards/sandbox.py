"""Run untrusted (model-written) Python against tests in an isolated child process.

`run(job)` starts `python -I -S rewards/_sandbox_runner.py` in a fresh temporary
directory with a scrubbed environment, in its own session (process group); the
runner isolates itself with what this machine allows (see `features()`):

- always: rlimits on CPU seconds, address space, file size, open files,
  processes; no core dumps; a wall-clock deadline enforced twice (the runner
  kills the child, and the trainer kills the whole process group a little later);
- `netns`: a new network namespace (only a down loopback): connect() fails;
- `mountns`: a private mount namespace where every mount is read-only except a
  size-capped tmpfs over /tmp (the program's cwd is /tmp/home; the stdlib is
  bound read-only under /tmp/py), plus a private /proc;
- `pidns`: the program is pid 1 of a new pid namespace: it cannot see or signal
  outside processes, and killing it kills everything it forked;
- `uid` (trainer runs as root): the program runs as an unprivileged uid
  (default 65534, "nobody"), so it cannot signal or write the trainer's files;
- `userns` (trainer is not root): an unprivileged user namespace makes the
  other namespaces possible.

A job the sandbox had to stop scores 0 and is reported as "timeout" (wall clock)
or "violation" (killed by a limit, or it exited without going through the
harness). The program sees the standard library only (no site-packages).
Example:

>>> r = run(Job(code="def f(x):\\n    return 2 * x", tests=["assert f(2) == 4", "assert f(3) == 5"]))
>>> (r.status, r.passed, r.total)
('ok', 1, 2)
"""
from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Tuple

RUNNER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_sandbox_runner.py")
log = logging.getLogger(__name__)


@dataclass
class Limits:
    """Resource limits for one sandboxed run."""

    timeout_s: float = 10.0  # wall clock for the whole job (all tests / cases)
    cpu_s: int = 10  # RLIMIT_CPU (the kernel sends SIGXCPU, then SIGKILL)
    memory_mb: int = 1024  # RLIMIT_AS
    file_mb: int = 16  # RLIMIT_FSIZE: largest file the program may write
    disk_mb: int = 64  # size of the tmpfs over /tmp that holds the working directory (with `mountns`)
    nofile: int = 64  # RLIMIT_NOFILE
    nproc: int = 32  # RLIMIT_NPROC (counts the sandbox uid's processes)


@dataclass
class Job:
    """A program and its tests: `mode` "asserts" runs `prelude`, `code`, then each test string in one
    namespace; "stdio" runs `code` once per case {"input", "output"} and compares stdout (trailing
    whitespace ignored)."""

    code: str
    tests: List[str] = field(default_factory=list)
    cases: List[Dict[str, str]] = field(default_factory=list)
    mode: str = "asserts"
    prelude: str = ""
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
SANDBOX_UID = 65534
ALL_FEATURES_ROOT = ("netns", "mountns", "pidns", "uid")
ALL_FEATURES_USER = ("userns", "netns", "mountns", "pidns")


def _launch(job: Job, features: Tuple[str, ...], probe: bool = False) -> Result:
    workdir = tempfile.mkdtemp(prefix="rlreason-sandbox-")
    try:
        spec = {**asdict(job), "features": list(features), "uid": SANDBOX_UID}
        spec["limits"]["cpu_s"] = int(spec["limits"]["cpu_s"])
        with open(os.path.join(workdir, "job.json"), "w") as f:
            json.dump(spec, f)
        if "uid" in features and "mountns" not in features:
            os.chown(workdir, SANDBOX_UID, SANDBOX_UID)
        env = {**_SCRUBBED_ENV, "HOME": workdir, "TMPDIR": workdir}
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", RUNNER], cwd=workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
        )
        try:
            out, err = proc.communicate(timeout=job.limits.timeout_s + 5)
        except subprocess.TimeoutExpired:  # the runner's own deadline failed: kill the whole group
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Result("timeout", 0, 0, "killed by the trainer's backstop deadline")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # anything left behind in the group
            except ProcessLookupError:
                pass
        lines = out.decode(errors="replace").strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            raise SandboxError(f"sandbox runner gave no answer (exit {proc.returncode}): {err.decode()[-500:]}")
        if answer["status"] == "setup_error":  # the runner's own namespaces failed: before any program ran
            raise SandboxError(f"sandbox setup failed with features {features}: {answer['detail']}")
        if answer["status"] == "child_setup_error":
            # Real only while probing (the features that passed the probe were then set up for every job);
            # after that, the program itself can write this to the result pipe: a violation, not a crash.
            if probe:
                raise SandboxError(f"sandbox setup failed with features {features}: {answer['detail']}")
            return Result("violation", 0, 0, f"setup error reported after the probe passed: {answer['detail']}")
        return Result(answer["status"], answer.get("passed", 0), answer.get("total", 0), answer.get("detail", ""))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@functools.lru_cache(maxsize=1)
def features() -> Tuple[str, ...]:
    """The isolation features this machine supports, probed once by running a trivial job with all of
    them (root: netns, mountns, pidns, uid; otherwise via a user namespace). When that fails the
    sandbox falls back to rlimits + session + scrubbed env + temp dir, and logs a warning once."""
    wanted = ALL_FEATURES_ROOT if os.geteuid() == 0 else ALL_FEATURES_USER
    probe = Job(code="x = 1", tests=["assert x == 1"], limits=Limits(timeout_s=20))
    try:
        if _launch(probe, wanted, probe=True).status == "ok":
            return wanted
        reason = "probe job did not pass"
    except SandboxError as e:
        reason = str(e)
    log.warning("sandbox: namespaces unavailable (%s); running with rlimits, a new session, a scrubbed "
                "environment and a temp dir only: no network, filesystem or signal isolation", reason)
    return ()


def run(job: Job, isolation: Optional[Tuple[str, ...]] = None) -> Result:
    """Run `job` in the sandbox with `isolation` features (default: all this machine supports)."""
    if job.mode not in ("asserts", "stdio"):
        raise ValueError(f"sandbox job mode must be asserts | stdio, got {job.mode!r}")
    return _launch(job, features() if isolation is None else tuple(isolation))
