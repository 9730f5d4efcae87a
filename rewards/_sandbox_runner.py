"""The sandbox's trusted process; started by `rewards/sandbox.py` as `python -I -S <this file>`.

Stdlib only, never imported by the trainer. It reads the program's part of the job from `job.json` in
its (fresh, temporary) working directory and deletes it, makes itself non-dumpable, unshares the
namespaces the job asks for (net, mount, ipc, uts, pid; a user namespace when not root) and forks the
candidate process (`_sandbox_child.py`: pid 1 of the new pid namespace, in its own cgroup, under its
own uid, behind seccomp). Only then does it read the tests from its stdin, so they never exist in the
candidate's memory. It then judges (`_sandbox_judge.py`: the tests run here, the program's functions
are proxies that exchange plain data with the candidate), kills the candidate's pid namespace and
prints one JSON line on its original stdout: {"status": "ok" | "timeout" | "violation" |
"setup_error", ...}. The candidate can neither see this process (other pid namespace, other uid) nor
write to that stdout.
"""
import ctypes
import json
import os
import resource
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _sandbox_child as child  # noqa: E402
import _sandbox_judge as judge  # noqa: E402
import _sandbox_wire as wire  # noqa: E402

sys.path.remove(HERE)  # the candidate's imports see the stdlib only

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
PR_SET_DUMPABLE = 4
_libc = ctypes.CDLL(None, use_errno=True)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def enter_namespaces(features):
    """Unshare the namespaces in `features` (this process; the candidate forked next is inside them)."""
    flags = 0
    for feature, flag in (("userns", CLONE_NEWUSER), ("netns", CLONE_NEWNET), ("mountns", CLONE_NEWNS),
                          ("pidns", CLONE_NEWPID)):
        flags |= flag if feature in features else 0
    if not flags:
        return
    flags |= CLONE_NEWIPC | CLONE_NEWUTS  # no System V IPC or hostname shared with the host
    uid, gid = os.getuid(), os.getgid()
    child._check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    if "userns" in features:  # become root of the new user namespace, mapped to our own uid outside
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")


def start_candidate(job, workdir):
    """Fork the candidate; (pid, the judge's read fd, the judge's write fd)."""
    to_child_r, to_child_w = os.pipe()
    to_judge_r, to_judge_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(to_child_w)
            os.close(to_judge_r)
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # the runner's stdin (the tests, unread) and stdout (the verdict) are gone
                os.dup2(devnull, fd)
            os.close(devnull)
            lowest = 3  # close every other descriptor: the verdict's, the runner's own
            for fd in sorted((to_child_r, to_judge_w)):
                os.closerange(lowest, fd)
                lowest = fd + 1
            os.closerange(lowest, 1 << 16)
            if "pidns" not in job["features"]:
                os.setpgid(0, 0)  # the runner kills this group
            child.isolate(job, workdir)
        except BaseException as e:  # noqa: BLE001 - reported before "ready": the program never ran
            wire.send(to_judge_w, {"setup_error": f"{type(e).__name__}: {e}"})
            os._exit(3)
        try:
            child.serve(job, to_child_r, to_judge_w)
        finally:
            os._exit(0)
    os.close(to_child_r)
    os.close(to_judge_w)
    return pid, to_judge_r, to_child_w


def stop(pid, features):
    """Kill the candidate (pid 1 of its namespace: the kernel kills everything in it); its exit code."""
    for kill, target in ((os.kill, pid), (os.killpg, pid)):
        if kill is os.kill or "pidns" not in features:
            try:
                kill(target, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def judge_with_deadline(channel, job):
    """judge.judge under the job's wall clock, also while the judge itself computes; None if aborted."""
    def on_alarm(signum, frame):
        if channel.abort is None and not channel.finished:
            channel.abort = ("timeout", "wall-clock deadline")
            raise judge.Abort()

    channel.finished = False
    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, max(0.001, channel.deadline - time.monotonic()))
    try:
        result = judge.judge(channel, job)
    except judge.Abort:
        result = None
    except Exception as e:  # noqa: BLE001 - data from the candidate broke the judge: the candidate's fault,
        channel.abort = ("violation", f"judge failed: {type(e).__name__}: {e}"[:300])  # never an unchecked "error"
        result = None
    finally:
        channel.finished = True
        signal.setitimer(signal.ITIMER_REAL, 0)
    return result


def verdict(result, abort, code):
    if result is not None and result[0] == "setup_error":
        return {"status": "setup_error", "detail": result[1]}
    if result is not None:
        return {"status": "ok", "passed": result[0], "total": result[1], "detail": result[2]}
    if abort[0] == "timeout":
        return {"status": "timeout"}
    if code == -signal.SIGXCPU:  # the CPU-time rlimit: a time limit too
        return {"status": "timeout", "detail": "CPU time limit"}
    return {"status": "violation", "detail": f"{abort[1]} (candidate exit status {code})"}


def main():
    workdir = os.getcwd()
    with open("job.json") as f:
        job = json.load(f)
    os.unlink("job.json")
    answer = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # what the tests print goes nowhere; the verdict goes to `answer`
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no /proc/<pid>/mem, fd or ptrace for same-uid processes
    deadline = time.monotonic() + job["limits"]["timeout_s"]
    try:
        enter_namespaces(job["features"])
    except OSError as e:
        os.write(answer, (json.dumps({"status": "setup_error", "detail": str(e)}) + "\n").encode())
        return
    pid, rfd, wfd = start_candidate(job, workdir)
    judge_mb = 1024 + job["limits"]["memory_mb"]  # what the candidate's replies can make the judge allocate
    resource.setrlimit(resource.RLIMIT_AS, (judge_mb << 20, judge_mb << 20))
    job.update(json.load(sys.stdin))  # tests / cases, context, entry points: read after the fork
    channel = judge.Channel(rfd, wfd, deadline)
    result = judge_with_deadline(channel, job)
    code = stop(pid, job["features"])
    os.write(answer, (json.dumps(verdict(result, channel.abort, code)) + "\n").encode())


if __name__ == "__main__":
    main()
