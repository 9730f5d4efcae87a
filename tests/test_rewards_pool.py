"""rewards/pool.py: persistent checker workers with a hard timeout; a crash or a hang is reported and the worker replaced."""
from rlreason.rewards.pool import WorkerPool


def test_pool_reports_crash_and_recovers(tmp_path):
    script = tmp_path / "w.py"
    script.write_text(
        "import json, os, sys, time\n"
        "print(json.dumps('ready'), flush=True)\n"
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


def _script(tmp_path, body):
    path = tmp_path / "w.py"
    path.write_text("import json, os, sys, time\n" + body)
    return str(path)


def test_start_up_time_does_not_count_against_an_items_timeout(tmp_path):
    """Importing sympy can take seconds on a busy machine: the item clock starts at "ready", not at spawn."""
    script = _script(tmp_path, "time.sleep(1.5)\nprint(json.dumps('ready'), flush=True)\n"
                               "for line in sys.stdin:\n    print(line.strip(), flush=True)\n")
    with WorkerPool(script, workers=1, timeout_s=0.5) as pool:
        assert pool.map([1, [2]]) == [("ok", 1), ("ok", [2])]
        assert pool.restarts == 0


def test_a_reply_that_is_not_json_is_a_crash_and_the_worker_is_replaced(tmp_path):
    script = _script(tmp_path, "print(json.dumps('ready'), flush=True)\nfor line in sys.stdin:\n"
                               "    x = json.loads(line)\n    print('stray output' if x == 'bad' else json.dumps(x), flush=True)\n")
    with WorkerPool(script, workers=1, timeout_s=5) as pool:
        assert pool.map([1, "bad", 3]) == [("ok", 1), ("crash", None), ("ok", 3)]
        assert pool.restarts == 1


def test_workers_that_cannot_start_give_crashes_not_a_hang(tmp_path):
    script = _script(tmp_path, "sys.exit(3)\n")
    with WorkerPool(script, workers=2, timeout_s=5) as pool:
        assert pool.map([1, 2, 3]) == [("crash", None)] * 3
