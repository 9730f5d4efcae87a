"""rlreason.tasks.longcot: the long-CoT task (splits, determinism, worked columns, style params, length, tokenizer)."""
from __future__ import annotations

import itertools
import random
import re
import statistics
import zlib

import pytest
from transformers import AutoTokenizer

from rlreason.policy import REPO_ROOT
from rlreason.rewards import compute_rewards
from rlreason.tasks import TASKS
from rlreason.tasks.longcot import LongCotArith, add_columns, mul_columns, reduce_chain, sub_columns
from rlreason.types import Completion, Rollout

DEMO = re.compile(r"^<think>(.+)</think>\\boxed\{(-?\d+)\}$", re.S)
EQUATION = re.compile(r"(?<![\d)])(-?[\d(][\d+\-*/()]*)=(-?[\d(][\d+\-*/()]*)")
STYLES = [(v, e) for v in (0.0, 0.5, 1.0) for e in (0.0, 0.5, 1.0)]


def take(it, n):
    return list(itertools.islice(it, n))


def exprs(samples):
    return [s.meta["expression"] for s in samples]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(REPO_ROOT / "models" / "tiny-reasoner")


def test_registered_with_math_rewards():
    assert TASKS.get("longcot_arith") is LongCotArith
    assert [r["name"] for r in LongCotArith.default_rewards] == ["math_answer", "format"]


# ----------------------------------------------------------------------------- splits and determinism


def test_train_and_heldout_are_disjoint_for_every_seed():
    held = exprs(LongCotArith({}).eval_samples(300))
    assert len(set(held)) == 300
    assert all(zlib.crc32(e.encode()) % 10 == 0 for e in held)
    for seed in (0, 1, 2):
        train = exprs(take(LongCotArith({}, seed=seed).train_samples(), 1000))
        assert not set(train) & set(held)
        assert all(zlib.crc32(e.encode()) % 10 != 0 for e in train)
    small = LongCotArith({"heldout_mod": 3, "min_digits": 1, "max_digits": 1, "min_operands": 2, "max_operands": 2})
    assert not set(exprs(small.eval_samples(40))) & set(exprs(take(small.train_samples(), 500)))


def test_deterministic_per_seed():
    a = LongCotArith({}, seed=3)
    first = [(s.id, s.meta["expression"], s.answer, a.demonstration(s)) for s in take(a.train_samples(), 100)]
    b = LongCotArith({}, seed=3)
    assert first == [(s.id, s.meta["expression"], s.answer, b.demonstration(s)) for s in take(b.train_samples(), 100)]
    other = exprs(take(LongCotArith({}, seed=4).train_samples(), 100))
    assert sum(x == y[1] for x, y in zip(other, first)) < 10
    assert exprs(LongCotArith({}, seed=0).eval_samples(50)) == exprs(LongCotArith({}, seed=9).eval_samples(50))


def test_problems_follow_params_and_answers_are_true():
    task = LongCotArith({"min_digits": 2, "max_digits": 5, "min_operands": 2, "max_operands": 6, "operators": "+-*"}, seed=1)
    samples = take(task.train_samples(), 300)
    for s in samples:
        nums = re.findall(r"\d+", s.meta["expression"])
        assert 2 <= len(nums) <= 6 and all(2 <= len(n) <= 5 and not n.startswith("0") for n in nums)
        assert s.answer == str(eval(s.meta["expression"]))
    assert {len(n) for s in samples for n in re.findall(r"\d+", s.meta["expression"])} == {2, 3, 4, 5}
    assert reduce_chain([2, 3, 4], ["+", "*"]) == ([[3, "*", 4, 12], [2, "+", 12, 14]], 14)
    assert reduce_chain([10, 3, 2], ["-", "-"]) == ([[10, "-", 3, 7], [7, "-", 2, 5]], 5)


# ----------------------------------------------------------------------------- the digit-by-digit work


def _from_columns(cols):
    """The number the columns write: every column's last digit, the leading column in full."""
    return int(str(cols[-1][1]) + "".join(str(v % 10) for _, v, _ in reversed(cols[:-1])))


