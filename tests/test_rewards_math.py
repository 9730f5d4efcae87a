"""rlreason.rewards.math: math_answer on a table and on hard pairs, extract_answer and fallbacks, the pool's timeout."""
from __future__ import annotations

import threading
import time

import pytest

from rlreason.rewards import math as rmath
from rlreason.rewards import math_extract
from rlreason.rewards.math import check_many, extract_answer, is_equivalent, math_answer, normalize
from rlreason.types import Completion, Rollout, Sample

# (predicted answer, gold answer, equivalent?) -- each pair goes through the boxed path of math_answer.
HARD_PAIRS = [
    # fractions and decimals
    ("\\frac{2}{4}", "\\frac{1}{2}", True),
    ("-\\frac12", "-0.5", True),
    ("\\tfrac{3}{4}", "0.75", True),
    ("3/4", "\\frac{3}{4}", True),
    ("0.333", "\\frac{1}{3}", False),  # a rounded decimal is not the exact fraction
    ("0.67", "\\frac{2}{3}", False),
    ("\\frac{1}{3}", "\\frac{1}{4}", False),
    ("2.50", "\\frac{5}{2}", True),
    ("1.5", "\\frac{3}{2}", True),
    ("1.05", "1.5", False),
    # LaTeX forms
    ("\\sqrt{8}", "2\\sqrt{2}", True),
    ("\\sqrt{2}", "1.414", False),
    ("\\pi", "3.14", False),
    ("2\\pi", "\\pi \\cdot 2", True),
    ("\\left(1,2\\right)", "(1,2)", True),
    ("x^2+2x+1", "(x+1)^2", True),
    ("x^2+1", "(x+1)^2", False),
    ("\\dfrac{\\sqrt{3}}{3}", "\\frac{1}{\\sqrt{3}}", True),
    ("3\\sqrt{2}", "\\sqrt{18}", True),
    ("x \\le 3", "x < 3", False),
    ("\\infty", "\\infty", True),
    ("-\\infty", "\\infty", False),
    # percentages
    ("50\\%", "50", True),
    ("50\\%", "0.5", True),
    ("50%", "50", True),
    ("12.5\\%", "\\frac{1}{8}", True),
    ("25\\%", "50\\%", False),
    # intervals
    ("(1,2]", "(1,2]", True),
    ("(1,2)", "(1,2]", False),
    ("[1,2]", "[1, 2]", True),
    ("(-\\infty, 3)", "(-\\infty,3)", True),
    ("(-\\infty, 3]", "(-\\infty,3)", False),
    ("x \\in (1,2)", "(1,2)", True),
    ("[0,1)\\cup(2,3]", "[0,1)\\cup(2,3]", True),
    # sets and tuples
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\{1,2\\}", "\\{1,3\\}", False),
    ("1, 2, 3", "\\{1,2,3\\}", True),
    ("2, 1", "1,2", True),
    ("(1,2)", "(2,1)", False),  # an ordered pair is not a set
    ("\\{1,2\\}", "\\{1,2,3\\}", False),
    # thousands separators
    ("1{,}000", "1000", True),
    ("1,000,000", "1000000", True),
    ("1\\,000", "1000", True),
    ("1\\,000\\,000", "10^6", True),
    ("1,234.5", "1234.5", True),
    ("1,5", "1.5", False),  # not a decimal comma: reads as the list 1, 5
    ("1,2", "12", False),
    ("1\\,000", "100", False),
    # units, currency, degrees, equations, text
    ("5 \\text{ cm}", "5", True),
    ("5\\,\\text{cm}", "5", True),
    ("5 cm", "5", True),
    ("12 apples", "12", True),
    ("\\$5", "5", True),
    ("\\$1,000", "1000", True),
    ("\\$5.00", "5", True),
    ("6 \\text{ cm}", "5", False),
    ("30^\\circ", "30", True),
    ("30^{\\circ}", "\\frac{\\pi}{6}", False),
    ("x=5", "5", True),
    ("y = 2x+1", "2x+1", True),
    ("\\text{(A)}", "A", True),
    ("B", "A", False),
    ("10^{3}", "1000", True),
    ("1.5e3", "1500", False),  # not LaTeX; a careful grader would ask, we say no
]


