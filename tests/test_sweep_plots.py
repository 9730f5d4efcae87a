"""rlreason.sweep_plots: the sweep summary's grid, small multiples and per-seed figures on synthetic runs."""
import json
from pathlib import Path

import pytest

from rlreason.sweep_plots import curves_to_draw, layout, plot_curves, plot_final, plot_grid, plural, table_from_csv
from rlreason.sweep_summary import finished_runs, summarize


def fake_run(run_dir: Path, acc: float, evals=(0, 5, 10), length=19.0, steps=10):
    run_dir.mkdir(parents=True)
    rows = [{"step": t, "reward/mean": acc * t / steps, "reward/accuracy": acc, "rollout/response_length": length,
             "perf/step_s": 0.5} for t in range(1, steps + 1)]
    rows += [{"step": t, "eval/accuracy": 0.4 + (acc - 0.4) * t / steps} for t in evals]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps({"accuracy_before": 0.4, "accuracy_after": acc}))


def is_png(path: Path, least: int) -> bool:
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > least


def test_layout_plural_and_csv_round_trip(tmp_path):
    assert layout(["a__x", "a__y", "b__x", "b__y"]) == (["a", "b"], ["x", "y"])
    assert layout(["a__x__p", "a__y__p", "b__x__q"]) == (["a", "b"], ["x__p", "y__p", "x__q"])
    assert layout(["one", "two"]) == (["one", "two"], [""])  # not a grid: one column
    assert (plural(1, "seed"), plural(3, "seed")) == ("1 seed", "3 seeds")
    for name, acc in (("a__x", 0.6), ("a__y", 0.5), ("b__x", 0.7)):
        for seed in (0, 1):
            fake_run(tmp_path / "runs" / name / f"seed{seed}", acc + 0.01 * seed)
    table = summarize(tmp_path / "runs", tmp_path / "out")
    back = table_from_csv(tmp_path / "out" / "sweep_summary.csv")
    assert back["a__x"]["seeds"] == 2 and back["a__x"]["accuracy"] == pytest.approx(table["a__x"]["accuracy"])
    assert back["a__x"]["kl_end"] == (None, None)  # blank in the CSV
    for name, least in (("sweep_summary.png", 10_000), ("sweep_summary_grid.png", 5_000),
                        ("sweep_summary_final.png", 5_000)):
        assert is_png(tmp_path / "out" / name, least), name
    plot_grid(back, tmp_path / "from_csv.png", before=0.4)  # a grid with a missing cell (b__y) from the CSV alone
    assert is_png(tmp_path / "from_csv.png", 5_000)


def test_curves_with_nothing_to_show_are_left_out(tmp_path):
    """Held-out accuracy needs 3+ evaluations in some run to be a curve; a constant length is left out."""
    for name, acc in (("a", 0.6), ("b", 0.5)):
        fake_run(tmp_path / name / "seed0", acc, evals=(0, 10))
    runs = finished_runs(tmp_path)
    assert [t for t, _, _ in curves_to_draw(runs)] == ["training reward (mean)"]
    assert plot_curves(runs, tmp_path / "c.png", smooth=3, before=0.4) == ["training reward (mean)"]
    assert is_png(tmp_path / "c.png", 5_000)
    fake_run(tmp_path / "c" / "seed0", 0.7, evals=(0, 5, 10), length=25.0)
    runs = finished_runs(tmp_path)
    assert plot_curves(runs, tmp_path / "c.png") == ["training reward (mean)", "held-out accuracy (greedy)",
                                                      "response length (tokens)"]


def test_final_plot_with_one_seed(tmp_path):
    plot_final({"a": {"accuracy": [0.61]}, "b": {"accuracy": [0.58, 0.6, 0.62]}}, tmp_path / "f.png", before=0.41)
    assert is_png(tmp_path / "f.png", 5_000)


def l2s_run(run_dir: Path, acc: float, tokens: float, steps=10):
    """A finished run whose held-out evals (steps 0 and `steps`) log accuracy and response length."""
    run_dir.mkdir(parents=True)
    rows = [{"step": t, "reward/mean": acc, "reward/accuracy": acc, "rollout/response_length": tokens + t,
             "perf/step_s": 0.5} for t in range(1, steps + 1)]
    rows += [{"step": 0, "eval/accuracy": 0.6, "eval/response_length": 240.0},
             {"step": steps, "eval/accuracy": acc, "eval/response_length": tokens}]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps({"accuracy_before": 0.6, "accuracy_after": acc}))


def test_pareto_front_by_hand():
    from rlreason.sweep_plots import pareto_front

    assert pareto_front({"a": (0.5, 10), "b": (0.6, 20), "c": (0.4, 15)}) == ["a", "b"]
    assert pareto_front({"a": (0.5, 10), "same": (0.5, 10), "worse": (0.5, 11)}) == ["a", "same"]


def test_pareto_figure_from_a_hand_made_sweep(tmp_path, capsys):
    from rlreason.cli import main

    root = tmp_path / "runs"
    for base, acc, tokens in (("grpo", 0.30, 120), ("dr_grpo", 0.58, 190), ("kimi", 0.60, 230)):
        for pen, shrink in (("w0", 1.0), ("w0.5", 0.8)):
            for seed in (0, 1):
                l2s_run(root / f"{base}__{pen}" / f"seed{seed}", acc - 0.02 * seed, tokens * shrink + 5 * seed)
    assert main(["sweep", "--summarize", str(root), "--ref", "sft shortest=59%,200", "--ref", "merge 0.5=0.55,180"]) == 0
    table = table_from_csv(root / "sweep_summary.csv")
    assert table["dr_grpo__w0.5"]["eval_length"] == pytest.approx((154.5, 3.5355), rel=1e-4)  # 190*0.8 + {0, 5}
    md = (root / "sweep_summary.md").read_text()
    assert "| dr_grpo__w0.5 | 2 | 0.570 ± 0.014 |" in md and "| 154.5 ± 3.5 |" in md
    assert is_png(root / "sweep_summary_pareto.png", 20_000)
    assert main(["sweep", "--summarize", str(root), "--ref", "long=0.6"]) == 2
    assert "--ref 'long=0.6': expected LABEL=ACC,TOKENS" in capsys.readouterr().err


def test_no_pareto_figure_without_eval_lengths(tmp_path):
    fake_run(tmp_path / "runs" / "a" / "seed0", 0.5)  # its evals log accuracy only
    summarize(tmp_path / "runs")
    assert not (tmp_path / "runs" / "sweep_summary_pareto.png").exists()
