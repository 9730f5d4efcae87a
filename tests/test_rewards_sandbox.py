"""rlreason.rewards.sandbox vs hostile code: every attack scores 0, the trainer survives, nothing outside changes.

Each attack is written so that it would *pass* its test if the attack worked:
a score of 0 means the sandbox stopped it (or it burnt its time budget).
"""
from __future__ import annotations

import os
import socket
import tempfile
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from rlreason.rewards import REWARDS
from rlreason.rewards.sandbox import Job, Limits, features, run
from rlreason.types import Completion, Rollout, Sample

SECRET = "rlreason-test-secret-5b2c"


def code_rollout(codes, answer):
    samples = [Sample(id=f"c{i}", task="code", prompt="write f", answer=answer) for i in range(len(codes))]
    completions = [Completion(f"```python\n{textwrap.dedent(c)}\n```", [1], [0.0], "stop") for c in codes]
    return Rollout(samples, completions, 1)


@pytest.fixture
def outside(tmp_path, monkeypatch):
    """A directory outside the sandbox with one file, a listening TCP socket, and the secret in our env."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "keep.txt").write_text("precious")
    monkeypatch.setenv("RLREASON_TEST_SECRET", SECRET)
    sandboxes = tmp_path / "sandboxes"
    sandboxes.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(sandboxes))  # where the sandbox makes its work dirs
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted = []

    def accept_loop():
        while not stop.is_set():
            try:
                accepted.append(server.accept())
            except OSError:
                pass

    stop = threading.Event()
    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield {"dir": d, "port": server.getsockname()[1], "accepted": accepted, "sandboxes": sandboxes}
    stop.set()
    thread.join()
    server.close()


def attacks(o):
    d, port, me = o["dir"], o["port"], os.getpid()
    return {
        "fork_bomb": """
            import os
            while True:
                os.fork()
            def f(x): return x""",
        "infinite_loop": """
            while True:
                pass
            def f(x): return x""",
        "memory_bomb": """
            blocks = []
            for _ in range(64):
                blocks.append(bytearray(256 << 20))  # 16 GiB in total
            def f(x): return x""",
        "disk_filler_one_file": """
            with open("big.bin", "wb") as fh:
                for _ in range(1024):
                    fh.write(b"0" * (1 << 20))  # 1 GiB
            def f(x): return x""",
        "disk_filler_many_files": """
            for i in range(1024):
                with open(f"part{i}.bin", "wb") as fh:
                    fh.write(b"0" * (8 << 20))  # 8 GiB in total, each file under the size limit
            def f(x): return x""",
        "write_outside": f"""
            open({str(d / 'pwned.txt')!r}, "w").write("x")
            open("/tmp/rlreason-pwned.txt", "w").write("x")
            def f(x): return x""",
        "delete_files": f"""
            import os, shutil
            os.remove({str(d / 'keep.txt')!r})
            shutil.rmtree({str(d)!r})
            def f(x): return x""",
        "network_connect": f"""
            import socket
            socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hi")
            def f(x): return x""",
        "network_internet": """
            import socket
            socket.create_connection(("1.1.1.1", 53), timeout=2)
            def f(x): return x""",
        "read_parent_env": f"""
            import os
            leaked = os.environ.get("RLREASON_TEST_SECRET") == {SECRET!r}
            if not leaked:
                leaked = {SECRET!r}.encode() in open("/proc/{me}/environ", "rb").read()
            def f(x): return x if leaked else None""",
        "kill_parent": f"""
            import os, signal
            os.kill(os.getppid(), signal.SIGKILL) if os.getppid() > 1 else None
            os.kill({me}, signal.SIGKILL)
            def f(x): return x""",
        "kill_everything": """
            import os, signal
            os.kill(-1, signal.SIGKILL)
            def f(x): return x""",
        "exit_early_with_success": """
            import os
            os._exit(0)
            def f(x): return x""",
        "sys_exit_zero": """
            import sys
            sys.exit(0)
            def f(x): return x""",
    }


REQUIRES = {"network_connect": "netns", "network_internet": "netns", "write_outside": "mountns",
            "delete_files": "mountns", "kill_parent": "uid", "kill_everything": "uid",
            "read_parent_env": "uid"}  # /proc/<trainer>/environ is readable by the same uid without pidns/uid drop


@pytest.mark.skipif(not {"netns", "mountns", "pidns"} <= set(features()),
                    reason=f"this machine allows only {features() or 'no'} namespaces: the sandbox runs with "
                           "rlimits only (docs/rewards.md, threat model) and the battery skips the cases that need them")
def test_isolation_features_on_this_machine():
    got = features()
    assert set(got) >= {"netns", "mountns", "pidns"}, got  # here (and on the CI machine so far) all are available


def test_malicious_battery(outside):
    cases = attacks(outside)
    missing = {name: feat for name, feat in REQUIRES.items() if feat not in features() and not (
        feat == "uid" and "userns" in features() and "pidns" in features())}
    names = [n for n in cases if n not in missing]
    before = sorted(os.listdir("/tmp"))
    out = REWARDS.get("code_tests")(code_rollout([cases[n] for n in names], {"tests": ["assert f(3) == 3"]}),
                                    timeout_s=3, workers=2)
    scores = dict(zip(names, out.scores))
    assert scores == {n: 0.0 for n in names}, scores
    assert out.counts["timeouts"] >= 1 and out.counts["violations"] >= 1, out.counts  # the loop; the early exit
    assert out.counts["errors"] == 0 and "error" not in out.outcomes  # nothing here is the sandbox's failure
    # nothing outside changed
    assert sorted(p.name for p in outside["dir"].iterdir()) == ["keep.txt"]
    assert (outside["dir"] / "keep.txt").read_text() == "precious"
    assert not os.path.exists("/tmp/rlreason-pwned.txt")
    assert [p for p in sorted(os.listdir("/tmp")) if p not in before and "pwned" in p] == []
    assert outside["accepted"] == []
    assert list(outside["sandboxes"].iterdir()) == []  # work dirs removed
    assert os.environ["RLREASON_TEST_SECRET"] == SECRET  # and we are alive to check


def test_honest_code_passes_and_sandbox_sees_a_scrubbed_world(outside):
    code = """
        import ctypes, os
        def f(x): return x
        def probe():
            open("scratch.txt", "w").write("writing inside the work dir is fine")
            libc = ctypes.CDLL(None, use_errno=True)
            unshare = libc.unshare(0x10000000)  # CLONE_NEWUSER
            return {"env": dict(os.environ), "cwd_files": sorted(os.listdir(".")), "uid": os.getuid(),
                    "scratch": open("scratch.txt").read(), "unshare": (unshare, ctypes.get_errno())}
    """
    tests = ["assert f(3) == 3", "p = probe()", "assert 'RLREASON_TEST_SECRET' not in p['env']",
             "assert p['cwd_files'] == ['scratch.txt']", "assert p['scratch'].startswith('writing')"]
    if "uid" in features():
        tests.append("assert p['uid'] in range(210000, 210256)")  # a uid of its own, from the pool
    if "seccomp" in features():
        tests.append("assert p['unshare'] == (-1, 1)")  # EPERM: no new user namespace from inside
    out = REWARDS.get("code_tests")(code_rollout([code], {"tests": tests}), scoring="fraction")
    assert out.scores == [1.0]
    assert out.counts == {"timeouts": 0, "violations": 0, "errors": 0} and out.outcomes == ["ok"]


def test_limits_are_applied():
    job = Job(code="import resource\nlim = {n: resource.getrlimit(getattr(resource, n))[0] for n in "
                   "('RLIMIT_CPU', 'RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE', 'RLIMIT_NPROC')}",
              tests=["assert lim == {'RLIMIT_CPU': 2, 'RLIMIT_AS': 256 << 20, 'RLIMIT_FSIZE': 1 << 20,"
                     " 'RLIMIT_NOFILE': 16, 'RLIMIT_NPROC': 8}, lim"],
              limits=Limits(timeout_s=5, cpu_s=2, memory_mb=256, file_mb=1, nofile=16, nproc=8))
    assert run(job).passed == 1


def test_wall_clock_timeout_is_enforced_quickly():
    import time

    start = time.perf_counter()
    r = run(Job(code="import time\ntime.sleep(60)", tests=["pass"], limits=Limits(timeout_s=1)))
    assert r.status == "timeout" and time.perf_counter() - start < 5


def test_sandbox_runs_in_parallel_threads():
    jobs = [Job(code=f"x = {i}", tests=[f"assert x == {i}"]) for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        assert [r.passed for r in pool.map(run, jobs)] == [1] * 8


@pytest.mark.skipif(os.geteuid() != 0, reason="the root fallback")
def test_without_namespaces_root_still_drops_to_a_pool_uid(monkeypatch, caplog):
    """A program must never run as root: one kill(-1, SIGKILL) there ends every process on the machine."""
    from rlreason.rewards import sandbox

    real_run = sandbox._run

    def no_namespaces(job, wanted):
        if "netns" in wanted:
            raise sandbox.SandboxError("unshare: Operation not permitted")
        return real_run(job, wanted)

    monkeypatch.setattr(sandbox, "_run", no_namespaces)
    sandbox.features.cache_clear()
    try:
        got = sandbox.features()
    finally:
        sandbox.features.cache_clear()
    assert got[0] == "uid" and "namespaces unavailable" in caplog.text
    r = run(Job(code="import os\ndef uid(): return os.getuid()", tests=["assert uid() in range(210000, 210256)"]),
            isolation=got)
    assert (r.status, r.passed) == ("ok", 1)
