"""Metrics: metrics.jsonl in the run directory (always) and a console progress bar."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Dict, Optional


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class MetricsLogger:
    """Appends one JSON object per record to `<run_dir>/metrics.jsonl`, flushed at once (nothing lost on a crash)."""

    def __init__(self, run_dir: Path, total_steps: int, progress: bool = True, print_every: int = 0,
                 resume_step: int = 0):
        from tqdm import tqdm

        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = open(self.path, "a" if resume_step else "w")  # a resumed run appends after its checkpoint
        self.print_every = print_every
        self.bar = tqdm(total=total_steps, initial=resume_step, desc="rl", disable=not progress, dynamic_ncols=True,
                        unit="step")

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        self.file.write(json.dumps({"step": step, **{k: _clean(v) for k, v in metrics.items()}}) + "\n")
        self.file.flush()

    def step(self, step: int, metrics: Dict[str, float]) -> None:
        """Log a training step and advance the bar with reward, accuracy and length."""
        self.log(step, metrics)
        self.bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.2f}",
                             len=f"{metrics['rollout/response_length']:.1f}", refresh=False)
        self.bar.update(1)
        if self.print_every and step % self.print_every == 0:
            self.write(" ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))

    def write(self, line: str) -> None:
        """Print a line without breaking the progress bar."""
        self.bar.write(line)

    def close(self) -> None:
        self.bar.close()
        self.file.close()


def eval_line(tag: str, step: int, m: Dict[str, float]) -> Optional[str]:
    if not m:
        return None
    return (f"[eval {tag} step {step}] held-out accuracy {m['eval/accuracy']:.1%} on {int(m['eval/size'])} problems "
            f"(greedy), mean length {m['eval/response_length']:.1f} tokens, truncated {m['eval/truncated']:.1%}")
