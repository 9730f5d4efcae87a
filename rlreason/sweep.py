"""`rlreason sweep SWEEP.yaml`: one base config, a grid and/or list of overrides, several seeds; one run each.

A sweep file (paths in `base:` are relative to the sweep file; `root:` to the working directory):

    base: ../default.yaml            # the config every run starts from
    root: runs/sweeps/clipping       # run dirs: <root>/<config-name>/seed<k>
    seeds: [0, 1, 2]
    overrides: {train.steps: 100}    # applied to every run (dotted keys or nested dicts)
    grid:                            # cartesian product of these values (or of named change sets) ...
      algo.advantage: [grpo, rloo]
    list:                            # ... times each of these entries (each one change set, `name` optional)
      - {name: pg, algo.loss: pg}
      - {name: ppo, algo.loss: ppo_clip, algo.ppo_epochs: 2}

expands to the configurations `advantage-grpo__pg`, `advantage-grpo__ppo`, `advantage-rloo__pg`,
`advantage-rloo__ppo`, each run with seeds 0, 1, 2 (12 runs, seed-major: the four seed-0 runs first). A
configuration's name is its W&B group (`log.group`); each run is `python -m rlreason train BASE key=value ...`
in a subprocess. Every expanded config is loaded and validated before any run starts. A run whose directory
has `summary.json` (written last by the trainer) is finished and skipped on re-run; an unfinished one restarts
(`run.resume=auto` continues from its newest checkpoint when `run.save_every` wrote one). A finished run whose
config.yaml differs from what the sweep now asks is an error, not a silent reuse.
"""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from omegaconf import OmegaConf

from rlreason.config_load import flat_dict
from rlreason.errors import ConfigError, first_line

KEYS = {"base", "root", "seeds", "overrides", "grid", "list"}


class SweepError(ConfigError):
    """A bad sweep file or a sweep that cannot start: the message names the file and the key or configuration."""


@dataclass
class SweepRun:
    config: str
    """Configuration name (W&B group); the run dir is <root>/<config>/seed<seed>."""
    seed: int
    overrides: List[str]
    """`key=value` items after the base config (values JSON, which OmegaConf parses as YAML)."""
    run_dir: Path
    steps: int = 0
    """train.steps of the run's config."""
    tokens: int = 0
    """Most tokens it generates a step: prompts_per_step x group_size x max_new_tokens (the time estimate's unit)."""

    @property
    def finished(self) -> bool:
        return (self.run_dir / "summary.json").is_file()


@dataclass
class Sweep:
    path: Path
    base: Path
    root: Path
    configs: List[str]
    """Configuration names in file order."""
    runs: List[SweepRun] = field(default_factory=list)


