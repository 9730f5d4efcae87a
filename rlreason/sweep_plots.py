"""The sweep summary's figures, written by `rlreason.sweep_summary.summarize` next to sweep_summary.md:

- `sweep_summary_grid.png`: final held-out accuracy at a glance, one cell per configuration, coloured by its
  mean over seeds, with mean ± std and the gain over the before-RL accuracy written in it. A grid sweep
  (names `a__x`, see `sweep_stats.grid_axes`) is drawn as its grid: the first part of the names down, the
  rest across; any other sweep as one column.
- `sweep_summary.png`: small multiples of the curves: one row of panels per value of the first part (one row
  for a sweep that is not a grid), one line per configuration in it (mean over seeds, band ± std), one column
  per metric that has something to show: training reward, held-out accuracy (only with `eval.every`, i.e.
  three or more evaluations), response length, truncation rate. A metric that is missing or constant in every run is left out.
- `sweep_summary_final.png`: each seed's final held-out accuracy per configuration, the mean ± std, and the
  before-RL accuracy as a line; the axis spans the data and that line, not 0..1.

- `sweep_summary_pareto.png`: held-out accuracy against held-out response tokens (the final evaluation), one
  point per configuration at its mean with ± std error bars on both axes; the Pareto frontier (no other
  configuration at least as accurate with fewer tokens) joined by a dashed line; the model before RL and any
  reference points (other methods' models) as labelled black markers. A grid sweep's points are coloured by
  the first part of the name and shaped by the rest.

`table_from_csv(path)` reads a sweep_summary.csv back, so the grid can be redrawn from a summary alone.
"""
from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rlreason.plot import moving_average, read_metrics
from rlreason.sweep_stats import grid_axes, mean_std

CURVES = [  # (column title, metric, smoothed, least points per run to be worth a curve)
    ("training reward (mean)", "reward/mean", True, 2),
    ("held-out accuracy (greedy)", "eval/accuracy", False, 3),
    ("response length (tokens)", "rollout/response_length", True, 2),
    ("truncated at max_new_tokens", "rollout/truncated", True, 2),
]