def test_columns_compute_the_result():
    rng = random.Random(0)
    pairs = [(rng.randint(0, 10 ** rng.randint(1, 7)), rng.randint(0, 10 ** rng.randint(1, 7))) for _ in range(500)]
    pairs += [(0, 0), (9999, 1), (1000, 1), (5, 5), (10, 9)]
    for a, b in pairs:
        for expr, val, _ in add_columns(a, b) + sub_columns(max(a, b), min(a, b)) + mul_columns(a, b % 10):
            assert eval(expr) == val, expr
        assert _from_columns(add_columns(a, b)) == a + b
        assert _from_columns(mul_columns(a, b % 10)) == a * (b % 10)
        hi, lo = max(a, b), min(a, b)
        assert all(0 <= v <= 9 for _, v, _ in sub_columns(hi, lo))
        assert int("".join(str(v) for _, v, _ in reversed(sub_columns(hi, lo)))) == hi - lo
    assert add_columns(4821, 2746) == [("1+6", 7, ""), ("2+4", 6, ""), ("8+7", 15, " c1"), ("4+2+1", 7, "")]
    assert add_columns(873, 733) == [("3+3", 6, ""), ("7+3", 10, " c1"), ("8+7+1", 16, "")]  # no carry note at the end
    assert sub_columns(4821, 2746) == [("11-6", 5, " b1"), ("12-1-4", 7, " b1"), ("8-1-7", 0, ""), ("4-2", 2, "")]
    assert mul_columns(347, 6) == [("7*6", 42, " c4"), ("4*6+4", 28, " c2"), ("3*6+2", 20, "")]