def rollout(texts, answers, group_size=1):
    samples = [Sample(id=f"s{i}", task="t", prompt="q", answer=a) for i, a in enumerate(answers)]
    return Rollout(samples, [Completion(t, [1], [0.0], "stop") for t in texts], group_size)


def test_hard_pairs_table_is_big_enough():
    assert len(HARD_PAIRS) >= 60
    assert sum(eq for _, _, eq in HARD_PAIRS) >= 25 and sum(not eq for _, _, eq in HARD_PAIRS) >= 20


@pytest.mark.parametrize("pred,gold,equivalent", HARD_PAIRS)
def test_hard_pairs(pred, gold, equivalent):
    out = math_answer(rollout([f"<think>work</think> \\boxed{{{pred}}}"], [gold]))
    assert out.scores == [1.0 if equivalent else 0.0], (pred, gold)
    assert out.counts == {"unparsed": 0, "timeouts": 0, "errors": 0}


def test_whole_table_in_one_batch_matches():
    verdicts = check_many([(p, g) for p, g, _ in HARD_PAIRS])
    assert verdicts == [eq for _, _, eq in HARD_PAIRS]


@pytest.mark.parametrize("pred,gold,expected", [("2.50", "\\frac{5}{2}", True), ("-\\dfrac{3}{4}", "-0.75", True),
                                                ("0.333", "1/3", False), ("1/0", "0", False), ("7/2", "3.5", True)])
def test_exact_rational_path_agrees_with_a_grader(pred, gold, expected):
    assert rmath.read_number(pred) is not None or pred == "1/0"
    assert check_many([(pred, gold)]) == [expected]


def test_normalize():
    assert normalize("\\$1\\,000") == "1000"
    assert normalize(" 12 apples ") == "12"
    assert normalize("2 x") == "2 x"  # a one-letter word may be a variable
    assert normalize("x + 1") == "x + 1"


def test_pathological_expression_times_out_scores_zero_and_is_counted():
    texts = ["\\boxed{(x+1)^{100000000}}", "\\boxed{\\frac{1}{2}}"]
    start = time.perf_counter()
    out = math_answer(rollout(texts, ["x^{100000000}+1", "0.5"]), timeout_s=1.0)
    elapsed = time.perf_counter() - start
    assert out.scores == [0.0, 1.0]
    assert out.counts == {"unparsed": 0, "timeouts": 1, "errors": 0}
    assert elapsed < 8  # at most the timeout (+ a worker restart), never the minutes sympy would take


def test_pool_is_lazy_reused_and_shut_down():
    rmath.shutdown()
    assert rmath._POOLS == {}
    math_answer(rollout(["\\boxed{42}", "\\boxed{0.25}"], ["42", "1/4"]))  # exact in-process paths: no pool
    assert rmath._POOLS == {}
    math_answer(rollout(["\\boxed{\\sqrt{4}}"], ["2"]))
    pool = rmath._POOLS[(2, rmath.TIMEOUT_S)]
    pids = {w.proc.pid for w in pool._workers}
    math_answer(rollout(["\\boxed{\\sqrt{9}}"], ["3"]))
    assert rmath._POOLS[(2, rmath.TIMEOUT_S)] is pool and {w.proc.pid for w in pool._workers} == pids
    procs = [w.proc for w in pool._workers]
    rmath.shutdown()
    assert rmath._POOLS == {} and all(p.poll() is not None for p in procs)


@pytest.mark.parametrize(
    "text,fallback,expected",
    [
        ("The answer is 3/4.", ["answer_line", "last_number"], "3/4"),
        ("Answer: $x = 2$", "answer_line", "x = 2"),
        ("the answer is 3/4.", "last_number", "4"),
        ("no answer line, 17", ["answer_line", "last_number"], "17"),
        ("nothing here", ["answer_line", "last_number"], None),
    ],
)
def test_fallback_chain(text, fallback, expected):
    assert extract_answer(text, fallback) == expected