def plural(n: int, word: str) -> str:
    """`1 seed`, `3 seeds`."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def layout(names: Sequence[str]) -> Tuple[List[str], List[str]]:
    """(rows, columns) of the configurations: the grid's first part down and the rest across, else one column
    (rows = the names, columns = ['']). Example: ["a__x", "a__y", "b__x", "b__y"] -> (["a", "b"], ["x", "y"])."""
    if grid_axes(names) is None:
        return list(names), [""]
    rows = list(dict.fromkeys(n.split("__", 1)[0] for n in names))
    return rows, list(dict.fromkeys(n.split("__", 1)[1] for n in names))


def cell_name(row: str, col: str) -> str:
    return f"{row}__{col}" if col else row


def table_from_csv(path: Path) -> Dict[str, Dict[str, tuple]]:
    """{config: {"accuracy": (mean, std), ..., "seeds": n}} from a sweep_summary.csv (blank = None)."""
    out: Dict[str, Dict[str, tuple]] = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            cols = {k[:-5] for k in row if k.endswith("_mean")}
            value = {c: tuple(float(row[f"{c}_{s}"]) if row[f"{c}_{s}"] else None for s in ("mean", "std")) for c in cols}
            out[row["config"]] = {**value, "seeds": int(row["seeds"])}
    return out


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_grid(table: Dict[str, Dict[str, tuple]], out: Path, before: Optional[float] = None) -> None:
    """`sweep_summary_grid.png`: the configurations' final held-out accuracy as coloured cells (see the module doc)."""
    plt = _pyplot()
    names = [n for n in table if table[n]["accuracy"][0] is not None]
    rows, cols = layout(names)
    means = [[table.get(cell_name(r, c), {}).get("accuracy", (None, None))[0] for c in cols] for r in rows]
    values = [m for row in means for m in row if m is not None]
    lo, hi = min(values), max(values)
    most = max(table[n]["seeds"] for n in names)
    width = max(6.5, 2.0 + 1.9 * len(cols))
    fig, ax = plt.subplots(figsize=(width, 1.5 + 0.62 * len(rows)), dpi=90)
    grid = [[math.nan if m is None else m for m in row] for row in means]
    image = ax.imshow(grid, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-3, aspect="auto")
    best = max(names, key=lambda n: table[n]["accuracy"][0])
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            row = table.get(cell_name(r, c))
            if row is None or row["accuracy"][0] is None:
                ax.text(j, i, "not run", ha="center", va="center", color="gray", fontsize=9)
                continue
            m, s = row["accuracy"]
            text = f"{m:.1%}" + ("" if s is None else f" ± {100 * s:.1f}")
            if before is not None:
                text += f"\n{100 * (m - before):+.1f} pts"
            if row["seeds"] < most:
                text += f"\n({plural(row['seeds'], 'seed')})"
            dark = (m - lo) / (hi - lo) < 0.55 if hi > lo else True
            ax.text(j, i, text, ha="center", va="center", fontsize=9, color="white" if dark else "black",
                    fontweight="bold" if cell_name(r, c) == best else "normal")
    ax.set_xticks(range(len(cols)) if cols != [""] else [], cols if cols != [""] else [], fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    ax.xaxis.tick_top()
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    bar.ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ref = f"; before RL {before:.1%}, pts = gain over it" if before is not None else ""
    title = (f"final held-out accuracy (greedy), mean ± std (pts) over {plural(most, 'seed')}{ref}; "
             f"bold = best")
    ax.set_title(textwrap.fill(title, int(width * 13)), fontsize=9, pad=24 if cols != [""] else 8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def band(dirs: List[Path], key: str) -> tuple:
    """(steps, mean, std or None) over seeds at the steps every seed logged."""
    per_seed = [dict(read_metrics(d).get(key, [])) for d in dirs]
    steps = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    stats = [mean_std([s[t] for s in per_seed]) for t in steps]
    return steps, [m for m, _ in stats], [s for _, s in stats] if len(dirs) > 1 else None


def curves_to_draw(runs: Dict[str, List[Path]]) -> List[tuple]:
    """The CURVES entries with something to show: enough points in some run, and not one constant value."""
    keep = []
    for title, key, smoothed, least in CURVES:
        series = [read_metrics(d).get(key, []) for dirs in runs.values() for d in dirs]
        values = {v for s in series for _, v in s}
        if any(len(s) >= least for s in series) and len(values) > 1:
            keep.append((title, key, smoothed))
    return keep


def plot_curves(runs: Dict[str, List[Path]], out: Path, smooth: int = 0, before: Optional[float] = None) -> List[str]:
    """`sweep_summary.png`: small multiples (see the module doc); returns the metric titles drawn."""
    plt = _pyplot()
    rows, cols = layout(list(runs))
    curves = curves_to_draw(runs)
    if not curves:
        return []
    lines = cols if cols != [""] else rows  # one colour per line within a panel
    panel_rows = rows if cols != [""] else [""]
    colors = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20").colors
    fig, axes = plt.subplots(len(panel_rows), len(curves), figsize=(4.3 * len(curves), 0.8 + 2.1 * len(panel_rows)),
                             dpi=80, sharex=True, sharey="col", squeeze=False)
    for i, r in enumerate(panel_rows):
        for j, (title, key, smoothed) in enumerate(curves):
            ax = axes[i][j]
            for k, line in enumerate(lines):
                dirs = runs.get(cell_name(r, line) if r else line)
                steps, mean, std = band(dirs, key) if dirs else ([], [], None)
                if not steps:
                    continue
                if smoothed and smooth > 1:
                    mean = moving_average(mean, smooth)
                    std = moving_average(std, smooth) if std and None not in std else std
                color = colors[k % len(colors)]
                if std and None not in std:
                    floor = -float("inf") if key == "reward/mean" else 0.0  # rates and lengths are never negative
                    ax.fill_between(steps, [max(floor, m - s) for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                    color=color, alpha=0.12, linewidth=0)
                ax.plot(steps, mean, color=color, linewidth=1.5, marker=None if smoothed else "o", markersize=3)
            if key == "eval/accuracy":
                ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
                if before is not None:
                    ax.axhline(before, color="gray", linestyle="--", linewidth=1)
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(title, fontsize=10)
            if j == 0 and r:
                ax.set_ylabel(r, fontsize=10)
    for ax in axes[-1]:
        ax.set_xlabel("step")
    seeds = {len(d) for d in runs.values()}
    handles = [plt.Line2D([], [], color=colors[k % len(colors)], linewidth=2.5) for k in range(len(lines))]
    fig.legend(handles, lines, loc="upper center", ncol=min(len(lines), 5), frameon=False, fontsize=9)
    note = (f"mean over {plural(max(seeds), 'seed')}" + ("" if len(seeds) == 1 else " (fewer where not all ran)")
            + ("; band ± std" if max(seeds) > 1 else "") + (f"; {smooth}-point moving average" if smooth > 1 else "")
            + ("; dashed: held-out accuracy before RL" if before is not None and any(k == "eval/accuracy" for _, k, _ in curves) else ""))
    fig.text(0.995, 0.005, note, ha="right", va="bottom", fontsize=8, color="gray")
    top = 1 - (0.3 + 0.2 * math.ceil(len(lines) / 5)) / (0.8 + 2.1 * len(panel_rows))
    fig.tight_layout(rect=(0, 0.02, 1, top))
    fig.savefig(out)
    plt.close(fig)
    return [t for t, _, _ in curves]


def plot_final(per_seed: Dict[str, Dict[str, List[float]]], out: Path, before: Optional[float] = None) -> None:
    """`sweep_summary_final.png`: dots = seeds, a tick at the mean with a ± std line, the before-RL line."""
    plt = _pyplot()
    names = [n for n in per_seed if per_seed[n]["accuracy"]]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(names) + 1.4), dpi=80)
    for i, name in enumerate(names):
        v = per_seed[name]["accuracy"]
        m, s = mean_std(v)
        if s is not None:
            ax.plot([m - s, m + s], [i, i], color="tab:blue", linewidth=2, alpha=0.35)
        ax.plot([m], [i], "|", color="tab:blue", markersize=14, markeredgewidth=2)
        ax.plot(v, [i] * len(v), "o", color="tab:blue", markersize=4, alpha=0.8)
    if before is not None:
        ax.axvline(before, color="gray", linestyle="--", linewidth=1)
        right = before > sum(ax.get_xlim()) / 2  # label on the side with room
        ax.text(before, -0.7, f" before RL {before:.1%} ", color="gray", fontsize=8, va="center",
                ha="right" if right else "left")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_ylim(len(names) - 0.5, -1.0)
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda x, _: f"{x:.0%}"))
    counts = sorted({len(per_seed[n]["accuracy"]) for n in names})
    ax.set_xlabel(f"final held-out accuracy (greedy): dots = seeds ({' or '.join(map(str, counts))} per "
                  f"configuration), tick = mean, line = ± std", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def pareto_front(points: Dict[str, Tuple[float, float]]) -> List[str]:
    """The names no other point dominates (at least as accurate with at most as many tokens, better in one),
    by tokens. Points are (accuracy, tokens). Example: {a: (0.5, 10), b: (0.6, 20), c: (0.4, 15)} -> [a, b]."""
    def dominated(n):
        acc, tok = points[n]
        return any(a >= acc and t <= tok and (a, t) != (acc, tok) for a, t in points.values())

    return sorted((n for n in points if not dominated(n)), key=lambda n: points[n][1])


def plot_pareto(table: Dict[str, Dict[str, tuple]], out: Path, start: Optional[Tuple[float, float]] = None,
                refs: Sequence[Tuple[str, float, float]] = ()) -> None:
    """`sweep_summary_pareto.png` (see the module doc). `table` holds (mean, std) of "accuracy" and
    "eval_length" per configuration; `start` is (accuracy, tokens) before RL; `refs` are (label, accuracy, tokens)."""
    plt = _pyplot()
    names = [n for n in table if table[n]["accuracy"][0] is not None and table[n]["eval_length"][0] is not None]
    grid = grid_axes(names) is not None
    groups = list(dict.fromkeys(n.split("__", 1)[0] if grid else n for n in names))
    shapes = list(dict.fromkeys(n.split("__", 1)[1] for n in names)) if grid else [""]
    colors = plt.get_cmap("tab10" if len(groups) <= 10 else "tab20").colors
    markers = "osD^v<>Pp*hX"
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=90)
    for n in names:
        (acc, acc_sd), (tok, tok_sd) = table[n]["accuracy"], table[n]["eval_length"]
        g, sh = (n.split("__", 1) if grid else (n, ""))
        ax.errorbar(tok, acc, xerr=tok_sd, yerr=acc_sd, fmt=markers[shapes.index(sh) % len(markers)],
                    color=colors[groups.index(g) % len(colors)], markersize=7, capsize=3, elinewidth=1, alpha=0.9)
    front = pareto_front({n: (table[n]["accuracy"][0], table[n]["eval_length"][0]) for n in names})
    ax.plot([table[n]["eval_length"][0] for n in front], [table[n]["accuracy"][0] for n in front], "--",
            color="gray", linewidth=1, zorder=0)
    for label, acc, tok in ([("before RL", *start)] if start else []) + list(refs):
        ax.plot(tok, acc, "k*" if label == "before RL" else "kX", markersize=11)
        ax.annotate(label, (tok, acc), xytext=(8, 0), textcoords="offset points", fontsize=8, va="center")
    handles = [plt.Line2D([], [], color=colors[i % len(colors)], marker="o", linestyle="") for i in range(len(groups))]
    labels = list(groups)
    if grid:
        handles += [plt.Line2D([], [], color="gray", marker=markers[i % len(markers)], linestyle="")
                    for i in range(len(shapes))]
        labels += shapes
    ax.legend(handles, labels, fontsize=8, loc="best", ncol=2 if len(labels) > 8 else 1)
    seeds = max(table[n]["seeds"] for n in names)
    ax.set_xlabel("held-out response length (tokens, greedy, final evaluation)", fontsize=9)
    ax.set_ylabel("final held-out accuracy (greedy)", fontsize=9)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title(f"accuracy against length: mean ± std over {plural(seeds, 'seed')} per configuration; "
                 f"dashed: Pareto frontier", fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.12, y=0.08)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
