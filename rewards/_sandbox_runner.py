"""The process that runs untrusted code; started by `rewards/sandbox.py` as `python -I -S <this file>`.

Stdlib only, never imported by the trainer. It reads `job.json` from its (fresh,
temporary) working directory, deletes it, and then:

1. (intermediate, trusted) unshares the namespaces the job asks for (user, net,
   mount, pid), forks, waits for the child with a wall-clock deadline and prints
   one JSON line: {"status": "ok" | "timeout" | "violation" | "setup_error", ...}.
2. (child: pid 1 of a new pid namespace when available) mounts a size-capped
   tmpfs over /tmp (its cwd is /tmp/home), remounts every other mount read-only,
   mounts a private /proc, sets rlimits, drops to an unprivileged uid (when
   started as root), then runs the program against the tests and writes
   {"passed": k, "total": n} to a pipe the intermediate reads.

Killing the child kills its whole pid namespace (every process it forked).
"""
import ctypes
import io
import json
import os
import resource
import select
import signal
import sys
import time

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x00020000, 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY, SYS_MOUNT_SETATTR = -100, 0x8000, 1, 442
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _mount_setattr(path, recursive, set_flags, clear_flags):
    attr = (ctypes.c_uint64 * 4)(set_flags, clear_flags, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    ret = _libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr))
    _check(ret, f"mount_setattr {path}")


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def enter_namespaces(features):
    """Unshare the namespaces in `features` (intermediate process, before the fork)."""
    flags = 0
    if "userns" in features:
        flags |= CLONE_NEWUSER
    if "netns" in features:
        flags |= CLONE_NEWNET
    if "mountns" in features:
        flags |= CLONE_NEWNS
    if "pidns" in features:
        flags |= CLONE_NEWPID
    if not flags:
        return
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")
    if "userns" in features:  # become root of the new user namespace, mapped to our own uid outside
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")


def _use_remapped_paths(remap):
    """Point sys.path and the __path__ of already-imported packages (collections, encodings) at `remap`."""
    def moved(path):
        for old, new in remap.items():
            if path == old or path.startswith(old + os.sep):
                return new + path[len(old):]
        return path

    sys.path[:] = list(remap.values())
    for module in list(sys.modules.values()):
        paths = getattr(module, "__path__", None)
        if isinstance(paths, list):
            paths[:] = [moved(p) for p in paths]
    sys.path_importer_cache.clear()


def isolate_child(job, workdir):
    """Filesystem, limits and identity of the child (pid 1 of the new pid namespace, if any)."""
    features, lim = job["features"], job["limits"]
    uid = job["uid"]
    home = workdir
    if "mountns" in features:
        # A size-capped tmpfs over /tmp (always traversable, unlike a work dir below a 0700 parent):
        # the program's cwd is /tmp/home and the stdlib is bound read-only under /tmp/py.
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={lim['disk_mb']}m,mode=0755")
        home = "/tmp/home"
        os.mkdir(home, 0o700)
        if "uid" in features:
            os.chown(home, uid, uid)
            # The interpreter's stdlib may sit where the sandbox uid cannot look (e.g. under /root).
            remap = {}
            for i, path in enumerate(p for p in sys.path if os.path.isdir(p)):
                remap[path] = f"/tmp/py/{i}"
                os.makedirs(remap[path])
                _mount(path, remap[path], None, MS_BIND | MS_REC)
            _use_remapped_paths(remap)
        if "pidns" in features:
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _mount_setattr("/", True, MOUNT_ATTR_RDONLY, 0)
        _mount_setattr("/tmp", False, 0, MOUNT_ATTR_RDONLY)
        os.environ.update(HOME=home, TMPDIR=home)
    os.chdir(home)  # in the tmpfs, not the directory underneath it
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    mb = 1024 * 1024
    for name, value in (("RLIMIT_CPU", lim["cpu_s"]), ("RLIMIT_AS", lim["memory_mb"] * mb),
                        ("RLIMIT_FSIZE", lim["file_mb"] * mb), ("RLIMIT_NOFILE", lim["nofile"]),
                        ("RLIMIT_NPROC", lim["nproc"]), ("RLIMIT_CORE", 0)):
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU at the soft limit, SIGKILL 1 s later
        resource.setrlimit(getattr(resource, name), (value, hard))
    if "uid" in features:  # started as root: become an unprivileged user that owns nothing of ours
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it


def run_asserts(job):
    """Exec the program once, then each test in the same namespace; (passed, total)."""
    tests = job["tests"]
    scope = {"__name__": "solution"}
    try:
        exec(compile(job["prelude"] + "\n", "prelude.py", "exec"), scope)
        exec(compile(job["code"], "solution.py", "exec"), scope)
    except BaseException as e:  # noqa: BLE001 - any failure of the program fails every test
        return 0, len(tests), _describe(e)
    passed, first_error = 0, ""
    for test in tests:
        try:
            exec(compile(test, "test.py", "exec"), scope)
            passed += 1
        except BaseException as e:  # noqa: BLE001
            first_error = first_error or _describe(e)
    return passed, len(tests), first_error