def test_answer_line_fallback_end_to_end():
    out = math_answer(rollout(["so the answer is \\frac{3}{4}."], ["0.75"]), fallback=["answer_line"])
    assert out.scores == [1.0]
    with pytest.raises(ValueError, match="fallback"):
        math_answer(rollout(["x"], ["1"]), fallback=["answer_line", "first_number"])


# ----------------------------------------------------------------------------- math_answer on a table of cases


B = "\\boxed"


# (completion text, gold answer, expected score)
MATH_CASES = [
    (B + "{132}", "132", 1.0),
    (B + "{12}", "13", 0.0),
    (B + "{-7}", "-7", 1.0),
    (B + "{-7}", "7", 0.0),
    (B + "{1,234}", "1234", 1.0),
    (B + "{1234}", "1,234", 1.0),
    (B + "{ 132 }", "132", 1.0),
    (B + "{007}", "7", 1.0),
    (B + "{\\frac{1}{2}}", "0.5", 1.0),
    (B + "{0.5}", "1/2", 1.0),
    (B + "{1/2}", "\\frac{1}{2}", 1.0),
    (B + "{\\frac34}", "0.75", 1.0),
    (B + "{\\dfrac{1}{3}}", "1/2", 0.0),
    (B + "{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}", 1.0),
    (B + "{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{2}}{2}", 0.0),
    ("first " + B + "{5}, then " + B + "{7}", "7", 1.0),
    ("first " + B + "{5}, then " + B + "{7}", "5", 0.0),
    ("ok " + B + "{5} but cut off " + B + "{7", "5", 1.0),
    ("\\fbox{42}", "42", 1.0),
    (B + "{3.0}", "3", 1.0),
    (B + "{2.50}", "2.5", 1.0),
    (B + "{2.5}", "2.05", 0.0),
    (B + "{x+1}", "1+x", 1.0),
    (B + "{2\\sqrt{2}}", "\\sqrt{8}", 1.0),
    (B + "{\\pi}", "3", 0.0),
    (B + "{10^{3}}", "1000", 1.0),
    (B + "{5}", "$5$", 1.0),
    (B + "{132} and then some words 99", "132", 1.0),
    ("The answer is 132.", "132", 1.0),
    ("I first got 12, then 13", "13", 1.0),
    ("I first got 12, then 13", "12", 0.0),
    ("so 5-3 gives 2", "2", 1.0),
    ("the result is -15", "-15", 1.0),
    ("in total 1,234 apples", "1234", 1.0),
    ("half of it: 0.5", "\\frac{1}{2}", 1.0),
    ("No answer here.", "132", 0.0),
]


@pytest.mark.parametrize("text,gold,expected", MATH_CASES)
def test_math_answer_table(text, gold, expected):
    out = math_answer(rollout([text], [gold]))
    assert out.scores == [expected]


def test_math_answer_params_and_unparsed_count():
    texts = [B + "{132}", B + "{131}", "no number", "it is 132"]
    out = math_answer(rollout(texts, ["132", "132"], group_size=2), correct=2.0, wrong=-1.0)
    assert out.scores == [2.0, -1.0, -1.0, 2.0]
    assert out.counts == {"unparsed": 1, "timeouts": 0, "errors": 0}
    out = math_answer(rollout(texts, ["132", "132"], group_size=2), fallback="none")
    assert out.scores == [1.0, 0.0, 0.0, 0.0]
    assert out.counts == {"unparsed": 2, "timeouts": 0, "errors": 0}


def test_math_answer_bad_fallback():
    with pytest.raises(ValueError, match="fallback"):
        math_answer(rollout([B + "{1}"], ["1"]), fallback="first_number")


@pytest.mark.parametrize(
    "text,fallback,expected",
    [
        (B + "{\\frac{1}{2}}", "none", "\\frac{1}{2}"),
        (B + "{1} " + B + "{\\text{a}\\{b\\}}", "none", "\\text{a}\\{b\\}"),
        ("x = 1,234.5 m", "last_number", "1234.5"),
        ("value .5", "last_number", ".5"),
        ("from 3 to (4)-2", "last_number", "2"),
        ("nothing", "last_number", None),
        ("42", "none", None),
    ],
)
def test_extract_answer(text, fallback, expected):
    assert extract_answer(text, fallback) == expected


