"""Sweeps: expansion and naming, validation before any run, skipping finished runs, the summary statistics,
the shipped sweep files, and a 2-config x 2-seed sweep end to end with the shipped model."""
import csv
import json
import math
import re
from pathlib import Path

import pytest

from rlreason.cli import main
from rlreason.errors import ConfigError
from rlreason.policy import REPO_ROOT
from rlreason.sweep import load_sweep
from rlreason.sweep_summary import axis_chance, chance_of_below, grid_axes, spread_line, summarize

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
DEFAULT = REPO_ROOT / "configs" / "default.yaml"


def _sweep_file(tmp_path, body: str) -> Path:
    p = tmp_path / "sweep.yaml"
    p.write_text(f"base: {DEFAULT}\nroot: {tmp_path / 'runs'}\n" + body)
    return p


def test_grid_times_list_expansion_and_naming(tmp_path):
    p = _sweep_file(tmp_path, "seeds: [0, 3]\noverrides: {train.steps: 7}\n"
                              "grid:\n  algo.advantage: [grpo, rloo]\n  algo.clip_high: [0.2, 0.28]\n"
                              "list:\n  - {name: one, algo.ppo_epochs: 1}\n  - {algo.ppo_epochs: 2}\n")
    s = load_sweep(str(p), ["train.lr=0.001"])
    assert s.configs == [f"advantage-{a}__clip_high-{c}__{e}" for a in ("grpo", "rloo") for c in ("0.2", "0.28")
                         for e in ("one", "ppo_epochs-2")]
    assert len(s.runs) == 8 * 2
    run = s.runs[8 + 1]  # seed-major: the 8 seed-0 runs, then advantage-grpo__clip_high-0.2__ppo_epochs-2, seed 3
    assert (run.config, run.seed) == ("advantage-grpo__clip_high-0.2__ppo_epochs-2", 3)
    assert run.run_dir == tmp_path / "runs" / run.config / "seed3"
    assert run.overrides[:5] == ["train.steps=7", 'algo.advantage="grpo"', "algo.clip_high=0.2", "algo.ppo_epochs=2",
                                 "train.lr=0.001"]
    assert f"log.group={run.config}" in run.overrides and "run.seed=3" in run.overrides


def test_grid_axis_of_named_change_sets_and_list_only(tmp_path):
    p = _sweep_file(tmp_path, "grid:\n  baseline:\n    - {name: a, algo.advantage: grpo}\n"
                              "    - {name: b, algo.advantage: dr_grpo, algo.loss_agg: seq_sum_norm}\n")
    s = load_sweep(str(p))
    assert s.configs == ["a", "b"] and [r.seed for r in s.runs] == [0, 0]
    # seed-major: both configurations' first seed, then their second (a stopped sweep has one seed of each)
    assert [(r.config, r.seed) for r in load_sweep(str(p), seeds=[5, 4]).runs] == [("a", 5), ("b", 5), ("a", 4), ("b", 4)]
    assert 'algo.loss_agg="seq_sum_norm"' in s.runs[1].overrides


@pytest.mark.parametrize("body, message", [
    ("grid:\n  algo.loss: [pg, nope]\n", "configuration 'loss-nope' (seed 0)"),
    ("list:\n  - {name: x, algo.nokey: 1}\n", "configuration 'x' (seed 0)"),
    ("list:\n  - {name: x, algo.loss: pg}\n  - {name: x, algo.loss: pg}\n", "both named 'x'"),
    ("grids:\n  algo.loss: [pg]\n", "unknown key 'grids'"),
    ("seeds: [0, 0]\nlist:\n  - {algo.loss: pg}\n", "key 'seeds'"),
    ("seeds: [0]\n", "needs a 'grid:' and/or a 'list:'"),
    ("grid:\n  algo.loss: []\n", "grid key 'algo.loss'"),
])
def test_bad_sweep_is_one_clear_error(tmp_path, body, message):
    p = _sweep_file(tmp_path, body)
    with pytest.raises(ConfigError, match="sweep.yaml") as err:
        load_sweep(str(p))
    assert message in str(err.value)
    assert not (tmp_path / "runs").exists()  # nothing started


