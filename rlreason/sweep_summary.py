"""The summary of a sweep: per configuration, mean ± std over seeds, as markdown, CSV and a PNG of the curves.

Reads finished run directories `<root>/<config>/seed<k>/` (those with summary.json) and, per run:

- `accuracy`: final held-out accuracy, `summary.json` accuracy_after (greedy);
- `reward_auc`: area under the training-reward curve, the mean of `reward/mean` over the logged steps;
- `train_acc`: the mean of `reward/accuracy` (fraction of correct rollouts) over steps: unlike the reward,
  it does not move with shaping terms such as a length penalty;
- `length`: mean response length in tokens, the mean of `rollout/response_length` over steps;
- `kl_end`: `policy/kl` at the last step that logged it (blank when the run logged no KL);
- `train_s`: training time, the sum of `perf/step_s` (rollout + update; excludes model loading and evals);
- `eval_length`: mean response length in tokens on the held-out set at the final evaluation (the last
  `eval/response_length`, greedy), the length axis of the Pareto figure.

The std is the sample std over seeds (ddof=1; blank with one seed). Example: accuracies 0.5 and 0.7 over
two seeds -> "0.600 ± 0.141".

Seed spread: for held-out accuracy and reward AUC the markdown lists, against the configuration with the
highest mean, the configurations whose every seed scored below every seed of that best one (their
min–max ranges over seeds do not overlap); all other differences are within the seed spread. Only
configurations with the most seeds take part, and only when that is two or more: with no real difference,
all n seeds of one configuration fall below all n of another with probability 1/C(2n, n) (1/6 for two
seeds, 1/20 for three), so configurations with fewer seeds would be judged by a looser rule. The line names
the ones left out (a partly run sweep). Because the best is the one that came out on top, more than
1/C(2n, n) of the others land below it by chance; so when some do, the line adds a chance check
(chance_of_below): the same rule on the runs dealt out to the configurations at random within each seed.
The figures (rlreason/sweep_plots.py): `sweep_summary_grid.png`, the final held-out accuracy of every
configuration as coloured cells (a grid sweep as its grid); `sweep_summary.png`, small multiples of the
curves; `sweep_summary_final.png`, each seed's final held-out accuracy per configuration. All three mark the
held-out accuracy before RL (summary.json accuracy_before; drawn only when every run started from the same
accuracy, i.e. the same model). `sweep_summary_pareto.png`
(when the runs logged eval/response_length): held-out accuracy against held-out response tokens, one point
per configuration with ± std error bars on both axes, the model before RL (step 0's eval) and any `refs`
(other models, e.g. `rlreason sweep --summarize DIR --ref "sft shortest=0.61,190"`) as reference points.

By axis: when every configuration name is two or more parts joined by `__` (how the sweep names the
combinations of a grid and a list, e.g. `grpo__ppo_clip`) and each part takes two or more values, the
markdown adds, for held-out accuracy and reward AUC, a table with the first part as rows and the second as
columns (two parts only) and the mean ± std over all finished runs sharing each value of each part, pooled
over the other parts (e.g. all seeds of all `grpo__*` configurations). Example: a__x = [0.5, 0.7],
b__x = [0.4], a__y = [0.6] -> part 1 value a: 0.600 ± 0.100 over 3 runs. Next to each pooled mean, the
shuffle test of axis_chance says how often chance alone puts that value's mean as far from the mean of all
runs.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rlreason.plot import read_metrics
from rlreason.sweep_plots import plot_curves, plot_final, plot_grid, plot_pareto
from rlreason.sweep_stats import axis_chance, below_best, chance_of_below, grid_axes, mean_std, with_spread

METRICS = [  # (column, markdown header, format)
    ("accuracy", "held-out accuracy (final)", "{:.3f}"),
    ("reward_auc", "reward AUC (mean reward/mean)", "{:.3f}"),
    ("train_acc", "train accuracy (mean reward/accuracy)", "{:.3f}"),
    ("length", "response length (tokens)", "{:.1f}"),
    ("kl_end", "KL at end", "{:.4f}"),
    ("train_s", "train time s (Σ perf/step_s)", "{:.0f}"),
    ("eval_length", "held-out response length (final, tokens)", "{:.1f}"),
]


def run_stats(run_dir: Path) -> Dict[str, Optional[float]]:
    """The per-run numbers of one finished run directory (METRICS' columns and `before`, the accuracy before
    RL; None where the run has no such data)."""
    series = read_metrics(run_dir)
    summary = json.loads((Path(run_dir) / "summary.json").read_text())

    def mean(key):
        vals = [v for _, v in series.get(key, [])]
        return sum(vals) / len(vals) if vals else None

    kl = series.get("policy/kl", [])
    step_s = series.get("perf/step_s", [])
    eval_len = series.get("eval/response_length", [])
    return {"accuracy": summary.get("accuracy_after"), "before": summary.get("accuracy_before"),
            "reward_auc": mean("reward/mean"),
            "train_acc": mean("reward/accuracy"), "length": mean("rollout/response_length"), "kl_end": kl[-1][1] if kl else None,
            "train_s": sum(v for _, v in step_s) if step_s else None,
            "eval_length": eval_len[-1][1] if eval_len else None,
            "before_length": eval_len[0][1] if eval_len and eval_len[0][0] == 0 else None}


def finished_runs(root: Path, configs: Optional[List[str]] = None) -> Dict[str, List[Path]]:
    """{config: [finished run dirs]} under root (configs in the given order, else sorted by name)."""
    root = Path(root)
    names = configs if configs is not None else sorted(p.name for p in root.iterdir() if p.is_dir()) \
        if root.is_dir() else []
    out = {}
    for name in names:
        dirs = sorted(d for d in (root / name).glob("seed*") if (d / "summary.json").is_file())
        if dirs:
            out[name] = dirs
    return out


def summarize(root: Path, out_dir: Optional[Path] = None, configs: Optional[List[str]] = None,
              smooth: int = 0, refs: Sequence[Tuple[str, float, float]] = ()) -> Dict[str, Dict[str, tuple]]:
    """Write sweep_summary.md, .csv and the figures (.png, _grid.png, _final.png, _pareto.png) into out_dir
    (default root); `refs` are (label, accuracy, tokens) reference points of the Pareto figure.

    Returns {config: {column: (mean, std), "seeds": n}}. Raises ValueError when no run has finished.
    """
    root, out_dir = Path(root), Path(out_dir or root)
    runs = finished_runs(root, configs)
    if not runs:
        raise ValueError(f"{root}: no finished runs (<config>/seed<k>/summary.json) to summarize")
    table: Dict[str, Dict[str, tuple]] = {}
    per_seed: Dict[str, Dict[str, List[float]]] = {}
    by_seed: Dict[str, Dict[str, Dict[str, float]]] = {}  # {config: {column: {"seed0": value}}}
    befores: List[float] = []
    before_lengths: List[float] = []
    for name, dirs in runs.items():
        stats = [run_stats(d) for d in dirs]
        befores += [s["before"] for s in stats if s["before"] is not None]
        before_lengths += [s["before_length"] for s in stats if s["before_length"] is not None]
        table[name] = {col: mean_std([s[col] for s in stats]) for col, _, _ in METRICS}
        table[name]["seeds"] = len(dirs)
        per_seed[name] = {col: [s[col] for s in stats if s[col] is not None] for col, _, _ in METRICS}
        by_seed[name] = {col: {d.name: s[col] for d, s in zip(dirs, stats) if s[col] is not None}
                         for col, _ in AXIS_METRICS}
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "sweep_summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["config", "seeds"] + [f"{c}_{s}" for c, _, _ in METRICS for s in ("mean", "std")])
        for name, row in table.items():
            w.writerow([name, row["seeds"]] + ["" if x is None else f"{x:.6g}" for c, _, _ in METRICS for x in row[c]])

    def cell(pair, fmt):
        m, s = pair
        return "" if m is None else fmt.format(m) + ("" if s is None else " ± " + fmt.format(s))

    lines = ["| config | seeds | " + " | ".join(h for _, h, _ in METRICS) + " |",
             "|---|---|" + "---|" * len(METRICS)]
    for name, row in table.items():
        lines.append(f"| {name} | {row['seeds']} | " + " | ".join(cell(row[c], f) for c, _, f in METRICS) + " |")
    note = ("mean ± sample std (ddof=1) over seeds. reward AUC = mean of reward/mean over training steps; "
            "train accuracy = mean reward/accuracy over steps (correct rollouts, without shaping terms); "
            "length = mean rollout/response_length over steps; KL at end = last policy/kl (blank: not logged); "
            "train time = sum of perf/step_s (excludes model loading and evals); held-out response length = "
            "eval/response_length at the final evaluation (greedy; blank: not logged).")
    spread = [spread_line({n: v[col] for n, v in by_seed.items()}, label)
              for col, label in (("accuracy", "held-out accuracy"), ("reward_auc", "reward AUC"))]
    (out_dir / "sweep_summary.md").write_text("\n".join(lines) + "\n\n" + note + "\n\n"
                                              + "\n".join(x for x in spread if x) + "\n" + by_axis(by_seed))
    same_start = bool(befores) and max(befores) - min(befores) < 1e-9  # configurations may start from other models
    before = befores[0] if same_start else None  # no before-RL line when they do
    plot_curves(runs, out_dir / "sweep_summary.png", smooth, before)
    plot_final(per_seed, out_dir / "sweep_summary_final.png", before)
    if any(row["accuracy"][0] is not None for row in table.values()):
        plot_grid(table, out_dir / "sweep_summary_grid.png", before)
    if any(row["accuracy"][0] is not None and row["eval_length"][0] is not None for row in table.values()):
        start = (before, mean_std(before_lengths)[0]) if before is not None and before_lengths else None
        plot_pareto(table, out_dir / "sweep_summary_pareto.png", start, refs)
    return table


AXIS_METRICS = [("accuracy", "Held-out accuracy (final)"), ("reward_auc", "Reward AUC")]


def by_axis(by_seed: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """The markdown's "By axis" section ('' when the configuration names are not a grid, see grid_axes).
    `by_seed` is {configuration: {column: {seed name: value}}} for the AXIS_METRICS columns."""
    names = [n for n in by_seed if by_seed[n]["accuracy"]]
    axes = grid_axes(names)
    if axes is None:
        return ""
    per_seed = {n: {col: list(by_seed[n][col].values()) for col, _ in AXIS_METRICS} for n in names}
    most = max(len(per_seed[n]["accuracy"]) for n in names)

    def cell(values: List[float], unit: str) -> str:
        """'mean ± std', plus '(n units)' unless these are a full set of seeds."""
        m, s = mean_std(values)
        if m is None:
            return ""
        text = f"{m:.3f}" + ("" if s is None else f" ± {s:.3f}")
        if unit == "seed" and len(values) == most:
            return text
        return f"{text} ({len(values)} {unit}{'s' if len(values) != 1 else ''})"

    out = ["", "## By axis", ""]
    if len(axes) == 2:
        for col, label in AXIS_METRICS:
            out += [f"{label}, mean ± std over seeds (part 1 of the configuration name down, part 2 across; "
                    f"a cell with fewer than {most} seeds says how many):", "",
                    "| part 1 \\ part 2 | " + " | ".join(axes[1]) + " |", "|---|" + "---|" * len(axes[1])]
            for a in axes[0]:
                out.append(f"| {a} | " + " | ".join(cell(per_seed.get(f"{a}__{b}", {}).get(col, []), "seed")
                                                   for b in axes[1]) + " |")
            out.append("")
    chance = {(col, i): axis_chance({n: by_seed[n][col] for n in names}, i)
              for col, _ in AXIS_METRICS for i in range(len(axes))}
    out += ["Pooled over the other parts: mean ± std over every finished run with that value (all its "
            "configurations and seeds). Shuffled: the fraction of 2000 shuffles in which the value's pooled mean "
            "lies at least as far from the mean of all runs, when the values of that part are dealt out at random "
            "among runs sharing the seed and the other parts (small: unlikely to be chance; with many values "
            "checked, expect one in twenty below 0.05 by chance).", "",
            "| part | value | " + " | ".join(f"{label} | shuffled" for _, label in AXIS_METRICS) + " |",
            "|---|---|" + "---|---|" * len(AXIS_METRICS)]
    for i, values in enumerate(axes):
        for v in values:
            members = [n for n in names if n.split("__")[i] == v]
            out.append(f"| {i + 1} | {v} | " + " | ".join(
                cell([x for n in members for x in per_seed[n][col]], "run") + f" | {chance[col, i][v]:.3f}"
                for col, _ in AXIS_METRICS) + " |")
    return "\n".join(out) + "\n"


def spread_line(by_seed: Dict[str, Dict[str, float]], label: str) -> str:
    """The markdown's seed-spread line for one column, from {configuration: {seed name: value}} ('' when no
    configuration has a value); when some fall below the best it ends with the chance check of chance_of_below."""
    compared = with_spread({n: list(v.values()) for n, v in by_seed.items()})
    left_out = [n for n, v in by_seed.items() if v and n not in compared]
    best, below = below_best(compared)
    if best is None:
        return (f"- {label}: every configuration has one seed, so no difference can be told apart from seed "
                f"noise." if left_out else "")
    seeds = len(compared[best])
    tail = f" Not compared (fewer than {seeds} seeds): {', '.join(left_out)}." if left_out else ""
    n = len(compared) - 1
    if n == 0:
        return f"- {label}: only **{best}** has {seeds} seeds.{tail}"
    line = (f"- {label}: best mean **{best}** (comparing the {n + 1} configurations with {seeds} seeds); below "
            f"it beyond the seed spread (every seed lower than every seed of {best}): "
            f"{', '.join(below) if below else 'none'} ({len(below)} of {n}); the other {n - len(below)} are "
            f"within the seed spread of {best}.")
    if below:
        observed, mean, p = chance_of_below({name: by_seed[name] for name in compared})
        if observed == n:  # only when one configuration gets the top value of every seed: 1/m^(k-1)
            verdict = (f"that is every other configuration, the most extreme count there is, so this is the "
                       f"smallest fraction the check can give with {n + 1} configurations of {seeds} seeds "
                       f"(1/{n + 1}^{seeds - 1} = {100 / (n + 1) ** (seeds - 1):.1f}% when they ran the same seeds)")
        elif p < 0.05:
            verdict = "so chance alone rarely gives this many"
        else:
            verdict = "so this count alone does not show that any configuration is worse than the best"
        line += (f" Chance check: with each seed's values dealt out to the configurations at random (2000 "
                 f"shuffles), {mean:.1f} land below the best on average and {observed} or more in "
                 f"{100 * p:.1f}% of shuffles; {verdict}.")
    return line + tail