def test_is_equivalent():
    assert is_equivalent("1,234", "1234")
    assert is_equivalent("\\frac{1}{2}", "0.5")
    assert not is_equivalent("12", "13")
    assert not is_equivalent("", "13")
    assert not is_equivalent("1,2", "12")  # not a thousands separator


def test_math_answer_off_main_thread():
    texts = [B + "{\\frac{1}{2}}", B + "{0.25}", B + "{x^2+2x+1}"]
    result: dict = {}

    def work():
        try:
            result["out"] = math_answer(rollout(texts, ["1/2", "1/4", "(x+1)^2"]))
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert "error" not in result, result.get("error")
    assert result["out"].scores == [1.0, 1.0, 1.0]


def test_math_answer_integer_fast_path():
    n = 1000
    texts = [f"<think>{i}*1</think> so {B}{{{i if i % 3 else i + 1}}}" for i in range(n)]
    r = rollout(texts, [str(i) for i in range(n)])
    start = time.perf_counter()
    out = math_answer(r)
    assert time.perf_counter() - start < 0.5  # ~0.005 s on one core; loose for busy machines
    assert sum(out.scores) == n - len(range(0, n, 3))


def _last_boxed_by_definition(text):
    """The specification, quadratic: for each box start from the last, scan for its matching brace."""
    for start in reversed([m.end() for m in math_extract._BOX.finditer(text)]):
        depth = 1
        for j in range(start, len(text)):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            if depth == 0:
                return text[start:j].strip()
    return None


def test_last_boxed_matches_its_definition_on_random_text():
    import random

    rng = random.Random(0)
    pieces = ["\\boxed{", "\\fbox{", "\\boxed {", "{", "}", "}", "a", "1", " "]
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert rmath.last_boxed(text) == _last_boxed_by_definition(text), text


def test_unclosed_boxes_cost_linear_time():
    """A completion of 6000 (or 60000) unclosed boxes, the attack that took 16 s in the main process."""
    for n in (6000, 60000):
        r = Rollout([Sample(id="q", task="t", prompt="p", answer="1")],
                    [Completion("\\boxed{1} " + "\\boxed{" * n, [1], [0.0], "stop")], 1)
        t0 = time.time()
        assert math_answer(r).scores == [1.0]  # the earlier closed box is the answer
        assert time.time() - t0 < 1.0


# ----------------------------------------------------------------------------- the gold's form never decides


# family: (gold forms of one value, predictions that are right, predictions that are wrong). The decimal
# rule (rewards/math_extract.py): a decimal with >= 6 significant digits is right when it is the gold
# rounded up or down to its own decimal places; otherwise a prediction must equal the gold exactly.
VERDICT_FAMILIES = {
    "one third": (
        ["1/3", "\\frac{1}{3}", "\\dfrac13", "0.\\overline{3}", "\\tfrac{1}{3}", "\\frac{2}{6}", "0.3\\overline{3}",
         "\\frac{\\sqrt{4}}{6}"],
        ["1/3", "\\frac13", "2/6", "0.\\overline{3}", "0.333333", "0.3333333", "0.333334", "0.33333333333333",
         "\\frac{\\sqrt{9}}{9}", "x = 0.333333"],
        ["0.33", "0.333", "0.3333", "0.33333", "0.333332", "0.3333332", "0.34", "1/4", "-1/3", "3", "x=0.33333"],
    ),
    "one half": (
        ["\\frac12", "0.5", "1/2", "\\tfrac{1}{2}", "0.50", "\\frac{2}{4}", "\\dfrac{1}{2}"],
        ["0.5", ".5", "1/2", "\\frac{1}{2}", "0.500000", "50\\%", "\\frac{3}{6}"],
        ["0.49", "0.4999999", "0.5000001", "50", "5", "2", "0.55", "0.51"],
    ),
    "five halves": (
        ["5/2", "2.5", "\\frac{5}{2}", "2\\frac{1}{2}", "\\frac{\\sqrt{25}}{2}"],
        ["2.5", "2.50", "5/2", "2.500000", "\\frac{10}{4}"],
        ["2.499999", "2.4999999", "2.500001", "2.49", "2.51", "3", "2"],
    ),
    "one thousand": (
        ["1000", "1,000", "1{,}000", "1\\,000", "10^3", "1000.0", "\\$1,000"],
        ["1000", "1,000", "1000.00", "10^{3}", "1\\,000", "1{,}000", "1000 apples"],
        ["100", "10000", "1,000,000", "999.9999", "1000.001", "1000.5", "1,0000"],
    ),
    "minus two thirds": (
        ["-\\frac{2}{3}", "\\frac{-2}{3}", "-2/3", "-\\dfrac23", "-0.\\overline{6}", "-\\frac{4}{6}"],
        ["-2/3", "-\\frac{4}{6}", "-0.666667", "-0.6666667", "-0.666666", "-0.\\overline{6}"],
        ["-0.67", "-0.667", "0.666667", "2/3", "-0.666", "-0.666665"],
    ),
    "two root two": (
        ["2\\sqrt{2}", "\\sqrt{8}", "\\frac{4}{\\sqrt{2}}", "2^{3/2}", "\\sqrt{2}\\cdot 2"],
        ["2\\sqrt{2}", "\\sqrt{8}", "2.828427", "2.82843", "2.82842", "2.8284271247"],
        ["2.83", "2.8284", "2.828426", "2.82844", "\\sqrt{6}", "8", "4"],
    ),
}