def test_bad_sweep_exits_2_naming_the_configuration(tmp_path, capsys):
    p = _sweep_file(tmp_path, "grid:\n  algo.loss: [pg, nope]\n")
    assert main(["sweep", str(p)]) == 2
    assert "configuration 'loss-nope'" in capsys.readouterr().err


def _fake_run(run_dir: Path, rewards, lengths, kls, step_s, acc, config_yaml=None):
    run_dir.mkdir(parents=True)
    rows = [{"step": i + 1, "reward/mean": r, "reward/accuracy": 1 - r, "rollout/response_length": n, "perf/step_s": t,
             **({"policy/kl": k} if k is not None else {})}
            for i, (r, n, k, t) in enumerate(zip(rewards, lengths, kls, step_s))]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps({"accuracy_before": 0.4, "accuracy_after": acc}))
    if config_yaml:
        (run_dir / "config.yaml").write_text(config_yaml)


def test_summary_statistics_on_synthetic_runs(tmp_path):
    root = tmp_path / "runs"
    _fake_run(root / "a" / "seed0", [0.0, 0.5, 1.0], [10, 20, 30], [None, 0.1, 0.3], [1, 2, 3], 0.5)
    _fake_run(root / "a" / "seed1", [0.2, 0.2, 0.2], [30, 30, 30], [None, 0.2, 0.5], [2, 2, 2], 0.7)
    _fake_run(root / "b" / "seed0", [1.0, 1.0], [5, 7], [None, None], [4, 4], 0.9)
    (root / "b" / "seed1").mkdir()  # unfinished: no summary.json -> left out
    table = summarize(root)
    a, b = table["a"], table["b"]
    assert a["seeds"] == 2 and b["seeds"] == 1
    # per run: auc 0.5 and 0.2; train accuracy 0.5 and 0.8; length 20 and 30; KL at end 0.3 and 0.5; train time 6 and 6
    assert a["accuracy"][0] == pytest.approx(0.6) and a["accuracy"][1] == pytest.approx(math.sqrt(0.02))
    assert a["reward_auc"][0] == pytest.approx(0.35) and a["reward_auc"][1] == pytest.approx(math.sqrt(0.045))
    assert a["train_acc"][0] == pytest.approx(0.65) and a["train_acc"][1] == pytest.approx(math.sqrt(0.045))
    assert a["length"] == pytest.approx((25.0, math.sqrt(50)))
    assert a["kl_end"] == pytest.approx((0.4, math.sqrt(0.02)))
    assert a["train_s"] == (6.0, 0.0)
    assert b["accuracy"] == (0.9, None) and b["kl_end"] == (None, None)
    md = (root / "sweep_summary.md").read_text()
    assert "| a | 2 | 0.600 ± 0.141 | 0.350 ± 0.212 | 0.650 ± 0.212 | 25.0 ± 7.1 | 0.4000 ± 0.1414 | 6 ± 0 |" in md
    assert "| b | 1 | 0.900 | 1.000 | 0.000 | 6.0 |  | 8 |" in md
    rows = list(csv.DictReader(open(root / "sweep_summary.csv")))
    assert [r["config"] for r in rows] == ["a", "b"]
    assert float(rows[0]["reward_auc_std"]) == pytest.approx(math.sqrt(0.045), rel=1e-5)
    assert rows[1]["kl_end_mean"] == "" and rows[1]["accuracy_std"] == ""
    assert (root / "sweep_summary.png").stat().st_size > 10_000
    assert (root / "sweep_summary_final.png").stat().st_size > 5_000
    # b has the best single run but one seed: no spread to compare against
    assert "- held-out accuracy: only **a** has 2 seeds. Not compared (fewer than 2 seeds): b." in md