def _item(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def _slug(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "x"


def _auto_name(changes: Dict[str, Any]) -> str:
    """{'algo.advantage': 'rloo', 'algo.clip_high': 0.28} -> 'advantage-rloo__clip_high-0.28'."""
    return "__".join(f"{k.rsplit('.', 1)[-1]}-{_slug(v)}" for k, v in changes.items())


def _overrides(raw: Any, where: str) -> Dict[str, Any]:
    """`overrides:` as a dict (dotted or nested) or a list of `key=value` strings -> flat dict."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return flat_dict(raw)
    if isinstance(raw, list) and all(isinstance(x, str) and "=" in x for x in raw):
        return flat_dict(OmegaConf.to_container(OmegaConf.from_dotlist(raw)))
    raise SweepError(f"{where}: key 'overrides': expected a mapping of key: value (or a list of key=value)")


def _entry(entry: Any, where: str) -> tuple:
    """A change-set mapping with an optional `name` -> (name, {key: value})."""
    if not isinstance(entry, dict) or not entry:
        raise SweepError(f"{where}: expected a mapping of key: value (and an optional name)")
    entry = dict(entry)
    name = entry.pop("name", None)
    changes = flat_dict(entry)
    if name is not None and (not isinstance(name, str) or _slug(name) != name):
        raise SweepError(f"{where}.name {name!r}: use letters, digits, '.', '_' or '-'")
    return name or _auto_name(changes) or "base", changes


def _combinations(spec: Dict[str, Any], where: str) -> List[tuple]:
    """[(name, {key: value})] for the grid's cartesian product x the list's entries, in file order.

    A grid key with scalar values sweeps that config key; a grid key whose values are mappings is an axis
    of change sets (the key is only a label), e.g. `baseline: [{name: drgrpo, algo.advantage: dr_grpo,
    algo.loss_agg: seq_sum_norm}, ...]`.
    """
    grid, entries = spec.get("grid"), spec.get("list")
    if grid is None and entries is None:
        raise SweepError(f"{where}: needs a 'grid:' and/or a 'list:' of overrides")
    axes: List[List[tuple]] = []
    if grid is not None:
        if not isinstance(grid, dict) or not grid:
            raise SweepError(f"{where}: key 'grid': expected a mapping of key: [values]")
        for key, values in flat_dict(grid).items():
            if not isinstance(values, list) or not values:
                raise SweepError(f"{where}: grid key '{key}': expected a non-empty list of values")
            if all(isinstance(v, dict) for v in values):
                axes.append([_entry(v, f"{where}: grid.{key}[{i}]") for i, v in enumerate(values)])
            else:
                axes.append([(_auto_name({key: v}), {key: v}) for v in values])
    if entries is not None:
        if not isinstance(entries, list) or not entries:
            raise SweepError(f"{where}: key 'list': expected a non-empty list of override mappings")
        axes.append([_entry(e, f"{where}: list[{i}]") for i, e in enumerate(entries)])
    out = []
    for combo in itertools.product(*axes):
        changes: Dict[str, Any] = {}
        for _, c in combo:
            changes.update(c)
        out.append(("__".join(n for n, _ in combo), changes))
    return out


def load_sweep(path: str, extra: List[str] = (), root: Optional[str] = None, seeds: Optional[List[int]] = None) -> Sweep:
    """Parse and expand a sweep file, then load and validate every run's config (nothing runs yet).

    Order of overrides: the file's `overrides:`, the configuration's own changes, then `extra` (`key=value`
    for every run, from the command line; they win); `root` and `seeds` replace the file's.
    """
    from rlreason.config_load import load_config

    p = Path(path)
    if not p.is_file():
        raise SweepError(f"{path}: no such sweep file")
    try:
        spec = OmegaConf.to_container(OmegaConf.load(p))
    except Exception as err:
        raise SweepError(f"{path}: not valid YAML: {first_line(err)}") from None
    if not isinstance(spec, dict):
        raise SweepError(f"{path}: expected a mapping with base, seeds, grid and/or list")
    unknown = sorted(set(spec) - KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown key '{unknown[0]}' (a sweep file has {', '.join(sorted(KEYS))})")
    if not isinstance(spec.get("base"), str):
        raise SweepError(f"{path}: key 'base': expected the path of a config YAML (relative to the sweep file)")
    base = p.parent / spec["base"]
    if not base.is_file():
        raise SweepError(f"{path}: key 'base': no such config file {base}")
    seeds = seeds if seeds is not None else spec.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise SweepError(f"{path}: key 'seeds': expected a non-empty list of distinct integers")
    root_dir = Path(root or spec.get("root") or f"runs/sweeps/{p.stem}")
    common = [_item(k, v) for k, v in _overrides(spec.get("overrides"), str(path)).items()]
    combos = _combinations(spec, str(path))
    names = [n for n, _ in combos]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise SweepError(f"{path}: two configurations are both named '{dup}' (give list entries distinct names)")
    sweep = Sweep(p, base, root_dir, names)
    # Seed-major order: every configuration's first seed runs before any configuration's second, so a sweep
    # stopped part-way has one seed of every configuration rather than three seeds of a few.
    own_items = [(name, [_item(k, v) for k, v in changes.items()]) for name, changes in combos]
    for seed in seeds:
        for name, own in own_items:
            run_dir = root_dir / name / f"seed{seed}"
            items = common + own + list(extra) + [f"run.root={root_dir / name}", f"run.name=seed{seed}", f"run.seed={seed}",
                                    f"log.group={name}", f"log.name={name}/seed{seed}", "run.overwrite=true",
                                    "run.resume=auto"]
            try:
                cfg = load_config(str(base), items)
            except ConfigError as err:
                raise SweepError(f"{path}: configuration '{name}' (seed {seed}): {err}") from None
            r = cfg.rollout
            run = SweepRun(name, seed, items, run_dir, cfg.train.steps, r.prompts_per_step * r.group_size * r.max_new_tokens)
            _check_finished(run, cfg, path)
            sweep.runs.append(run)
    return sweep


# Keys that change how a run is executed but not what it computes (resuming from a checkpoint reproduces the
# uninterrupted run), eval.every (evaluating draws no training random numbers: tests/test_evaluate.py) and every
# log.* key (what is shown, not what is computed): a finished run may differ from the sweep in these.
NOT_COMPARED = {"train.threads", "run.save_every", "run.keep_last", "eval.every"}


def _check_finished(run: SweepRun, cfg, path: str) -> None:
    """A finished run must have been trained with the config the sweep asks for now (NOT_COMPARED aside)."""
    from rlreason.config_load import to_dict

    saved_path = run.run_dir / "config.yaml"
    if not run.finished or not saved_path.is_file():
        return
    want = flat_dict(to_dict(cfg))
    have = flat_dict(OmegaConf.to_container(OmegaConf.load(saved_path)))
    # a key added to the schema after the run was made is absent from its config.yaml: at its default it is
    # what the run computed with (a new key's default keeps the old behaviour), so it is no difference
    default = flat_dict(to_dict(type(cfg)()))
    diff = sorted(k for k in set(want) | set(have)
                  if k not in NOT_COMPARED and not k.startswith("log.") and want.get(k) != have.get(k)
                  and not (k not in have and k in default and want.get(k) == default[k]))
    if diff:
        k = diff[0]
        raise SweepError(f"{path}: finished run {run.run_dir} has {k}={have.get(k)!r}, the sweep now asks "
                         f"{k}={want.get(k)!r}; use another root (--root) or delete that run directory")


DEFAULT_JOB_S_PER_STEP = 173 / 300
"""Seconds per step of the default job, both evaluations included: 300 steps in 2 min 53 s on this project's
2-core CPU machine (`rlreason train configs/default.yaml`, 2026-11-30, README)."""
DEFAULT_JOB_TOKENS = 32 * 8 * 64  # its prompts_per_step x group_size x max_new_tokens
RUN_START_S = 8.0
"""Seconds a run spends outside its steps and evaluations (imports, model loading, saving final/): 6-10 s a
run in a 12-run sweep of the default job on 2 CPU cores (a run's wall time minus its perf/* sums, 2026-11-30)."""


def run_seconds(run_dir: Path) -> Optional[float]:
    """A finished run's time in its steps and evaluations (perf/step_s + perf/eval_s of metrics.jsonl)."""
    from rlreason.jsonl import read_records

    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return None
    records = read_records(path)[0]
    total = sum(float(r.get("perf/step_s", 0)) + float(r.get("perf/eval_s", 0)) for r in records)
    return total or None


def estimate(sweep: Sweep) -> tuple:
    """(seconds for the unfinished runs one at a time, how it was estimated). The unit is a step of generated
    tokens (`SweepRun.tokens`): its time is the median over this sweep's finished runs, else the default
    job's DEFAULT_JOB_S_PER_STEP / DEFAULT_JOB_TOKENS (right for models like the shipped tiny one on CPU);
    each run adds RUN_START_S."""
    rates = sorted(t / (r.steps * r.tokens) for r in sweep.runs if r.finished and r.steps
                   for t in [run_seconds(r.run_dir)] if t)
    unfinished = [r for r in sweep.runs if not r.finished]
    todo = sum(r.steps * r.tokens for r in unfinished)
    if rates:
        rate = rates[len(rates) // 2]
        how = f"the median speed of this sweep's {len(rates)} finished run(s), evaluations included"
    else:
        rate = DEFAULT_JOB_S_PER_STEP / DEFAULT_JOB_TOKENS
        how = (f"no finished run yet: the default job's {DEFAULT_JOB_S_PER_STEP:.2f} s/step on 2 CPU cores, "
               f"evaluations included, scaled by generated tokens per step")
    return todo * rate + RUN_START_S * len(unfinished), how + f", plus {RUN_START_S:.0f} s a run to start"


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_sweep(sweep: Sweep, parallel: int = 1, echo=print) -> Dict[str, List[SweepRun]]:
    """Run every unfinished run, `parallel` at once as subprocesses with `train.threads` = cores // parallel.

    Each run's output is appended to `<run_dir>/train.log` (a restarted run keeps the earlier attempt's output).
    Returns {"ran": [...], "skipped": [...], "failed": [...]}.
    """
    if parallel < 1:
        raise SweepError(f"--parallel {parallel}: must be >= 1")
    todo = [r for r in sweep.runs if not r.finished]
    result = {"ran": [], "skipped": [r for r in sweep.runs if r.finished], "failed": []}
    threads = max(1, cores() // parallel)
    echo(f"sweep {sweep.path}: {len(sweep.configs)} configurations x {len(sweep.runs) // len(sweep.configs)} seeds = "
         f"{len(sweep.runs)} runs; {len(result['skipped'])} finished (skipped), {len(todo)} to run, "
         f"{min(parallel, max(1, len(todo)))} at once with train.threads={threads}")
    queue, active = list(todo), []
    try:
        while queue or active:
            while queue and len(active) < parallel:
                run = queue.pop(0)
                run.run_dir.mkdir(parents=True, exist_ok=True)
                log = open(run.run_dir / "train.log", "a")  # an interrupted attempt's output stays above
                if log.tell():
                    log.write(f"\n--- rlreason sweep: restarted {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
                    log.flush()
                cmd = [sys.executable, "-m", "rlreason", "train", str(sweep.base), *run.overrides,
                       f"train.threads={threads}"]
                env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
                # own session: a Ctrl-C reaches the sweep only, whose one SIGTERM lets the run save and stop
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                active.append((run, proc, log, time.time()))
                echo(f"  start {run.config}/seed{run.seed}")
            time.sleep(0.2)
            for item in list(active):
                run, proc, log, t0 = item
                if proc.poll() is None:
                    continue
                active.remove(item)
                log.close()
                ok = proc.returncode == 0 and run.finished
                result["ran" if ok else "failed"].append(run)
                echo(f"  {'done  ' if ok else 'FAILED'} {run.config}/seed{run.seed} ({time.time() - t0:.0f} s"
                     + ("" if ok else f", exit {proc.returncode}; see {run.run_dir / 'train.log'}") + ")")
    finally:  # interrupted: each child finishes its step, checkpoints and stops; it resumes next time
        for run, proc, log, _ in active:
            proc.terminate()
            proc.wait()
            log.close()
    return result