@pytest.mark.parametrize("family", list(VERDICT_FAMILIES))
def test_verdict_does_not_depend_on_how_the_gold_is_written(family):
    golds, right, wrong = VERDICT_FAMILIES[family]
    preds = right + wrong
    verdicts = check_many([(p, g) for p in preds for g in golds])
    table = {p: verdicts[i * len(golds):(i + 1) * len(golds)] for i, p in enumerate(preds)}
    mixed = {p: dict(zip(golds, v)) for p, v in table.items() if len(set(v)) > 1}
    assert mixed == {}, f"verdict depends on the gold's form: {mixed}"
    assert [p for p in right if table[p][0] is not True] == []
    assert [p for p in wrong if table[p][0] is not False] == []


def test_worker_applies_the_same_decimal_rule_as_the_in_process_path():
    """Random rationals a/b and decimals near them (rounded, truncated, one unit off, at 1-9 places): the
    gold a/b is decided in-process, the same value written with a square root by the worker's rule."""
    import random

    rng, pairs = random.Random(1), []
    for _ in range(40):
        a, b = rng.randint(-999, 999), rng.randint(1, 99)
        places = rng.randint(1, 9)
        near = round(a / b, places) + rng.choice([0, 0, 1, -1]) * 10 ** -places
        pred = f"{near:.{places}f}"
        pairs += [(pred, f"{a}/{b}"), (pred, f"\\frac{{{a}\\sqrt{{4}}}}{{{2 * b}}}")]
    verdicts = check_many(pairs)
    assert verdicts[0::2] == verdicts[1::2], [p for p, x, y in zip(pairs[::2], verdicts[0::2], verdicts[1::2]) if x != y]
    assert 5 < sum(verdicts[0::2]) < 35  # both verdicts occur


# ----------------------------------------------------------------------------- hostile completions, outcomes