def test_differences_beyond_the_seed_spread(tmp_path):
    """Against the best mean, a configuration counts as worse only when all its seeds are below all of the best's."""
    root = tmp_path / "runs"
    for name, accs in {"a": [0.6, 0.7], "b": [0.4, 0.5], "c": [0.5, 0.65], "d": [0.9]}.items():
        for k, acc in enumerate(accs):
            _fake_run(root / name / f"seed{k}", [0.1 * k, 0.2], [10, 10], [None, None], [1, 1], acc)
    summarize(root)
    md = (root / "sweep_summary.md").read_text()
    assert ("- held-out accuracy: best mean **a** (comparing the 3 configurations with 2 seeds); below it beyond "
            "the seed spread (every seed lower than every seed of a): b (1 of 2); the other 1 are within the seed "
            "spread of a. Chance check: with each seed's values dealt out to the configurations at random (2000 "
            "shuffles),") in md
    assert "so this count alone does not show that any configuration is worse than the best. Not compared " \
           "(fewer than 2 seeds): d." in md
    assert "- reward AUC: best mean **a**" in md and "of a): none (0 of 2)" in md  # equal AUCs overlap


def test_seed_spread_compares_only_configurations_with_the_most_seeds(tmp_path):
    """A partly run sweep: all-below is likelier with fewer seeds (1/6 for 2 against 1/20 for 3), so the
    2-seed configurations are left out of a 3-seed comparison, even the one with the best mean."""
    root = tmp_path / "runs"
    for name, accs in {"a": [0.6, 0.7, 0.65], "b": [0.4, 0.5, 0.45], "c": [0.55, 0.85, 0.6],
                       "d": [0.9, 0.95], "e": [0.1, 0.2]}.items():
        for k, acc in enumerate(accs):
            _fake_run(root / name / f"seed{k}", [0.2, 0.4], [10, 10], [None, None], [1, 1], acc)
    summarize(root)
    md = (root / "sweep_summary.md").read_text()
    assert ("- held-out accuracy: best mean **c** (comparing the 3 configurations with 3 seeds); below it beyond "
            "the seed spread (every seed lower than every seed of c): b (1 of 2); the other 1 are within the seed "
            "spread of c. Chance check: with each seed's values dealt out to the configurations at random (2000 "
            "shuffles), 0.2 land below the best on average and 1 or more in 20.8% of shuffles; so this count "
            "alone does not show that any configuration is worse than the best. Not compared (fewer than 3 "
            "seeds): d, e.") in md
    assert "of a): none (0 of 2); the other 2 are within the seed spread of a. Not compared" in md  # no check


def test_axis_chance_against_enumerated_deals():
    """axis_chance against the fraction of equally likely deals enumerated by hand."""
    # the docstring's example: 2 blocks that keep or swap; a is as far out as observed in 2 of 4 deals
    assert axis_chance({"a__x": {"s0": 1}, "b__x": {"s0": 0}, "a__y": {"s0": 1}, "b__y": {"s0": 0}}, 0) == \
        pytest.approx({"a": 0.5, "b": 0.5}, abs=0.04)
    # test_by_axis_tables_for_a_grid's runs; one-run blocks stay put, the mean of all runs is 0.65.
    # part 1: blocks (x, seed0) [a .5, b .4] and (y, seed0) [a .6, b .8]; a's observed mean .6 (.05 from
    # .65); the 4 deals give a .6, .567, .667, .633, so 2 are as far out. Part 2: blocks (a, seed0)
    # [x .5, y .6] and (b, seed0) [x .4, y .8]; x's observed .533 is the only deal that far out (.567,
    # .667, .7 are not): 1 of 4.
    runs = {"a__x": {"seed0": 0.5, "seed1": 0.7}, "a__y": {"seed0": 0.6}, "b__x": {"seed0": 0.4},
            "b__y": {"seed0": 0.8, "seed1": 0.9}}
    assert axis_chance(runs, 0) == pytest.approx({"a": 0.5, "b": 0.5}, abs=0.04)
    assert axis_chance(runs, 1) == pytest.approx({"x": 0.25, "y": 0.25}, abs=0.04)


