"""benchmarks/distill.md's tables from a distill_100 sweep root: held-out accuracy at each eval step (mean ± std
over seeds, per seed) against steps and training seconds, and the per-step time split.

    python benchmarks/distill_table.py /tmp/distill/sweep
"""
from __future__ import annotations

import json
import statistics as st
import sys
from pathlib import Path


def records(run: Path):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.startswith("{")]


def mean_std(xs):
    return st.mean(xs), (st.stdev(xs) if len(xs) > 1 else 0.0)


def main(root: Path) -> None:
    configs = sorted(p for p in root.iterdir() if p.is_dir())
    print("| config | step | train s (mean) | held-out accuracy, mean ± std | per seed |\n|---|---|---|---|---|")
    timing = []
    for cfg in configs:
        runs = sorted(p for p in cfg.iterdir() if (p / "summary.json").is_file())  # finished runs only
        if not runs:
            continue
        evals, clock, perf = {}, {}, {k: [] for k in ("step_s", "generate_s", "logprobs_s", "update_s")}
        for run in runs:
            elapsed = 0.0
            for r in records(run):
                if "perf/step_s" in r:
                    elapsed += r["perf/step_s"]
                    for k in perf:
                        perf[k].append(r.get(f"perf/{k}", 0.0))
                if "eval/accuracy" in r:
                    evals.setdefault(r["step"], []).append(r["eval/accuracy"])
                    clock.setdefault(r["step"], []).append(elapsed)
        for step in sorted(evals):
            m, s = mean_std(evals[step])
            seeds = ", ".join(f"{x:.3f}" for x in evals[step])
            print(f"| {cfg.name} | {step} | {st.mean(clock[step]):.0f} | {m:.3f} ± {s:.3f} | {seeds} |")
        kl = {}  # step -> reverse KL of each seed
        for r in (r for run in runs for r in records(run) if "distill/reverse_kl" in r):
            kl.setdefault(r["step"], []).append(r["distill/reverse_kl"])
        timing.append((cfg.name, len(runs), {k: st.mean(v) for k, v in perf.items()}, kl))
    print("\n| config | runs | perf/step_s | generate_s | logprobs_s (teacher) | update_s |\n|---|---|---|---|---|---|")
    for name, n, p, _ in timing:
        print(f"| {name} | {n} | {p['step_s']:.3f} | {p['generate_s']:.3f} | {p['logprobs_s']:.3f} | {p['update_s']:.3f} |")
    for name, _, _, kl in timing:
        if kl:
            at = ", ".join(f"step {s}: {st.mean(kl[s]):.4f}" for s in (1, 25, 50, 75, max(kl)) if s in kl)
            print(f"\n{name}: distill/reverse_kl (mean over seeds) {at}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