def test_hostile_completions_are_decided_in_process_in_bounded_time():
    """Each completion would be slow or crash in the main process if extraction or reading were not linear
    and bounded: quadratic box matching, int() of a million digits (ValueError past 4300 digits),
    a backtracking answer-line regex, Fraction of huge numbers, or (in the worker) sympy on a deeply nested
    fraction, which would time out and be masked instead of wrong. All score 0, none needs a worker."""
    hostile = [
        "\\boxed{" * 6000,  # the 16 s completion
        "\\boxed{" * 150000,  # 1 MB of unclosed boxes
        "\\boxed{" + "7" * 10 ** 6 + "}",  # a million digits, boxed
        "so it is " + "7" * 10 ** 6,  # a million digits, last number
        "\\boxed{0." + "3" * 10 ** 6 + "}",
        "\\boxed{\\frac{" + "9" * 10 ** 5 + "}{" + "7" * 10 ** 5 + "}}",
        "\\boxed{0.\\overline{" + "3" * 10 ** 5 + "}}",
        "\\boxed{" + "{" * 10 ** 5 + "1" + "}" * 10 ** 5 + "}",  # deeply nested braces
        "the answer is a" + " " * 10 ** 6 + "b",  # quadratic for the old answer-line regex
        "answer: .\n" * 10 ** 5,
        "word 12, " * 120000,  # 1 MB of prose: the last number is 12
        "\\boxed{" + "\\frac{1}{" * 90 + "2" + "}" * 91,  # 820 chars sympy would chew on for minutes
    ]
    rmath.shutdown()
    start = time.perf_counter()
    out = math_answer(rollout(hostile, ["1"] * len(hostile)), fallback=["answer_line", "last_number"])
    elapsed = time.perf_counter() - start
    print(f"{len(hostile)} hostile completions ({sum(map(len, hostile)) / 1e6:.1f} MB) scored in {elapsed:.2f} s")
    assert out.scores == [0.0] * len(hostile) and out.outcomes == ["wrong"] * len(hostile)
    assert rmath._POOLS == {}  # all decided in-process: no sympy, no worker
    assert elapsed < 3.0  # ~0.5 s on an idle core; generous for a shared machine


def test_outcomes_ok_wrong_unparsed_and_timeout():
    texts = [B + "{\\frac{1}{2}}", B + "{3}", "no answer", B + "{(x+1)^{100000000}}", B + "{\\sqrt{4}}"]
    out = math_answer(rollout(texts, ["0.5", "4", "1", "x^{100000000}+1", "2"]), timeout_s=1.0, wrong=-1.0)
    assert out.outcomes == ["ok", "wrong", "wrong", "timeout", "ok"]
    assert out.scores == [1.0, -1.0, -1.0, -1.0, 1.0]
    assert out.counts == {"unparsed": 1, "timeouts": 1, "errors": 0}
    assert out.outcome_list() == out.outcomes


def test_a_worker_that_dies_or_raises_gives_error_outcomes(tmp_path, monkeypatch):
    """The parent's mapping, with a stand-in worker script: death and {"error": ...} are "error", not wrong."""
    script = tmp_path / "worker.py"
    script.write_text(
        "import json, os, sys\n"
        "print(json.dumps('ready'), flush=True)\n"
        "for line in sys.stdin:\n"
        "    pred, gold, *_ = json.loads(line)\n"
        "    if pred == 'die': os._exit(1)\n"
        "    out = {'error': 'boom'} if pred == 'raise' else pred == gold\n"
        "    print(json.dumps(out), flush=True)\n"
    )
    rmath.shutdown()
    monkeypatch.setattr(rmath, "_WORKER", str(script))
    try:
        texts = [B + "{die}", B + "{raise}", B + "{same}", B + "{7}"]
        out = math_answer(rollout(texts, ["x", "x", "same", "7"]))
    finally:
        rmath.shutdown()
    assert out.outcomes == ["error", "error", "ok", "ok"]
    assert out.scores == [0.0, 0.0, 1.0, 1.0] and out.counts == {"unparsed": 0, "timeouts": 0, "errors": 2}
    assert ("die", "x") not in rmath._CACHE and ("raise", "x") not in rmath._CACHE  # errors are not cached


def test_the_real_worker_reports_a_check_that_raises_as_an_error():
    from rlreason.rewards.pool import WorkerPool

    with WorkerPool(rmath._WORKER, workers=1, timeout_s=30) as pool:
        (status, value), ok = pool.map([[1, 2], ["1/2", "0.5"]])  # ints: the check raises a TypeError
    assert status == "ok" and "TypeError" in value["error"] and ok == ("ok", True)


def test_a_percentage_gold_is_its_own_family():
    """Gold 50\\% accepts the bare 50 (math-verify's percent rule); gold 1/2 does not (test above)."""
    preds = ["50", "50\\%", "0.5", "25", "0.25", "5"]
    assert check_many([(p, "50\\%") for p in preds]) == [True, True, True, False, False, False]