def test_chance_check_of_the_seed_spread():
    """chance_of_below against counts enumerated by hand: (observed, mean count, fraction >= observed)."""
    # 2 configurations, 2 seeds: 4 equally likely deals; a gets both highs or b does -> 1 below; mixed -> 0
    obs, mean, p = chance_of_below({"a": {"s0": 0.6, "s1": 0.9}, "b": {"s0": 0.4, "s1": 0.5}})
    assert obs == 1 and mean == pytest.approx(0.5, abs=0.04) and p == pytest.approx(0.5, abs=0.04)
    # a is best in every seed, 4 below it; chance gives 4 only when one configuration is dealt all three
    # 0.9s: 5 * (1/5)**3 = 0.04
    low = iter([0.1, 0.2, 0.3, 0.15, 0.25, 0.35, 0.12, 0.22, 0.32, 0.18, 0.28, 0.38])
    table = {"a": {f"s{k}": 0.9 for k in range(3)}}
    table |= {n: {f"s{k}": next(low) for k in range(3)} for n in "bcde"}
    obs, mean, p = chance_of_below(table)
    assert obs == 4 and p == pytest.approx(0.04, abs=0.012)
    line = spread_line(table, "acc")
    assert "4 or more in " in line and ("% of shuffles; that is every other configuration, the most extreme count there is, "
            "so this is the smallest fraction the check can give with 5 configurations of 3 seeds (1/5^2 = 4.0% "
            "when they ran the same seeds).") in line
    # different seeds per configuration: all four values dealt out together, two each; 1 below only when
    # one configuration gets both 0.9s (2 of the 6 ways to split)
    obs, mean, p = chance_of_below({"a": {"s0": 0.9, "s1": 0.9}, "b": {"s2": 0.1, "s3": 0.2}})
    assert obs == 1 and p == pytest.approx(1 / 3, abs=0.04)


def test_seed_spread_with_one_seed_each(tmp_path):
    """A sweep run one seed at a time has, after the first pass, nothing to compare: the markdown says so."""
    root = tmp_path / "runs"
    for name, acc in {"a": 0.6, "b": 0.4}.items():
        _fake_run(root / name / "seed0", [0.1, 0.2], [10, 10], [None, None], [1, 1], acc)
    summarize(root)
    md = (root / "sweep_summary.md").read_text()
    assert ("- held-out accuracy: every configuration has one seed, so no difference can be told apart from "
            "seed noise.") in md
    assert "best mean" not in md
    assert "By axis" not in md  # names without parts are no grid


def test_grid_axes_from_configuration_names():
    assert grid_axes(["a__x", "a__y", "b__x"]) == [["a", "b"], ["x", "y"]]
    assert grid_axes(["g1__c1__pg", "g2__c1__ppo"]) is None  # the middle part takes one value
    assert grid_axes(["a__x", "b"]) is None and grid_axes(["a", "b"]) is None and grid_axes([]) is None


def test_by_axis_tables_for_a_grid(tmp_path):
    """Configurations named part1__part2: a rows x columns table and the per-value averages pooled over runs."""
    root = tmp_path / "runs"
    for name, accs in {"a__x": [0.5, 0.7], "a__y": [0.6], "b__x": [0.4], "b__y": [0.8, 0.9]}.items():
        for k, acc in enumerate(accs):
            _fake_run(root / name / f"seed{k}", [0.2, 0.4], [10, 10], [None, None], [1, 1], acc)
    summarize(root)
    md = (root / "sweep_summary.md").read_text()
    assert "| part 1 \\ part 2 | x | y |" in md
    assert "| a | 0.600 ± 0.141 | 0.600 (1 seed) |" in md and "| b | 0.400 (1 seed) | 0.850 ± 0.071 |" in md
    assert "| a | 0.300 ± 0.000 | 0.300 (1 seed) |" in md  # reward AUC: mean of [0.2, 0.4] in every run
    # part 1 a: [0.5, 0.7, 0.6]; b: [0.4, 0.8, 0.9]; part 2 x: [0.5, 0.7, 0.4]; y: [0.6, 0.8, 0.9]
    # then the shuffled fractions: reward AUC is 0.3 in every run, so every shuffle is as far out (1.000)
    assert re.search(r"\| 1 \| a \| 0\.600 ± 0\.100 \(3 runs\) \| 0\.\d{3} "
                     r"\| 0\.300 ± 0\.000 \(3 runs\) \| 1\.000 \|", md)
    assert "| 1 | b | 0.700 ± 0.265 (3 runs) |" in md
    assert "| 2 | x | 0.533 ± 0.153 (3 runs) |" in md and "| 2 | y | 0.767 ± 0.153 (3 runs) |" in md
    # rows and columns follow the given configuration order (a sweep file's, with --summarize-only)
    summarize(root, tmp_path / "ordered", configs=["b__y", "b__x", "a__y", "a__x"])
    md = (tmp_path / "ordered" / "sweep_summary.md").read_text()
    assert "| part 1 \\ part 2 | y | x |\n|---|---|---|\n| b | 0.850 ± 0.071 | 0.400 (1 seed) |\n| a |" in md