def _describe(e):
    return f"{type(e).__name__}: {e}"[:300]


def _same_output(got, want):
    lines = lambda s: [line.rstrip() for line in s.strip().splitlines()]  # noqa: E731
    return lines(got) == lines(want)


def run_stdio(job):
    """Run the program once per case in a forked process with the case's stdin; compare stdout."""
    try:
        code = compile(job["code"], "solution.py", "exec")
    except SyntaxError as e:
        return 0, len(job["cases"]), _describe(e)
    passed, first_error = 0, ""
    for i, case in enumerate(job["cases"]):
        _write(f"in{i}.txt", case["input"])
        pid = os.fork()
        if pid == 0:
            fd_in, fd_out = os.open(f"in{i}.txt", os.O_RDONLY), os.open(f"out{i}.txt", os.O_WRONLY | os.O_CREAT, 0o600)
            os.dup2(fd_in, 0)
            os.dup2(fd_out, 1)
            sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
            sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
            status = 0
            try:
                exec(code, {"__name__": "__main__"})
            except SystemExit as e:
                status = 0 if e.code in (None, 0) else 1
            except BaseException:  # noqa: BLE001
                status = 1
            sys.stdout.flush()
            os._exit(status)
        _, status = os.waitpid(pid, 0)
        code_i = os.waitstatus_to_exitcode(status)
        if code_i == 0:
            with open(f"out{i}.txt", errors="replace") as f:
                same = _same_output(f.read(), case["output"])
            passed += same
            first_error = first_error or ("" if same else f"case {i}: wrong output")
        else:
            first_error = first_error or f"case {i}: exit status {code_i}"
    return passed, len(job["cases"]), first_error


def child_main(job, workdir, result_fd):
    if "pidns" not in job["features"]:
        os.setpgid(0, 0)  # the intermediate kills this group on timeout
    try:
        isolate_child(job, workdir)
    except BaseException as e:  # noqa: BLE001 - reported to the trainer as a setup error
        os.write(result_fd, json.dumps({"setup_error": f"{type(e).__name__}: {e}"}).encode())
        os._exit(3)
    passed, total, error = run_stdio(job) if job["mode"] == "stdio" else run_asserts(job)
    os.write(result_fd, json.dumps({"passed": passed, "total": total, "error": error}).encode())
    os._exit(0)


MAX_RESULT_BYTES = 65536  # the harness writes ~100 bytes; more is the program writing to the pipe


def _well_formed(result, planned):
    """The harness's own shape: integer counts, total = the number of tests planned, 0 <= passed <= total."""
    passed, total = result.get("passed"), result.get("total")
    return type(passed) is int and type(total) is int and total == planned and 0 <= passed <= total


def main():
    workdir = os.getcwd()
    with open("job.json") as f:
        job = json.load(f)
    os.unlink("job.json")
    try:
        enter_namespaces(job["features"])
    except OSError as e:
        print(json.dumps({"status": "setup_error", "detail": str(e)}), flush=True)
        return
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        child_main(job, workdir, write_fd)
    os.close(write_fd)
    deadline = time.monotonic() + job["limits"]["timeout_s"]
    chunks, timed_out, overflow = [], False, False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select([read_fd], [], [], left)
        if ready:
            data = os.read(read_fd, 65536)
            if not data:
                break
            chunks.append(data)
            if sum(map(len, chunks)) > MAX_RESULT_BYTES:  # a flood from the program: stop reading, stop it
                overflow = True
                break
    if timed_out or overflow:
        os.kill(pid, signal.SIGKILL)  # pid 1 of the namespace: the kernel kills all its processes
        os.killpg(pid, signal.SIGKILL) if "pidns" not in job["features"] else None
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        result = json.loads(b"".join(chunks).decode()) if chunks and not overflow else {}
    except ValueError:  # the program wrote garbage into the result pipe (UnicodeDecodeError included)
        result = {}
    result = result if isinstance(result, dict) else {}
    if timed_out:
        out = {"status": "timeout"}
    elif code == -signal.SIGXCPU:  # the CPU-time rlimit: a time limit too, so it counts as a timeout
        out = {"status": "timeout", "detail": "CPU time limit"}
    elif overflow:
        out = {"status": "violation", "detail": f"more than {MAX_RESULT_BYTES} bytes on the result pipe"}
    elif "setup_error" in result:  # the child's setup failed, or the program says so: the caller decides
        out = {"status": "child_setup_error", "detail": str(result["setup_error"])[:300]}
    elif code == 0 and _well_formed(result, len(job["cases"] if job["mode"] == "stdio" else job["tests"])):
        out = {"status": "ok", "passed": result["passed"], "total": result["total"],
               "detail": str(result.get("error", ""))[:300]}
    else:  # killed by a limit (signal), bypassed the harness (exited early) or wrote a malformed result
        out = {"status": "violation", "detail": f"exit status {code}"}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
