"""Metrics: metrics.jsonl in the run directory (always), a console progress bar, and optionally W&B.

`MetricsLogger.from_config(cfg, run_dir)` builds the logger a training run uses:

- `<run_dir>/metrics.jsonl`: one JSON object per `log()` call, flushed at once;
- `<run_dir>/train.log`: every line the run prints (start, resume, evaluations, `log.print_every` lines,
  plain progress lines, warnings, the stop or end line), appended, one attempt after another (the redrawing
  bar is not in it);
- the console: every line starts with `[step S/T]`. On a terminal a redrawing progress bar; when stdout is
  not a terminal (a file, a pipe), a plain progress line every `log.progress_every` steps instead, so a
  redirected log has no carriage-return redraws;
- with `log.samples_every = N`, `<run_dir>/samples.jsonl` gets sample prompts/completions/rewards every N steps;
- with `log.wandb: offline | online`, a `WandbSink` sends the resolved config, the same metric dicts, and
  the samples as a `wandb.Table`. Offline runs are written under `<run_dir>/wandb` and need no network
  (`wandb sync <run_dir>/wandb/offline-run-*` uploads them later).
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

SAMPLE_ROWS = 32
"""Completions per samples record (the first ones of the step: whole groups, so their contrast shows)."""


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


class WandbSink:
    """One W&B run; `import wandb` happens here only, so wandb is needed only when `log.wandb` is not disabled.

    Example: `WandbSink(run_dir, "offline", "rlreason", "default", config={"train": {"lr": 1e-4}})` writes
    `<run_dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb` with the config and every `log()`ed metric.
    """

    ID_FILE = "wandb_run_id"  # in the run dir: a resumed training run continues the same W&B run

    def __init__(self, run_dir: Path, mode: str, project: str, name: str, group: str = "",
                 tags: Sequence[str] = (), config: Optional[Dict[str, Any]] = None, run_id: Optional[str] = None):
        try:
            import wandb
        except ImportError:
            raise RuntimeError("log.wandb needs the wandb package: pip install 'rlreason[wandb]'") from None
        self.wandb = wandb
        self.run = wandb.init(mode=mode, dir=str(run_dir), project=project, name=name, group=group or None,
                              tags=list(tags) or None, config=config or {}, reinit="create_new",
                              id=run_id, resume="allow" if run_id else None,
                              settings=wandb.Settings(console="off", x_disable_stats=True, silent=True))
        self.dir = Path(self.run.dir).parent  # <run_dir>/wandb/<offline-run-...>
        (Path(run_dir) / self.ID_FILE).write_text(self.run.id + "\n")

    def log(self, step: int, metrics: Dict[str, Any]) -> None:
        self.run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)

    def table(self, step: int, rows: List[Dict[str, Any]]) -> None:
        cols = list(rows[0]) if rows else ["prompt", "completion", "reward"]
        self.run.log({"samples": self.wandb.Table(columns=cols, data=[[r[c] for c in cols] for r in rows])}, step=step)

    def close(self) -> None:
        self.run.finish()


class ConsoleLog:
    """Appends the run's console lines to `path` (with a time stamp), and the `rlreason` loggers' warnings.

    Nothing is written twice when the console already goes to that file (`rlreason sweep` redirects each
    run's output into its train.log).
    """

    def __init__(self, path: Path):
        self.path, self.file, self.handler = path, None, None
        try:
            same = os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(path)) if path.exists() else False
        except (OSError, ValueError, AttributeError):  # stdout is not a real file (captured, closed)
            same = False
        if same:
            return
        self.file = open(path, "a")
        self.handler = logging.StreamHandler(self.file)
        self.handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logging.getLogger("rlreason").addHandler(self.handler)

    def write(self, line: str) -> None:
        if self.file is not None and line is not None:
            self.file.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            logging.getLogger("rlreason").removeHandler(self.handler)
            self.file.close()
            self.file = None


class MetricsLogger:
    """Appends one JSON object per record to `<run_dir>/metrics.jsonl`, flushed at once (nothing lost on a crash).

    Console lines (`write`) start with `[step S/T]`, S the last step logged. `interactive` (default: stdout is
    a terminal) picks a redrawing tqdm bar; otherwise `progress` prints a plain line at the first step, every
    `progress_every` steps (0 = about 20 lines a run) and the last step.
    """

    def __init__(self, run_dir: Path, total_steps: int, progress: bool = True, print_every: int = 0,
                 wandb: Optional[WandbSink] = None, samples_every: int = 0, resume_step: int = 0,
                 progress_every: int = 0, interactive: Optional[bool] = None):
        from tqdm import tqdm

        self.path = Path(run_dir) / "metrics.jsonl"
        append = resume_step > 0  # a resumed run appends after its checkpoint's records
        self.file = open(self.path, "a" if append else "w")
        self.print_every = print_every
        self.wandb, self.samples_every = wandb, samples_every
        self.samples_path = Path(run_dir) / "samples.jsonl"
        if samples_every and not append:
            self.samples_path.write_text("")
        self.current, self.total, self.first = resume_step, total_steps, resume_step
        interactive = _is_terminal(sys.stdout) if interactive is None else interactive
        self.plain_every = (progress_every or max(1, math.ceil(total_steps / 20))) if progress and not interactive else 0
        self.t0 = None  # when the first step of this process ended (the plain lines' rate)
        self.bar = tqdm(total=total_steps, initial=resume_step, desc="rl", disable=not (progress and interactive),
                        dynamic_ncols=True, unit="step", file=sys.stdout)
        self.console = ConsoleLog(Path(run_dir) / "train.log")

    @classmethod
    def from_config(cls, cfg, run_dir: Path, resume_step: int = 0) -> "MetricsLogger":
        """The logger of a training run: progress bar, print_every, samples and W&B as `cfg.log` says."""
        from rlreason.config_load import to_dict

        lc = cfg.log
        sink = None
        if lc.wandb != "disabled":
            id_file = Path(run_dir) / WandbSink.ID_FILE
            run_id = id_file.read_text().strip() if resume_step > 0 and id_file.is_file() else None
            sink = WandbSink(Path(run_dir), lc.wandb, lc.project, lc.name or cfg.run.name, lc.group, lc.tags,
                             config=to_dict(cfg), run_id=run_id)
        return cls(run_dir, cfg.train.steps, lc.progress, lc.print_every, sink, lc.samples_every, resume_step,
                   lc.progress_every)

    def log(self, step: int, metrics: Dict[str, float]) -> None:
        self.file.write(json.dumps({"step": step, **{k: _clean(v) for k, v in metrics.items()}}) + "\n")
        self.file.flush()
        if self.wandb is not None:
            self.wandb.log(step, metrics)

    def step(self, step: int, metrics: Dict[str, float]) -> None:
        """Log a training step; advance the bar with reward, accuracy and length (or print them as a plain line)."""
        self.log(step, metrics)
        self.current = step
        self.bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", acc=f"{metrics['reward/accuracy']:.2f}",
                             len=f"{metrics['rollout/response_length']:.1f}", refresh=False)
        self.bar.update(1)
        if self.t0 is None:
            self.t0 = time.time()
        if self.plain_every and (step % self.plain_every == 0 or step == self.first + 1 or step == self.total):
            self.write(self.progress_line(step, metrics))
        if self.print_every and step % self.print_every == 0:
            self.write(" ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))))

    def progress_line(self, step: int, metrics: Dict[str, float]) -> str:
        """`reward 0.412, accuracy 41.0%, length 38.2 tokens; 1.23 s/step, about 5 min left` (the rate over
        the steps this process ran after its first one)."""
        line = (f"reward {metrics['reward/mean']:.3f}, accuracy {metrics['reward/accuracy']:.1%}, "
                f"length {metrics['rollout/response_length']:.1f} tokens")
        done = step - self.first - 1
        if done > 0 and step < self.total:
            rate = (time.time() - self.t0) / done
            line += f"; {rate:.2f} s/step, about {duration((self.total - step) * rate)} left"
        return line

    def samples(self, step: int, rollout, rewards: Sequence[float]) -> None:
        """Every `samples_every` steps, record the first SAMPLE_ROWS (prompt, completion, reward) rows of `rollout`.

        `rewards` is the step's total reward per completion ([N], completion i answers prompt i // G).
        Rows go to `<run_dir>/samples.jsonl` and, with W&B on, to a `samples` table.
        """
        if not self.samples_every or step % self.samples_every:
            return
        rows = []
        for i, (c, r) in enumerate(list(zip(rollout.completions, rewards))[:SAMPLE_ROWS]):
            s = rollout.sample_of(i)
            prompt = s.prompt if s.prompt is not None else "\n".join(f"{m['role']}: {m['content']}" for m in s.messages)
            rows.append({"prompt": prompt, "completion": c.text, "reward": float(r), "answer": str(s.answer)})
        with open(self.samples_path, "a") as f:
            f.write(json.dumps({"step": step, "rows": rows}) + "\n")
        if self.wandb is not None:
            self.wandb.table(step, rows)

    def write(self, line: Optional[str]) -> None:
        """Print `[step S/T] line` without breaking the progress bar; it also goes to `<run_dir>/train.log`."""
        if line is None:
            return
        line = f"[step {self.current}/{self.total}] {line}"
        self.bar.write(line, file=sys.stdout)
        self.console.write(line)

    def close(self) -> None:
        self.bar.close()
        self.file.close()
        self.console.close()
        if self.wandb is not None:
            self.wandb.close()


def eval_line(tag: str, m: Dict[str, float]) -> Optional[str]:
    """One line per evaluation: greedy accuracy, then avg@k / pass@k when sampled completions were scored."""
    if not m:
        return None
    line = (f"eval {tag}: held-out accuracy {m['eval/accuracy']:.1%} on {int(m['eval/size'])} problems "
            f"(greedy), mean length {m['eval/response_length']:.1f} tokens, truncated {m['eval/truncated']:.1%}")
    ks = sorted(int(k.split("@")[1]) for k in m if k.startswith("eval/pass@"))
    if ks:
        line += f"; {int(m.get('eval/samples', 0))} samples: " + ", ".join(
            f"avg@{k} {m[f'eval/avg@{k}']:.1%} pass@{k} {m[f'eval/pass@{k}']:.1%}" for k in ks)
    return line


def eval_intro(size: int, ec, max_new_tokens: int) -> str:
    """The line before the first evaluation (it may take a while with the bar standing still): what it scores."""
    what = f"eval: {size} held-out problems, greedy, up to {max_new_tokens} new tokens"
    if ec.samples:
        what += f", then {ec.samples} samples each at temperature {ec.temperature:g} for avg@k / pass@k"
    every = f"every {ec.every} steps and " if ec.every else ""
    return what + f"; runs before training, {every}after the last step"


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def duration(seconds: float) -> str:
    """Seconds as '45 s', '12 min' or '2.9 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


QUIET_MODULES = ("transformers", "huggingface_hub", "vllm", "torch", "accelerate", "tokenizers")
"""Packages whose warnings (Python `warnings` and `logging`) are hidden unless `log.verbose`."""


def quiet_third_party(verbose: bool) -> None:
    """Unless `verbose`: no transformers loading/saving bars, no HF hub bars, and only errors from the
    loggers and warnings of QUIET_MODULES (vLLM reads VLLM_LOGGING_LEVEL when it is first imported).
    The project's own warnings (`rlreason.*` loggers) are untouched. Process-wide and idempotent."""
    from transformers.utils import logging as hf_logging

    if verbose:  # an earlier quiet run in this process (the Python API) must not silence this one
        hf_logging.enable_progress_bar()
        hf_logging.set_verbosity_warning()
        return
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in QUIET_MODULES:
        logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", module=name + r"(\.|$)")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