def _demos(params, n=60, seed=0):
    task = LongCotArith(params, seed=seed)
    samples = take(task.train_samples(), n) + task.eval_samples(n // 3)
    return task, samples, [task.demonstration(s) for s in samples]


@pytest.mark.parametrize("verify, error", STYLES)
@pytest.mark.parametrize("operators", ["+-", "+-*"])
def test_demonstrations_are_right_in_every_style(operators, verify, error):
    """The boxed answer is the true value; every equation written is true except the slips, each of which is
    followed by ' wait' and its correction; the task's own rewards give every demonstration full marks."""
    params = {"operators": operators, "verify_rate": verify, "error_rate": error, "max_digits": 3 if "*" in operators else 4}
    task, samples, demos = _demos(params)
    for s, demo in zip(samples, demos):
        m = DEMO.match(demo)
        assert m and m[2] == s.answer == str(eval(s.meta["expression"])), demo
        for eq in EQUATION.finditer(m[1]):
            slip = m[1][eq.end():].startswith(" wait")
            assert (eval(eq[1]) == eval(eq[2])) != slip, f"{eq[0]} in\n{demo}"
        assert m[1].endswith(f"={s.answer}")
    rollout = Rollout(samples, [Completion(d, [1], [0.0], "stop") for d in demos], 1)
    scores = compute_rewards(rollout, task.default_rewards)
    assert scores.per_term["math_answer"] == [1.0] * len(demos) and scores.per_term["format"] == [1.0] * len(demos)


def test_error_rate_puts_a_corrected_slip_in_every_worked_line_or_none():
    _, samples, demos = _demos({"error_rate": 1.0, "verify_rate": 0.0})
    for demo in demos:
        worked = [line for line in demo.split("\n") if ": " in line and not line.startswith(("check", "shift"))]
        assert worked and all(line.count(" wait, ") == 1 for line in worked), demo
        assert re.search(r"=(\d+) wait, [\d+\-*]+=(\d+) not \1", demo)
    _, _, clean = _demos({"error_rate": 0.0, "verify_rate": 1.0})
    assert not any("wait" in d or " not " in d for d in clean)
    _, _, some = _demos({"error_rate": 0.2, "verify_rate": 0.0}, n=200)
    share = sum("wait" in d for d in some) / len(some)
    assert 0.2 < share < 0.9  # per step: some demonstrations have a slip, not all


def test_verify_rate_checks_every_step_or_none():
    _, samples, demos = _demos({"verify_rate": 1.0, "error_rate": 0.0})
    for s, demo in zip(samples, demos):
        checks = re.findall(r"^check (\d+)([+-])(\d+)=(\d+) ok$", demo, re.M)
        assert len(checks) == len(s.meta["steps"]), demo
        assert all(eval(f"{r}{op}{b}") == int(a) for r, op, b, a in checks)
    _, _, none = _demos({"verify_rate": 0.0, "error_rate": 1.0})
    assert not any("check" in d or " ok" in d for d in none)
    _, samples, mul = _demos({"verify_rate": 1.0, "operators": "*", "min_digits": 2, "max_digits": 3}, n=20)
    assert all(re.search(r"^check \d+/\d+=\d+ ok$", d, re.M) for d in mul)


def test_signed_steps_are_rewritten_by_hand():
    task = LongCotArith({"verify_rate": 0.0, "error_rate": 0.0})
    s = task._sample("462-6180+665+8253", 3200, reduce_chain([462, 6180, 665, 8253], ["-", "+", "+"])[0], "train", 0)
    demo = task.demonstration(s)
    assert demo.startswith("<think>462-6180=-(6180-462)\n6180-462: 10-2=8 b1, 8-1-6=1, 11-4=7 b1, 6-1-0=5, "
                           "so 6180-462=5718\nso 462-6180=-5718\n-5718+665=-(5718-665)\n")
    assert "-5053+8253=8253-5053\n" in demo and demo.endswith("so 462-6180+665+8253=3200</think>\\boxed{3200}")
    s2 = task._sample("5-20-7", -22, reduce_chain([5, 20, 7], ["-", "-"])[0], "train", 0)
    assert "-15-7=-(15+7)\n15+7: 5+7=12 c1, 1+0+1=2, so 15+7=22\nso -15-7=-22" in task.demonstration(s2)


# ----------------------------------------------------------------------------- length and tokenizer


def test_default_demonstrations_are_long_and_round_trip_the_tokenizer(tok):
    task, samples, demos = _demos({}, n=200)
    lengths = [len(tok(d, add_special_tokens=False).input_ids) for d in demos[:200]]
    assert statistics.mean(lengths) >= 150
    for params in ({}, {"operators": "+-*", "verify_rate": 1.0, "error_rate": 1.0, "max_digits": 3}):
        task, samples, demos = _demos(params)
        for s, d in zip(samples, demos):
            assert tok.decode(tok(d, add_special_tokens=False).input_ids) == d
            assert tok.decode(tok(s.meta["expression"], add_special_tokens=False).input_ids) == s.meta["expression"]
    plain = statistics.mean(len(d) for d in _demos({"verify_rate": 0.0, "error_rate": 0.0}, n=200)[2])
    styled = statistics.mean(len(d) for d in _demos({"verify_rate": 1.0, "error_rate": 1.0}, n=200)[2])
    assert styled > 1.2 * plain  # the checks and slips are removable length


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize("params, needle", [
    ({"verify_rate": 1.5}, "verify_rate"),
    ({"verify_rate": -0.1}, "verify_rate"),
    ({"error_rate": "0.2"}, "error_rate"),
    ({"error_rate": True}, "error_rate"),
    ({"min_digits": 0}, "min_digits"),
    ({"min_digits": 5, "max_digits": 4}, "max_digits"),
    ({"max_digits": 2.0}, "max_digits"),
    ({"min_operands": 1}, "min_operands"),
    ({"max_operands": 9}, "max_operands"),
    ({"operators": "+/"}, "operators"),
    ({"heldout_mod": 1}, "heldout_mod"),
    ({"error": 0.1}, "error"),
])
def test_bad_params_name_the_param(params, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        LongCotArith.check_params(params)
    with pytest.raises(ValueError, match=re.escape(needle)):
        LongCotArith(params)


def test_bad_param_in_a_config_is_one_line(capsys):
    from rlreason.cli import main

    assert main(["train", "data.task=longcot_arith", "data.params.error_rate=2"]) == 2
    err = capsys.readouterr().err
    assert "error_rate" in err and err.strip().count("\n") == 0


def test_cli_shows_a_prompt(capsys):
    from rlreason.cli import main

    assert main(["tasks", "show", "longcot_arith", "--index", "0"]) == 0
    head, body = capsys.readouterr().out.split("\n", 1)
    s = take(LongCotArith({}).train_samples(), 1)[0]
    assert "'longcot_arith'" in head and f"answer '{s.answer}'" in head
    assert body == f"<|user|>{s.meta['expression']}<|assistant|>\n"
