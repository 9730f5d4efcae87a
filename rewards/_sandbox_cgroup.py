"""Memory and process limits per sandbox with a cgroup (trainer side; used by `rewards/sandbox.py`).

`controllers()` finds, once, where this process may create child cgroups with the `memory` and `pids`
controllers: cgroup v2 (the unified hierarchy, when our cgroup has both controllers in its
`cgroup.subtree_control` or can enable them there) or else cgroup v1 (the `memory` and `pids`
hierarchies). `Cgroup.create` makes one cgroup per sandbox with `memory` (swap included where the
kernel accounts it) and `pids` limits; the candidate joins it by writing "0" to each `procs` file before
it drops privileges; `close()` kills whatever is left in it and removes it (also after a timeout).
None of this is possible without write access to the cgroup tree (not root, or a read-only
/sys/fs/cgroup): then `controllers()` is None and the sandbox falls back to per-process rlimits under
a per-sandbox uid (README, threat model).
"""
from __future__ import annotations

import functools
import itertools
import logging
import os
import signal
import time
from typing import Dict, List, Optional, Tuple

log = logging.getLogger(__name__)
_names = itertools.count()


def parse(mountinfo: str, own: str) -> Tuple[Dict[str, str], Dict[str, str]]:
    """({"v2" | controller: mount point}, {"v2" | controller: our cgroup path}) from the text of
    /proc/self/mountinfo and /proc/self/cgroup."""
    mounts: Dict[str, str] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, rest = left.split(), right.split()
        if len(fields) < 5 or len(rest) < 3:
            continue
        if rest[0] == "cgroup2":
            mounts.setdefault("v2", fields[4])
        elif rest[0] == "cgroup":
            for opt in rest[2].split(","):
                mounts.setdefault(opt, fields[4])
    paths: Dict[str, str] = {}
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for ctl in (parts[1].split(",") if parts[1] else ["v2"]):
                paths[ctl] = parts[2]
    return mounts, paths


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _v2_parent(mount: str, path: str) -> Optional[str]:
    parent = os.path.join(mount, path.lstrip("/"))
    with open(os.path.join(parent, "cgroup.controllers")) as f:
        if not {"memory", "pids"} <= set(f.read().split()):
            return None
    with open(os.path.join(parent, "cgroup.subtree_control")) as f:
        enabled = set(f.read().split())
    if not {"memory", "pids"} <= enabled:  # EBUSY when our cgroup has processes and is not the root
        _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids")
    return parent


def find(mountinfo: str, own: str) -> Optional[Dict[str, str]]:
    """The parent directories for sandbox cgroups: {"v2": dir} or {"memory": dir, "pids": dir}; None."""
    mounts, paths = parse(mountinfo, own)
    if "v2" in mounts and "v2" in paths:
        try:
            parent = _v2_parent(mounts["v2"], paths["v2"])
            if parent:
                return {"v2": parent}
        except OSError as e:
            log.info("sandbox: cgroup v2 unusable (%s), trying v1", e)
    if all(c in mounts and c in paths for c in ("memory", "pids")):
        return {c: os.path.join(mounts[c], paths[c].lstrip("/")) for c in ("memory", "pids")}
    return None


def remove_stale(where: Dict[str, str]) -> None:
    """Remove the sandbox cgroups of trainers that are gone (killed mid-run, before they could clean up)."""
    for parent in where.values():
        for name in os.listdir(parent):
            parts = name.split("-")
            if name.startswith("rlreason-sandbox-") and len(parts) == 4 and parts[2].isdigit() \
                    and not os.path.exists(f"/proc/{parts[2]}"):
                Cgroup([os.path.join(parent, name)]).close(wait_s=1.0)


@functools.lru_cache(maxsize=1)
def controllers() -> Optional[Dict[str, str]]:
    """Where sandbox cgroups go on this machine (probed once by creating and removing one), or None."""
    try:
        with open("/proc/self/mountinfo") as f, open("/proc/self/cgroup") as g:
            found = find(f.read(), g.read())
        if found:
            Cgroup.create(found, 64 << 20, 8).close()
            remove_stale(found)
        return found
    except OSError as e:
        log.warning("sandbox: no per-sandbox cgroup (%s): memory and processes are limited per process "
                    "(RLIMIT_AS) and per sandbox uid (RLIMIT_NPROC) only", e)
        return None


class Cgroup:
    """One sandbox's cgroup(s): a directory per hierarchy (one with v2, `memory` and `pids` with v1)."""

    def __init__(self, dirs: List[str]):
        self.dirs = dirs

    @classmethod
    def create(cls, where: Dict[str, str], memory_bytes: int, pids: int) -> "Cgroup":
        name = f"rlreason-sandbox-{os.getpid()}-{next(_names)}"
        group = cls([os.path.join(parent, name) for parent in where.values()])
        try:
            for d in group.dirs:
                os.mkdir(d)
            limits = {"memory.max": memory_bytes, "memory.swap.max": 0, "pids.max": pids,  # v2
                      "memory.limit_in_bytes": memory_bytes, "memory.memsw.limit_in_bytes": memory_bytes}  # v1
            for d in group.dirs:
                for key, value in limits.items():  # in this order: v1's memsw limit must be >= the memory one
                    if os.path.exists(os.path.join(d, key)):
                        _write(os.path.join(d, key), str(value))
        except OSError:
            group.close()
            raise
        return group

    @property
    def procs_files(self) -> List[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def _pids(self) -> List[int]:
        pids = set()
        for path in self.procs_files:
            try:
                with open(path) as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                pass
        return sorted(pids)

    def close(self, wait_s: float = 5.0) -> None:
        """Kill every process in the cgroup, then remove it (retrying while the kernel reaps them)."""
        deadline = time.monotonic() + wait_s
        while True:
            for pid in self._pids():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for d in list(self.dirs):
                try:
                    os.rmdir(d)
                    self.dirs.remove(d)
                except FileNotFoundError:
                    self.dirs.remove(d)
                except OSError:  # EBUSY: processes not yet gone
                    pass
            if not self.dirs:
                return
            if time.monotonic() > deadline:
                log.warning("sandbox: could not remove cgroup(s) %s", self.dirs)
                return
            time.sleep(0.01)