def test_finished_runs_are_skipped_and_must_match_the_config(tmp_path, capsys):
    from rlreason.config_load import load_config, to_yaml

    p = _sweep_file(tmp_path, "seeds: [0, 1]\nlist:\n  - {name: a, train.steps: 2}\n")
    s = load_sweep(str(p))
    done = s.runs[0]
    # thread count and checkpoint cadence may differ: they do not change what the run computes
    cfg = load_config(str(DEFAULT), done.overrides + ["train.threads=2", "run.save_every=7", "run.keep_last=1"])
    _fake_run(done.run_dir, [0.5], [10], [None], [1], 0.5, to_yaml(cfg))
    s = load_sweep(str(p))
    assert [r.finished for r in s.runs] == [True, False]
    assert main(["sweep", str(p), "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("finished") and out[1].startswith("to run")
    with pytest.raises(ConfigError, match="train.steps=2, the sweep now asks train.steps=3"):
        load_sweep(str(p), ["train.steps=3"])


def test_a_key_added_after_a_run_was_made_is_no_difference_at_its_default(tmp_path):
    """A run made before a schema key existed has no such key in its config.yaml: at the key's default the
    run is still the sweep's (new keys' defaults keep the old behaviour); asked at another value it is not."""
    from rlreason.config_load import load_config, to_yaml

    p = _sweep_file(tmp_path, "seeds: [0]\nlist:\n  - {name: a, train.steps: 2}\n")
    done = load_sweep(str(p)).runs[0]
    old = to_yaml(load_config(str(DEFAULT), done.overrides)).replace("  max_staleness: 0\n", "")
    assert "max_staleness" not in old
    _fake_run(done.run_dir, [0.5], [10], [None], [1], 0.5, old)
    assert load_sweep(str(p)).runs[0].finished
    with pytest.raises(ConfigError, match="rollout.max_staleness=None, the sweep now asks rollout.max_staleness=1"):
        load_sweep(str(p), ["rollout.max_staleness=1"])


def test_dry_run_counts_runs_and_estimates_time(tmp_path, capsys):
    """No finished run: the default job's s/step scaled by generated tokens per step; then the finished runs'
    own measured speed (perf/step_s + perf/eval_s per token-step)."""
    from rlreason.config_load import load_config, to_yaml
    from rlreason.sweep import DEFAULT_JOB_S_PER_STEP, RUN_START_S

    p = _sweep_file(tmp_path, "seeds: [0, 1]\noverrides: {train.steps: 100}\n"
                              "list:\n  - {name: a}\n  - {name: b, rollout.max_new_tokens: 32}\n")
    assert main(["sweep", str(p), "--dry-run"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    want = 2 * 100 * DEFAULT_JOB_S_PER_STEP * 1.5 + 4 * RUN_START_S  # a: the default's batch, b: half its tokens
    assert last.startswith("4 runs (2 configurations x 2 seeds): 0 finished, 4 to run, 400 steps; "
                           f"estimated about {want / 60:.0f} min one at a time (from no finished run yet")
    done = load_sweep(str(p)).runs[0]  # a/seed0, finished in 100 steps of 0.5 s plus two 5 s evaluations
    _fake_run(done.run_dir, [0.5] * 100, [10] * 100, [None] * 100, [0.5] * 100, 0.5,
              to_yaml(load_config(str(DEFAULT), done.overrides)))
    with open(done.run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 0, "perf/eval_s": 5.0}) + "\n" + json.dumps({"step": 100, "perf/eval_s": 5.0}) + "\n")
    assert main(["sweep", str(p), "--dry-run", "--parallel", "2"]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last.startswith("4 runs (2 configurations x 2 seeds): 1 finished, 3 to run, 300 steps; estimated about "
                           "2 min one at a time; with --parallel 2 about 72 s if cores allow (from the median speed "
                           "of this sweep's 1 finished run(s)")  # 60 s for a, 30 s for each b, 8 s each to start: 144 s


def test_shipped_sweeps_expand_and_validate():
    s = load_sweep(str(REPO_ROOT / "configs" / "ablations" / "baseline_clipping.yaml"), root="/nonexistent/bc")
    assert len(s.configs) == 20 and len(s.runs) == 60 and {r.seed for r in s.runs} == {0, 1, 2}
    assert s.configs[0] == "reinforce__pg" and "dr_grpo__dual_clip" in s.configs
    s = load_sweep(str(REPO_ROOT / "configs" / "ablations" / "length_penalty.yaml"), root="/nonexistent/lp")
    assert s.configs == ["no_penalty", "kimi_w0.1", "kimi_w0.5", "kimi_w0.1_warmup"] and len(s.runs) == 12
    s = load_sweep(str(REPO_ROOT / "benchmarks" / "sweeps" / "baseline_clipping_30.yaml"), root="/nonexistent/bc30")
    assert len(s.configs) == 6 and len(s.runs) == 12 and s.configs[0] == "reinforce_batch__pg"
    s = load_sweep(str(REPO_ROOT / "benchmarks" / "sweeps" / "length_penalty_60.yaml"), root="/nonexistent/lp60")
    assert s.configs == ["no_penalty", "kimi_w0.1", "kimi_w0.5", "kimi_w0.1_warmup"] and len(s.runs) == 12


@pytest.mark.slow
@pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")
def test_tiny_sweep_end_to_end(tmp_path, capsys):
    p = _sweep_file(tmp_path, "seeds: [0, 1]\nlist:\n  - {name: pg, algo.loss: pg}\n"
                              "  - {name: ppo, algo.loss: ppo_clip, algo.ppo_epochs: 2}\n")
    tiny = [f"model.path={SHIPPED}", "rollout.prompts_per_step=4", "rollout.group_size=4",
            "rollout.max_new_tokens=24", "train.steps=2", "data.eval_size=8"]
    root = tmp_path / "runs"
    (root / "pg" / "seed0").mkdir(parents=True)  # an interrupted earlier attempt: its output is kept
    (root / "pg" / "seed0" / "train.log").write_text("earlier attempt\n")
    assert main(["sweep", str(p), "--parallel", "2", *tiny]) == 0
    log = (root / "pg" / "seed0" / "train.log").read_text()
    assert log.startswith("earlier attempt\n\n--- rlreason sweep: restarted ") and "held-out accuracy" in log
    for name in ("pg", "ppo"):
        for seed in (0, 1):
            run = root / name / f"seed{seed}"
            assert (run / "summary.json").is_file() and (run / "final").is_dir()
            cfg = (run / "config.yaml").read_text()
            assert f"group: {name}" in cfg and f"seed: {seed}" in cfg and "threads: " in cfg
    rows = list(csv.DictReader(open(root / "sweep_summary.csv")))
    assert [(r["config"], r["seeds"]) for r in rows] == [("pg", "2"), ("ppo", "2")]
    assert all(r["accuracy_mean"] and r["reward_auc_mean"] and r["train_acc_mean"] and r["length_mean"] for r in rows)
    mtimes = {d: (d / "summary.json").stat().st_mtime for d in root.glob("*/seed*")}
    capsys.readouterr()
    assert main(["sweep", str(p), *tiny]) == 0  # resumed: everything finished, nothing runs
    assert "4 runs; 4 finished (skipped), 0 to run" in capsys.readouterr().out
    assert {d: (d / "summary.json").stat().st_mtime for d in root.glob("*/seed*")} == mtimes
    assert main(["sweep", "--summarize", str(root), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "sweep_summary.md").read_text() == (root / "sweep_summary.md").read_text()
