"""Evaluation: unbiased pass@k and avg@k against hand-worked numbers, and evaluate() end to end."""
import json
from math import comb

import pytest
import torch

from rlreason.cli import main
from rlreason.config import EvalConfig
from rlreason.rewards.routing import Scorer

MATH = Scorer.for_all([{"name": "math_answer"}]).correct  # correctness verdicts of the math_answer term
from rlreason.errors import ConfigError
from rlreason.config_load import load_config
from rlreason import distributed
from rlreason.evaluate import avg_at_k, eval_metrics, eval_records, evaluate, pass_at_k, sampled_metrics
from rlreason.logging import eval_line
from rlreason.types import Completion, Rollout, Sample


@pytest.mark.parametrize("n, c, k, expected", [
    (1, 0, 1, 0.0),
    (1, 1, 1, 1.0),
    (4, 1, 1, 0.25),          # pass@1 = c/n
    (4, 1, 2, 0.5),           # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (4, 2, 2, 5 / 6),         # 1 - C(2,2)/C(4,2) = 1 - 1/6
    (5, 2, 3, 0.9),           # 1 - C(3,3)/C(5,3) = 1 - 1/10
    (10, 3, 5, 11 / 12),      # 1 - C(7,5)/C(10,5) = 1 - 21/252
    (8, 0, 8, 0.0),
    (8, 4, 5, 1.0),           # n - c < k: every draw of 5 holds a correct one
    (200, 7, 100, 1 - comb(193, 100) / comb(200, 100)),
])
def test_pass_at_k_hand_worked(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_pass_at_k_is_stable_for_large_n():
    # C(1000, 500) overflows a float; the product form does not, and pass@1 is exactly c/n
    assert pass_at_k(1000, 3, 1) == pytest.approx(0.003)
    assert 0.0 < pass_at_k(1000, 1, 500) == pytest.approx(0.5)


def test_pass_at_k_rejects_bad_arguments():
    for n, c, k in [(4, 5, 1), (4, 1, 0), (4, 1, 5), (3, -1, 1)]:
        with pytest.raises(ValueError, match="pass@k"):
            pass_at_k(n, c, k)


def test_avg_at_k_and_problem_means():
    assert avg_at_k([1, 0, 1, 1], 1) == 1.0
    assert avg_at_k([1, 0, 1, 1], 2) == 0.5
    assert avg_at_k([1, 0, 1, 1], 4) == 0.75
    m = sampled_metrics([[True, False, True, True], [False, False, False, True]], [1, 2, 4])
    assert m["eval/avg@1"] == pytest.approx((1 + 0) / 2)
    assert m["eval/avg@2"] == pytest.approx((0.5 + 0) / 2)
    assert m["eval/avg@4"] == pytest.approx((0.75 + 0.25) / 2)
    assert m["eval/pass@1"] == pytest.approx((0.75 + 0.25) / 2)
    assert m["eval/pass@2"] == pytest.approx((1.0 + 0.5) / 2)  # problem 2: 1 - C(3,2)/C(4,2)
    assert m["eval/pass@4"] == pytest.approx(1.0)


class ScriptedEngine:
    """Greedy: problem p correct iff p is even. Sampled: problem p has correct[p] right answers first."""

    def __init__(self, correct):
        self.correct, self.calls = correct, []

    def generate(self, samples, n, temperature=1.0, top_p=1.0, max_new_tokens=64, greedy=False):
        self.calls.append((n, temperature, top_p, greedy))
        torch.rand(3)  # like a real sampler, consume the RNG
        comps = []
        for p, s in enumerate(samples):
            for j in range(n):
                ok = (p % 2 == 0) if greedy else j < self.correct[p]
                text = f"<think>x</think>\\boxed{{{s.answer if ok else 'nope'}}}"
                comps.append(Completion(text, [1] * (3 + p), [0.0] * (3 + p), "length" if p == 0 else "stop"))
        return Rollout(samples=list(samples), completions=comps, group_size=n)


def _samples(k):
    return [Sample(id=str(i), task="t", answer=str(i + 1), prompt=f"{i}+1=") for i in range(k)]


def test_evaluate_greedy_and_sampled_end_to_end():
    eng = ScriptedEngine(correct=[0, 1, 4])
    terms = [{"name": "math_answer", "weight": 1.0, "params": {}}]
    cfg = EvalConfig(samples=4, temperature=0.7, top_p=0.9, pass_k=[1, 2, 4])
    m = evaluate(eng, _samples(3), Scorer.for_all(terms).correct, 8, cfg)
    assert eng.calls == [(1, 1.0, 1.0, True), (4, 0.7, 0.9, False)]
    assert m["eval/accuracy"] == pytest.approx(2 / 3)  # problems 0 and 2
    assert m["eval/response_length"] == pytest.approx(4) and m["eval/truncated"] == pytest.approx(1 / 3)
    assert m["eval/avg@1"] == pytest.approx((0 + 1 + 1) / 3)
    assert m["eval/avg@4"] == pytest.approx((0 + 0.25 + 1) / 3)
    assert m["eval/pass@2"] == pytest.approx((0 + 0.5 + 1) / 3)
    assert m["eval/pass@4"] == pytest.approx(2 / 3) and m["eval/samples"] == 4
    line = eval_line("after", m)
    assert "\n" not in line and "pass@4 66.7%" in line and "avg@1 66.7%" in line and "4 samples" in line


class ByIdEngine(ScriptedEngine):
    """Verdicts by problem id, not batch position: greedy right iff the id is even; sampled: correct[id] right."""

    def generate(self, samples, n, temperature=1.0, top_p=1.0, max_new_tokens=64, greedy=False):
        self.calls.append(len(samples))
        comps = []
        for s in samples:
            i = int(s.id)
            for j in range(n):
                ok = (i % 2 == 0) if greedy else j < self.correct[i]
                text = f"<think>x</think>\\boxed{{{s.answer if ok else 'nope'}}}"
                comps.append(Completion(text, [1] * (3 + i), [0.0] * (3 + i), "length" if i == 1 else "stop"))
        return Rollout(samples=list(samples), completions=comps, group_size=n)


def test_records_of_rank_shards_give_the_whole_set_metrics():
    """Under torchrun each rank evaluates every world-th problem; the gathered records give the same metrics."""
    terms = [{"name": "math_answer", "weight": 1.0, "params": {}}]
    cfg = EvalConfig(samples=3, pass_k=[1, 2])
    correct, samples = [0, 1, 3, 2, 3], _samples(5)
    judge = Scorer.for_all(terms).correct
    whole = evaluate(ByIdEngine(correct), samples, judge, 8, cfg)
    eng = ByIdEngine(correct)
    parts = [eval_records(eng, distributed.shard_prompts(samples, r, 2), judge, 8, cfg, seed_offset=r) for r in (0, 1)]
    assert eng.calls == [3, 3, 2, 2]  # greedy + sampled on each rank's share
    assert [len(p) for p in parts] == [3, 2] and parts[1][0]["sampled"] == [True, False, False]  # problem 1
    assert eval_metrics(distributed.unshard(parts), cfg.pass_k) == whole
    assert whole["eval/accuracy"] == pytest.approx(3 / 5) and whole["eval/size"] == 5
    assert whole["eval/truncated"] == pytest.approx(1 / 5) and whole["eval/response_length"] == pytest.approx(5)
    assert whole["eval/avg@1"] == pytest.approx(4 / 5) and whole["eval/pass@2"] == pytest.approx((0 + 2 / 3 + 3) / 5)
    assert eval_records(eng, [], Scorer.for_all(terms).correct, 8, cfg) == [] and eval_metrics([]) == {}


def test_sampled_eval_leaves_the_training_rng_alone():
    terms = [{"name": "math_answer", "weight": 1.0, "params": {}}]
    torch.manual_seed(11)
    evaluate(ScriptedEngine([1, 1]), _samples(2), Scorer.for_all(terms).correct, 8)  # greedy only
    a = torch.rand(4)
    torch.manual_seed(11)
    evaluate(ScriptedEngine([1, 1]), _samples(2), Scorer.for_all(terms).correct, 8, EvalConfig(samples=2))
    assert torch.equal(torch.rand(4), a)


def test_default_is_greedy_only():
    eng = ScriptedEngine([1, 1])
    m = evaluate(eng, _samples(2), MATH, 8, EvalConfig())
    assert len(eng.calls) == 1 and not any("@" in k for k in m)
    m = evaluate(ScriptedEngine([0, 3]), _samples(2), MATH, 8, EvalConfig(samples=3))
    assert set(k for k in m if "@" in k) == {"eval/avg@1", "eval/avg@3", "eval/pass@1", "eval/pass@3"}


def test_eval_config_validation():
    with pytest.raises(ConfigError, match="eval.pass_k"):
        load_config(None, ["eval.pass_k=[8]"])  # samples is 0
    with pytest.raises(ConfigError, match="eval.pass_k"):
        load_config(None, ["eval.samples=4", "eval.pass_k=[1,5]"])
    with pytest.raises(ConfigError, match="eval.temperature"):
        load_config(None, ["eval.temperature=0"])
    assert load_config(None, ["eval.samples=4", "eval.pass_k=[1,4]"]).eval.pass_k == [1, 4]


def test_cli_eval_report_has_pass_at_k(capsys, tmp_path, tiny_model_dir):
    out = tmp_path / "report.json"
    code = main(["eval", "--model", tiny_model_dir, "--out", str(out), "data.eval_size=3", "rollout.max_new_tokens=4",
                 "eval.samples=4", "eval.pass_k=[1,4]", "eval.temperature=1.5"])
    assert code == 0, capsys.readouterr().err
    r = json.loads(out.read_text())
    assert r["eval/samples"] == 4 and r["temperature"] == 1.5
    for k in (1, 4):
        assert 0.0 <= r[f"eval/avg@{k}"] <= 1.0 and 0.0 <= r[f"eval/pass@{k}"] <= 1.0
    assert r["eval/pass@4"] >= r["eval/pass@1"] == pytest.approx(r["eval/avg@4"])


def test_evaluating_during_training_leaves_the_training_run_unchanged(tmp_path, tiny_model_dir):
    """eval.every draws nothing from the training RNG stream (greedy eval draws nothing; sampled eval forks the
    RNG): every training record of a 3-step run is the same with and without it, perf/* timings aside."""
    from rlreason import train

    def records(every):
        cfg = load_config(None, [f"run.root={tmp_path}", f"run.name=e{every}", f"model.path={tiny_model_dir}",
                                 "rollout.prompts_per_step=2", "rollout.group_size=2", "rollout.max_new_tokens=6",
                                 "train.steps=3", "train.lr=1e-2", "data.eval_size=3", "eval.samples=2",
                                 f"eval.every={every}", "log.progress=false"])
        train(cfg)
        rows = [json.loads(x) for x in (tmp_path / f"e{every}" / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows if "reward/mean" in r], \
            [r["step"] for r in rows if "eval/accuracy" in r]

    (plain, plain_evals), (evaluated, evals) = records(0), records(1)
    assert plain_evals == [0, 3] and evals == [0, 1, 2, 3]
    assert len(plain) == 3 and plain == evaluated
