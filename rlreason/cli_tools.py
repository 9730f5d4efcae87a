"""The CLI's tool commands (`plot`, `sweep`, `list`, `tasks`, `score`); `rlreason/cli.py` parses and dispatches."""
from __future__ import annotations

import json
import os
import sys

from typing import List, Optional, Tuple

def split_args(args: List[str]) -> Tuple[Optional[str], List[str]]:
    """[CONFIG] [key=value ...] -> (config path or None, overrides)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def cmd_plot(ns) -> int:
    from rlreason.plot import PlotError, plot_runs

    try:
        drawn, skipped = plot_runs(ns.run_dirs, ns.out, ns.smooth)
    except PlotError as err:
        print(f"rlreason: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {ns.out}: {len(drawn)} panels, {len(ns.run_dirs)} run(s)"
          + (f"; left out: {', '.join(f'{t} ({why})' for t, why in skipped.items())}" if skipped else ""))
    return 0


def cmd_sweep(ns) -> int:
    """`sweep SWEEP.yaml [key=value ...]`: run the unfinished runs, then summarize; `--summarize DIR`: summary only."""
    import time
    from pathlib import Path

    from rlreason.errors import ConfigError
    from rlreason.sweep import load_sweep, run_sweep
    from rlreason.sweep_summary import summarize

    refs = [parse_ref(r) for r in ns.ref]  # checked before anything runs
    if ns.summarize:
        root, configs = ns.summarize, None
    else:
        if not ns.args or "=" in ns.args[0]:
            raise ConfigError("sweep: give a SWEEP.yaml (or --summarize DIR)")
        try:
            seeds = [int(x) for x in ns.seeds.split(",")] if ns.seeds else None
        except ValueError:
            raise ConfigError(f"--seeds {ns.seeds}: expected integers separated by commas") from None
        sweep = load_sweep(ns.args[0], ns.args[1:], ns.root, seeds)
        root, configs = sweep.root, sweep.configs
        if ns.dry_run:
            for r in sweep.runs:
                print(f"{'finished' if r.finished else 'to run  '} {r.run_dir}  {' '.join(r.overrides)}")
            print(dry_run_summary(sweep, ns.parallel))
            return 0
        failed = []
        if not ns.summarize_only:
            t0 = time.time()
            result = run_sweep(sweep, ns.parallel)
            failed = result["failed"]
            print(f"sweep wall time {time.time() - t0:.0f} s: {len(result['ran'])} ran, "
                  f"{len(result['skipped'])} skipped, {len(failed)} failed")
    try:
        table = summarize(Path(root), Path(ns.out) if ns.out else None, configs, ns.smooth, refs)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    out = Path(ns.out or root)
    print(f"wrote {out / 'sweep_summary.md'}, .csv, .png: {len(table)} configurations")
    print((out / "sweep_summary.md").read_text().split("\n\n")[0])
    return 1 if not ns.summarize and failed else 0


def parse_ref(text: str) -> Tuple[str, float, float]:
    """`--ref "LABEL=ACC,TOKENS"` -> (label, accuracy, tokens): a reference point of the Pareto figure. ACC is a
    fraction or a percentage. Example: "long model=61%,240" -> ("long model", 0.61, 240.0)."""
    label, sep, rest = text.partition("=")
    acc, comma, tokens = rest.partition(",")
    try:
        a = float(acc.strip().rstrip("%")) / (100 if acc.strip().endswith("%") else 1)
        t = float(tokens)
    except ValueError:
        a = t = -1.0
    if not sep or not comma or not label.strip() or not 0 <= a <= 1 or t < 0:
        from rlreason.errors import ConfigError

        raise ConfigError(f"--ref {text!r}: expected LABEL=ACC,TOKENS with ACC in [0, 1] (or a %) and TOKENS >= 0")
    return label.strip(), a, t


def dry_run_summary(sweep, parallel: int = 1) -> str:
    """`60 runs (20 configurations x 3 seeds): 0 finished, 60 to run, 18000 steps; estimated about 2.9 h ...`."""
    from rlreason.logging import duration
    from rlreason.sweep import estimate

    todo = [r for r in sweep.runs if not r.finished]
    seconds, how = estimate(sweep)
    line = (f"{len(sweep.runs)} runs ({len(sweep.configs)} configurations x {len(sweep.runs) // len(sweep.configs)} "
            f"seeds): {len(sweep.runs) - len(todo)} finished, {len(todo)} to run, {sum(r.steps for r in todo)} steps")
    if not todo:
        return line
    at_once = f"; with --parallel {parallel} about {duration(seconds / parallel)} if cores allow" if parallel > 1 else ""
    return line + f"; estimated about {duration(seconds)} one at a time{at_once} (from {how})"


def cmd_list(ns) -> int:
    from rlreason.algos import ADVANTAGES, IS_MODES, KL_ESTIMATORS, LOSS_AGGS, LOSSES
    from rlreason.rewards import REWARDS
    from rlreason.rollout import ENGINES
    from rlreason.sampling import SAMPLERS
    from rlreason.sft_demos import DEMOS
    from rlreason.tasks import TASKS

    for title, reg in [("advantage estimators (algo.advantage)", ADVANTAGES), ("policy losses (algo.loss)", LOSSES),
                       ("loss aggregations (algo.loss_agg)", LOSS_AGGS), ("KL estimators (algo.kl.estimator)", KL_ESTIMATORS),
                       ("off-policy corrections (algo.is_mode)", IS_MODES),
                       ("reward terms (rewards[].name)", REWARDS), ("tasks (data.task)", TASKS),
                       ("rollout engines (rollout.engine)", ENGINES), ("prompt samplers (data.sampling)", SAMPLERS),
                       ("SFT demonstration sources (rlreason sft demos=)", DEMOS)]:
        print(title)
        for name in reg:
            if not name.startswith("_"):
                print(listing_row(name, reg.doc(name)))
    return 0


def listing_row(name: str, doc: str, width: int = 110) -> str:
    """`  name   doc`, the doc wrapped at word boundaries under its first line (never cut)."""
    import textwrap

    return textwrap.fill(doc, width, initial_indent=f"  {name:<22} ", subsequent_indent=" " * 25,
                         break_long_words=False, break_on_hyphens=False) if doc else f"  {name}"


def cmd_tasks(ns) -> int:
    """`tasks list`: tasks, presets, templates; `tasks show TASK`: the exact prompt text of one sample."""
    import itertools

    from rlreason.errors import ConfigError
    from rlreason.config_load import load_config
    from rlreason.tasks import TASKS
    from rlreason.tasks.answers import PRESETS
    from rlreason.tasks.templates import TEMPLATES, prompt_text, prompt_token_len

    if ns.action == "list":
        from rlreason.tasks.reasoning_gym import dataset_names

        for title, rows in [("tasks (data.task)", [(n, TASKS.doc(n)) for n in TASKS]),
                            ("presets (data.params.preset of jsonl/csv/parquet/hf)", [(k, p.doc) for k, p in PRESETS.items()]),
                            ("templates (data.template)", [(n, TEMPLATES.doc(n)) for n in TEMPLATES])]:
            print(title)
            for name, doc in rows:
                print(listing_row(name, doc))
        print("reasoning-gym datasets (data.params.dataset of reasoning_gym)\n  " + ", ".join(dataset_names()))
        return 0
    from rlreason.tasks.mixture import build_task

    path, overrides = split_args(ns.args)
    try:  # TASK may name an entry of the config's data.mixture ...
        cfg = load_config(path, overrides)
        entries = [m for m in cfg.data.mixture if (m.name or m.task) == ns.task]
    except ConfigError:
        entries = []
    if entries:
        cfg.data.mixture = entries
    else:  # ... or a task, with data.params from the config / overrides
        cfg = load_config(path, [f"data.task={ns.task}", "data.mixture=[]"] + overrides)
    task = build_task(cfg.data, cfg.run.seed)
    pool = itertools.islice(task.train_samples(), ns.index, ns.index + 1) if ns.split == "train" \
        else task.eval_samples(cfg.data.eval_size)[ns.index:ns.index + 1]
    sample = next(iter(pool), None)
    if sample is None:
        raise ConfigError(f"task '{ns.task}' has no {ns.split} sample {ns.index}")
    tok = None
    if sample.messages is not None:  # the chat template is the model's: load its tokenizer (no weights)
        from transformers import AutoTokenizer

        from rlreason.policy import resolve_model_path

        tok = AutoTokenizer.from_pretrained(resolve_model_path(cfg.model.path))
    where = sample.meta.get("source", sample.id)
    size = f", {prompt_token_len(sample, tok)} prompt tokens" if tok is not None else ""
    print(f"# {ns.split} sample {ns.index} of '{ns.task}': id {sample.id}, from {where}, template "
          f"'{cfg.data.template}'{size}; answer {sample.meta.get('reference', sample.answer)!r}")
    print(prompt_text(sample, tok))
    return 0


def cmd_score(ns) -> int:
    """Score a JSONL of completions with TASK's reward terms; one output row per input row."""
    from rlreason.errors import ConfigError
    from rlreason.plugins import is_import_path, register_task
    from rlreason.rewards import as_term
    from rlreason.rewards.score import known_rows, parse_rows, score_rows
    from rlreason.tasks import TASKS

    params = {}
    for item in ns.params:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"task param {item!r}: expected key=value")
        try:
            params[key] = json.loads(value)
        except ValueError:
            params[key] = value
    try:
        if is_import_path(ns.task):
            register_task(ns.task)  # a custom task by import path, e.g. examples.my_rewards:TwoNumberSum
        task_cls = TASKS.get(ns.task)
        task = task_cls(params)
        if not os.path.isfile(ns.completions):
            raise ValueError(f"{ns.completions}: no such file")
        with open(ns.completions) as f:
            rows = parse_rows(f, ns.completions)
        if all("index" in row for _, row in rows):
            n = max(row["index"] for _, row in rows) + 1
        else:
            n = ns.eval_size
        terms = [as_term(t) for t in task_cls.default_rewards]
        samples, skipped = task.eval_samples(n), []
        if ns.skip_unknown:
            rows, skipped = known_rows(rows, samples)
            if not rows:
                raise ValueError(f"{ns.completions}: none of its {len(skipped)} rows names a held-out sample of "
                                 f"task '{ns.task}' (searched {len(samples)})")
        scored = score_rows(rows, samples, terms, ns.completions)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    if ns.replay_tools:
        _replay_tools(rows, scored)
    out = open(ns.out, "w") if ns.out else sys.stdout
    try:
        for row in scored:
            out.write(json.dumps(row) + "\n")
    finally:
        if ns.out:
            out.close()
    means = {k: sum(r["terms"][k] for r in scored) / len(scored) for k in scored[0]["terms"]}
    print(f"scored {len(scored)} completions with {', '.join(means)}: mean total "
          f"{sum(r['total'] for r in scored) / len(scored):.4f}; "
          + ", ".join(f"{k} {v:.4f}" for k, v in means.items()), file=sys.stderr)
    if skipped:
        shown = ", ".join(map(str, skipped[:10])) + (" ..." if len(skipped) > 10 else "")
        print(f"skipped {len(skipped)} rows naming no held-out sample (--skip-unknown): lines {shown}", file=sys.stderr)
    return 0


def _replay_tools(rows, scored) -> None:
    """`score --replay-tools`: each row gets `tools` {calls, errors, timeouts, mismatches} from re-running its
    calls in the sandbox (the `python` tool at rollout.tools' default limits); a total goes to stderr."""
    from rlreason.config import RolloutConfig
    from rlreason.rewards.tool_python import python_tool
    from rlreason.rollout.tools import replay

    r = RolloutConfig()
    run = python_tool(r.tool_timeout_s, r.tool_memory_mb)
    total = {"calls": 0, "errors": 0, "timeouts": 0, "mismatches": 0}
    for (_, row), out in zip(rows, scored):
        out["tools"] = replay(row["completion"], run, r.tool_output_chars)
        total = {k: v + out["tools"][k] for k, v in total.items()}
    print(f"replayed {total['calls']} tool calls: {total['errors']} errors, {total['timeouts']} timeouts, "
          f"{total['mismatches']} recorded outputs differ from the replay", file=sys.stderr)
