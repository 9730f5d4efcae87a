"""rewards/pool.py: persistent checker workers with a hard timeout; a crash or a hang is reported and the worker replaced."""
from rlreason.rewards.pool import WorkerPool


def test_pool_reports_crash_and_recovers(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(
        "import json, os, sys, time\n"
        "for line in sys.stdin:\n"
        "    x = json.loads(line)\n"
        "    if x == 'die': os._exit(1)\n"
        "    if x == 'hang': time.sleep(60)\n"
        "    print(json.dumps(x * 2), flush=True)\n"
    )
    with WorkerPool(str(script), workers=2, timeout_s=0.5) as pool:
        assert pool.map([1, "die", 3, "hang", 5]) == [("ok", 2), ("crash", None), ("ok", 6), ("timeout", None), ("ok", 10)]
        assert pool.map([7]) == [("ok", 14)]
        assert pool.restarts == 2
