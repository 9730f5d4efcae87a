"""`rlreason plot RUN_DIR [RUN_DIR ...] -o out.png`: training curves of one or more runs, overlaid.

Reads only `<run_dir>/metrics.jsonl` (non-finite values, stored there as strings, are skipped) and draws, with
the Agg backend (no display needed), up to six panels, three to a row (four: two by two): training reward, held-out accuracy (the
eval lines; dashed: pass@k with the run's largest k, when it sampled eval completions), response length, KL,
entropy and clip fraction. A panel with nothing to show is left out and named in the return value: no run
logged the metric (KL when `algo.kl.coef` is 0) or every value is the same (clip fraction 0 with one update
per rollout). Each run is one colour (up to 20 distinct ones), named in the legend by its directory.
`smooth=N` draws an N-point trailing moving average over the faint raw curve (not on eval points, which are
few).

Example: `plot_runs(["runs/a", "runs/b"], "curves.png", smooth=5)` -> ({"training reward (mean)": ["a", "b"],
...}, {"KL to reference": "no run logged policy/kl"}).
"""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

from rlreason.jsonl import read_records

PANELS: List[Tuple[str, str, bool]] = [
    # (title, metric, smooth it when asked)
    ("training reward (mean)", "reward/mean", True),
    ("held-out accuracy (eval)", "eval/accuracy", False),
    ("response length (tokens)", "rollout/response_length", True),
    ("KL to reference", "policy/kl", True),
    ("entropy (nats/token)", "policy/entropy", True),
    ("clip fraction", "policy/clipfrac", True),
]


class PlotError(ValueError):
    """A run directory that cannot be plotted: the message names the file (and row)."""


Series = Dict[str, List[Tuple[int, float]]]  # metric -> [(step, value)] sorted by step


def read_metrics(run_dir: Path, warn=lambda line: print(line, file=sys.stderr)) -> Series:
    """metric -> [(step, value)] from `<run_dir>/metrics.jsonl`; a later record of the same step wins.

    Non-numeric and non-finite values are skipped. Lines that are not records (a half-written last line of
    a killed run, garbage, bytes that are not UTF-8) are skipped too, with one `warn` line per file.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise PlotError(f"{path}: no such file (is {run_dir} a run directory?)")
    records, bad = read_records(path)
    if bad:
        warn(f"skipped {len(bad)} line(s) that are not metric records: {bad[0]}" + (" ..." if len(bad) > 1 else ""))
    series: Dict[str, Dict[int, float]] = {}
    for rec in records:
        for key, v in rec.items():
            if key != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                series.setdefault(key, {})[rec["step"]] = float(v)
    return {k: sorted(d.items()) for k, d in series.items()}


def moving_average(values: Sequence[float], n: int) -> List[float]:
    """Trailing mean over the last n points (fewer at the start). Example: [1, 3, 5], n=2 -> [1, 2, 4]."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= n:
            total -= values[i - n]
        out.append(total / min(i + 1, n))
    return out


def _pass_key(series: Series):
    """The run's pass@k metric with the largest k ('eval/pass@8'), or None when it sampled no eval completions."""
    ks = sorted(int(k.split("@")[1]) for k in series if k.startswith("eval/pass@"))
    return f"eval/pass@{ks[-1]}" if ks else None


def _labels(run_dirs: Sequence[Path]) -> List[str]:
    """Directory names, with the parent prepended where two runs share a name."""
    names = [p.resolve().name for p in run_dirs]
    return [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(run_dirs, names)]


def left_out(key: str, data: List[Series]) -> str:
    """Why the panel of `key` has nothing to show ('' when it has): no run logged it, or one constant value."""
    values = {v for d in data for _, v in d.get(key, [])}
    if not values:
        return f"no run logged {key}"
    return f"constant {values.pop():g}" if len(values) == 1 else ""


def _finish_panel(ax, title: str, key: str, data: List[Series]) -> None:
    """Title, axis and grid of one panel, and the greedy / pass@k legend on held-out accuracy."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    ax.set_title(title, fontsize=11)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if key == "eval/accuracy":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        pks = sorted({_pass_key(d) for d in data} - {None})
        if pks:
            ax.legend(handles=[plt.Line2D([], [], color="gray", marker="o", label="greedy accuracy"),
                               plt.Line2D([], [], color="gray", linestyle="--",
                                          label=", ".join(k.split("/")[1] for k in pks) + " (sampled)")],
                      fontsize=8, loc="lower right")


def plot_runs(run_dirs: Sequence[str], out: str, smooth: int = 0) -> Tuple[Dict[str, List[str]], Dict[str, str]]:
    """Draw the panels for `run_dirs` into the PNG `out`; returns ({panel title: labels of the runs drawn},
    {title of a panel left out: why})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if smooth < 0:
        raise PlotError(f"--smooth {smooth}: must be >= 0")
    dirs = [Path(d) for d in run_dirs]
    data = [read_metrics(d) for d in dirs]
    labels = _labels(dirs)
    colors = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20").colors
    skipped = {title: left_out(key, data) for title, key, _ in PANELS if left_out(key, data)}
    panels = [p for p in PANELS if p[0] not in skipped]
    if not panels:
        raise PlotError(f"nothing to plot in {', '.join(map(str, dirs))}: " + "; ".join(skipped.values()))
    cols = 2 if len(panels) == 4 else min(3, len(panels))  # 4 panels: 2 x 2, not 3 + 1
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 0.9 + 3.1 * rows), dpi=80, squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    drawn: Dict[str, List[str]] = {}
    for ax, (title, key, smoothable) in zip(axes.flat, panels):
        drawn[title] = []
        for i, (series, label) in enumerate(zip(data, labels)):
            points = series.get(key)
            if not points:
                continue
            steps, values = [s for s, _ in points], [v for _, v in points]
            color = colors[i % len(colors)]
            if smoothable and smooth > 1:
                ax.plot(steps, values, color=color, alpha=0.25, linewidth=1)
                values = moving_average(values, smooth)
            ax.plot(steps, values, color=color, linewidth=1.8, marker=None if smoothable else "o", markersize=4,
                    label=label)
            drawn[title].append(label)
            pk = _pass_key(series) if key == "eval/accuracy" else None
            if pk:  # dashed: pass@k of the same run
                ax.plot([s for s, _ in series[pk]], [v for _, v in series[pk]], color=color, linestyle="--",
                        linewidth=1.2)
        _finish_panel(ax, title, key, data)
    handles = [plt.Line2D([], [], color=colors[i % len(colors)], linewidth=2.5) for i in range(len(labels))]
    ncol = min(len(labels), 6)
    fig.legend(handles, labels, loc="upper center", ncol=ncol, frameon=False, fontsize=10)
    notes = ([f"faint: raw; solid: {smooth}-point moving average"] if smooth > 1 else []) + \
        ([f"not shown: {', '.join(f'{t} ({why})' for t, why in skipped.items())}"] if skipped else [])
    fig.text(0.995, 0.005, "; ".join(notes), ha="right", va="bottom", fontsize=8, color="gray")
    legend_rows = -(-len(labels) // ncol)
    fig.tight_layout(rect=(0, 0.03, 1, 1 - (0.1 + 0.25 * legend_rows) / (0.9 + 3.1 * rows)))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return drawn, skipped
