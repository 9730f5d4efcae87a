"""The sandbox's candidate process: isolate, then run the program and answer the judge (stdlib only).

Forked by `_sandbox_runner.py` before the judge reads any test, so nothing of the tests is in this
process's memory. `isolate` joins the sandbox's cgroup, mounts (tmpfs /tmp, read-only rest, private
/proc), sets rlimits, drops to the sandbox's uid and installs the seccomp filter. `serve` then sends
{"ready": true}, runs the program and answers the judge's requests over two pipes with plain data
(`_sandbox_wire`): {"op": "resolve", "names"}, {"op": "call", "name", "args"}, {"op": "stdio", "input"}, and
{"op": "tool"} (run the program once, stderr and a raised exception's last line going to its stdout).
Everything after "ready" is the program's to tamper with: the judge trusts none of it beyond plain data.
"""
import ctypes
import io
import os
import resource
import signal
import sys
import types

import _sandbox_seccomp as seccomp
import _sandbox_wire as wire

MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 2, 4, 8, 4096, 16384, 1 << 18
AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY, SYS_MOUNT_SETATTR = -100, 0x8000, 1, 442
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
MAX_STDOUT = 4 << 20  # characters of a case's stdout sent to the judge; more is a failed case

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


def _mount_private_tmp(job, uid):
    """A size-capped tmpfs over /tmp (cwd /tmp/home), the stdlib bound under /tmp/py, the rest read-only."""
    features, lim = job["features"], job["limits"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={lim['disk_mb']}m,mode=0755")
    os.mkdir("/tmp/home", 0o700)
    if "uid" in features:
        os.chown("/tmp/home", uid, uid)
        remap = {}  # the interpreter's stdlib may sit where the sandbox uid cannot look (e.g. under /root)
        for i, path in enumerate(p for p in sys.path if os.path.isdir(p)):
            remap[path] = f"/tmp/py/{i}"
            os.makedirs(remap[path])
            _mount(path, remap[path], None, MS_BIND | MS_REC)
        _use_remapped_paths(remap)
    if "pidns" in features:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _mount_setattr("/", True, MOUNT_ATTR_RDONLY, 0)
    _mount_setattr("/tmp", False, 0, MOUNT_ATTR_RDONLY)
    os.environ.update(HOME="/tmp/home", TMPDIR="/tmp/home")
    return "/tmp/home"


def isolate(job, workdir):
    """Cgroup, filesystem, limits, identity and syscall filter of the candidate (pid 1 of its pid namespace)."""
    features, lim, uid = job["features"], job["limits"], job["uid"]
    for procs in job.get("cgroup_procs", []):  # first, while we may still write the cgroup tree
        with open(procs, "w") as f:
            f.write("0")
    home = _mount_private_tmp(job, uid) if "mountns" in features else workdir
    os.chdir(home)  # in the tmpfs, not the directory underneath it
    mb = 1024 * 1024
    for name, value in (("RLIMIT_CPU", lim["cpu_s"]), ("RLIMIT_AS", lim["memory_mb"] * mb),
                        ("RLIMIT_FSIZE", lim["file_mb"] * mb), ("RLIMIT_NOFILE", lim["nofile"]),
                        ("RLIMIT_NPROC", lim["nproc"]), ("RLIMIT_CORE", 0)):
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU at the soft limit, SIGKILL 1 s later
        resource.setrlimit(getattr(resource, name), (value, hard))
    if "uid" in features:  # started as root: become this sandbox's own unprivileged uid
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    if "seccomp" in features:
        seccomp.install(_libc)


def _describe(e):
    try:
        return [type(e).__name__, f"{e}"[:300]]
    except BaseException:  # noqa: BLE001 - a hostile __str__
        return [type(e).__name__, ""]


def _resolve(scope, name):
    if name not in scope:
        return ["missing"]
    obj = scope[name]
    if isinstance(obj, types.ModuleType):
        return ["module", str(obj.__name__)]
    if callable(obj):
        return ["callable"]
    try:
        return ["data", wire.encode(obj)]
    except (TypeError, RecursionError):
        return ["missing"]


def _call(scope, request):
    try:
        args, kwargs = wire.decode(request["args"])
        value = scope[request["name"]](*args, **kwargs)
    except BaseException as e:  # noqa: BLE001 - SystemExit included: the call raised
        return {"raised": _describe(e)}
    try:
        return {"value": wire.encode(value)}
    except (TypeError, RecursionError):
        return {"unencodable": type(value).__name__[:100]}


def _run_case(code, case_input, wfd, rfd, show_errors=False):
    """Run the program once with `case_input` on stdin in a forked process; its exit status and stdout.
    `show_errors` (a tool call): its stderr goes to the same file, and an exception's last line too."""
    with open("in.txt", "w") as f:
        f.write(case_input)
    pid = os.fork()
    if pid == 0:
        os.close(wfd)
        os.close(rfd)
        fd_in, fd_out = os.open("in.txt", os.O_RDONLY), os.open("out.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd_in, 0)
        os.dup2(fd_out, 1)
        if show_errors:
            os.dup2(fd_out, 2)
            sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False))
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False))
        status, error = 0, ""
        try:
            exec(code, {"__name__": "__main__"})
        except SystemExit as e:
            status = 0 if e.code in (None, 0) else 1
        except BaseException as e:  # noqa: BLE001
            status, error = 1, ": ".join(_describe(e)) + "\n"
        for stream in (sys.stdout, sys.stderr) if show_errors else (sys.stdout,):
            try:
                stream.flush()
            except BaseException:  # noqa: BLE001 - the program may have closed or replaced it
                pass
        if show_errors and error:
            os.write(fd_out, error.encode(errors="replace"))
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    with open("out.txt", errors="replace") as f:
        out = f.read(MAX_STDOUT + 1)
    return {"exit": os.waitstatus_to_exitcode(status), "stdout": out[:MAX_STDOUT], "truncated": len(out) > MAX_STDOUT}


def _load(job):
    """(scope or compiled code, error): asserts mode runs prelude + program once; stdio compiles it."""
    try:
        if job["mode"] in ("stdio", "tool"):
            return compile(job["code"], "solution.py", "exec"), ""
        scope = {"__name__": "solution"}
        exec(compile(job["prelude"] + "\n", "prelude.py", "exec"), scope)
        exec(compile(job["code"], "solution.py", "exec"), scope)
        return scope, ""
    except BaseException as e:  # noqa: BLE001 - any failure of the program fails every test
        return None, ": ".join(_describe(e))


def serve(job, rfd, wfd):
    """Run the program, then answer requests until the judge closes the channel or kills us."""
    wire.send(wfd, {"ready": True})
    loaded, error = _load(job)
    wire.send(wfd, {"loaded": error})
    while True:
        try:
            request = wire.recv(rfd)
        except wire.WireError:
            os._exit(0)
        op = request.get("op")
        if op == "resolve":
            reply = {"kinds": {n: _resolve(loaded, n) for n in request["names"]}}
        elif op == "call":
            reply = _call(loaded, request)
        elif op == "tool":
            reply = _run_case(loaded, "", wfd, rfd, show_errors=True)
        else:
            reply = _run_case(loaded, request["input"], wfd, rfd)
        wire.send(wfd, reply)
