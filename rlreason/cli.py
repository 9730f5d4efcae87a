"""`rlreason train|eval|plan|sft|config|export|merge|score|sweep|plot|list|tasks`: the command line, which ties the modules together.

Bad input (config key, model path, task or term name) ends in a one-line
`rlreason: error: ...` and exit status 2, not a traceback.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from typing import List, Optional

from rlreason.cli_tools import split_args, cmd_list, cmd_plot, cmd_score, cmd_sweep, cmd_tasks


def cmd_train(ns) -> int:
    from rlreason import train
    from rlreason.config_load import load_config

    path, overrides = split_args(ns.args)
    train(load_config(path, overrides))  # prints the held-out accuracy before and after, and the run directory
    return 0


def cmd_eval(ns) -> int:
    from rlreason.build import evaluate_model
    from rlreason.config_load import load_config
    from rlreason.logging import eval_line

    path, overrides = split_args(ns.args)
    cfg = load_config(path, overrides + ([f"model.path={ns.model}"] if ns.model else []))
    metrics = evaluate_model(cfg)
    report = {"model": cfg.model.path, "task": cfg.data.task,
              **({"temperature": cfg.eval.temperature, "top_p": cfg.eval.top_p} if cfg.eval.samples else {}), **metrics}
    text = json.dumps(report, indent=2)
    print(text)
    if ns.out:
        with open(ns.out, "w") as f:
            f.write(text + "\n")
    # the readable line goes to stderr, so stdout stays one JSON document (`rlreason eval ... | jq`)
    print(eval_line(f"{cfg.model.path} on {cfg.data.task}", metrics) or "eval: no held-out problems (data.eval_size=0)",
          file=sys.stderr)
    return 0


def cmd_plan(ns) -> int:
    """`plan [CONFIG] [key=value ...]`: the memory a run needs, stage by stage (rlreason/plan.py)."""
    from rlreason.config_load import load_config
    from rlreason.plan import model_shape, render

    cfg = load_config(*split_args(ns.args))
    print(render(cfg, model_shape(cfg.model.path, cfg.model.lora)))
    return 0


def cmd_sft(ns) -> int:
    from rlreason.config_load import load_config
    from rlreason.sft_config import SFTConfig
    from rlreason.sft import run_sft

    path, overrides = split_args(ns.args)
    cfg = load_config(path, overrides, schema=SFTConfig)
    info = run_sft(cfg)
    if "demos/with_correct" in info:
        print(f"demonstrations ({cfg.demos}): {info['demos/with_correct']} of {info['demos/prompts']} prompts had a "
              f"correct sample of {cfg.sample_k} ({info['demos/correct_rate']:.1%} of samples correct); mean tokens: "
              f"{info['demos/sampled_tokens']:.1f} sampled, {info['demos/correct_tokens']:.1f} correct, "
              f"{info['demos/kept_tokens']:.1f} kept; {info['demos/sample_seconds']:.0f}s")
    print(f"saved {cfg.out}: held-out accuracy {info['eval/accuracy']:.1%} (greedy, {int(info['eval/size'])} problems), "
          f"mean response {info['eval/response_length']:.1f} tokens, final loss {info['final_loss']:.4f}, "
          f"{info['train_seconds']:.0f}s")
    return 0


def cmd_export(ns) -> int:
    """`export SRC --out DIR [--merge] [--dtype D]`: a LoRA run's adapter, or the model with it merged in."""
    from rlreason.export import export

    adapter = export(ns.src, ns.out, ns.merge, ns.dtype)
    print(f"wrote {ns.out}: {'the merged model (' + ns.dtype + ')' if ns.merge else 'the adapter'} from {adapter}")
    return 0


def cmd_merge(ns) -> int:
    """`merge MODEL_A MODEL_B --weight W -o OUT [--force]`: the weight average W*A + (1-W)*B (rlreason/merge.py)."""
    from rlreason.merge import merge

    info = merge(ns.model_a, ns.model_b, ns.weight, ns.out, ns.force)
    print(f"wrote {ns.out}: {ns.weight:g} x {info['model_a']} + {1 - ns.weight:g} x {info['model_b']} "
          f"({info['tensors']} tensors, {info['params']} parameters)")
    return 0


def cmd_config(ns) -> int:
    from rlreason.config import Config
    from rlreason.config_load import field_docs, load_config, to_yaml
    from rlreason.sft_config import SFTConfig

    schema = SFTConfig if ns.sft else Config
    if ns.docs:
        for key, default, doc in field_docs(schema):
            print(f"{key} = {default!r}\n    {doc}")
        return 0
    path, overrides = split_args(ns.args)
    print(to_yaml(load_config(path, overrides, schema=schema)), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:

    p = argparse.ArgumentParser(prog="rlreason", description="Online RL with verifiable rewards for reasoning models.")
    sub = p.add_subparsers(dest="command", required=True)
    over = "[CONFIG.yaml] [key=value ...]: a YAML file, then dotted overrides"
    _add_run_commands(sub, over)
    _add_tool_commands(sub, over)
    return p


def _add_run_commands(sub, over: str) -> None:
    """train, eval, plot, sweep."""
    s = sub.add_parser("train", help="RL-train a model", description="Train with RL. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.set_defaults(fn=cmd_train)
    s = sub.add_parser("eval", help="held-out accuracy (greedy; avg@k, pass@k with eval.samples) of a model",
                       description="Evaluate: greedy accuracy, and avg@k / pass@k with eval.samples=N. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.add_argument("--model", help="model folder or Hub id (same as model.path=...)")
    s.add_argument("--out", help="also write the JSON report here")
    s.set_defaults(fn=cmd_eval)
    s = sub.add_parser("plot", help="reward, accuracy, length, KL, entropy, clip-fraction curves of runs",
                       description="Plot metrics.jsonl of one or more run directories, overlaid, into a PNG.")
    s.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    s.add_argument("-o", "--out", default="runs.png", help="PNG to write (default runs.png)")
    s.add_argument("--smooth", type=int, default=0, metavar="N", help="N-point moving average (0 = raw)")
    s.set_defaults(fn=cmd_plot)
    s = sub.add_parser("sweep", help="run a grid/list of configs x seeds, then a mean ± std table and curves",
                       description="Run a sweep file's configurations x seeds (finished runs are skipped), then "
                                   "write sweep_summary.{md,csv,png}. SWEEP.yaml [key=value ...]: overrides for every run.")
    s.add_argument("args", nargs="*", metavar="SWEEP.yaml|key=value")
    s.add_argument("--parallel", type=int, default=1, metavar="N", help="runs at once (each gets cores/N threads)")
    s.add_argument("--root", help="runs directory (replaces the sweep file's root:)")
    s.add_argument("--seeds", metavar="0,1,...", help="seeds (replace the sweep file's seeds:)")
    s.add_argument("--summarize-only", action="store_true", help="rebuild the summary of SWEEP.yaml's runs; run nothing")
    s.add_argument("--summarize", metavar="DIR", help="rebuild the summary from the run dirs DIR/<config>/seed<k>")
    s.add_argument("--dry-run", action="store_true", help="list the runs and their overrides; run nothing")
    s.add_argument("--out", help="folder for sweep_summary.* (default: the runs directory)")
    s.add_argument("--smooth", type=int, default=0, metavar="N", help="N-point moving average in the PNG")
    s.add_argument("--ref", action="append", default=[], metavar="LABEL=ACC,TOKENS",
                   help="a reference point (another model) in the accuracy-vs-length figure; repeatable")
    s.set_defaults(fn=cmd_sweep)


def _add_tool_commands(sub, over: str) -> None:
    """sft, config, score, list, tasks."""
    s = sub.add_parser("plan", help="estimate a run's memory per stage (weights, grads, optimizer, activations, KV cache)",
                       description="Estimate a run's accelerator memory before it runs. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.set_defaults(fn=cmd_plan)
    s = sub.add_parser("sft", help="cold-start supervised fine-tuning", description="SFT on demonstrations. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.set_defaults(fn=cmd_sft)
    s = sub.add_parser("config", help="print the resolved config", description="Print the resolved config. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.add_argument("--sft", action="store_true", help="use the SFT schema")
    s.add_argument("--docs", action="store_true", help="list every key with its default and meaning")
    s.set_defaults(fn=cmd_config)
    s = sub.add_parser("export", help="a LoRA run's adapter as a folder, or merged into its base model (--merge)",
                       description="Export the LoRA adapter of SRC (a run directory, checkpoint or adapter folder).")
    s.add_argument("src", metavar="SRC")
    s.add_argument("--out", required=True, help="folder to write")
    s.add_argument("--merge", action="store_true", help="write the base model with the adapter merged in")
    s.add_argument("--dtype", default="float32", help="dtype of the merged weights: float32 | bfloat16")
    s.set_defaults(fn=cmd_export)
    s = sub.add_parser("merge", help="weight-average two models of one architecture: W*A + (1-W)*B",
                       description="Average two model folders (or run directories' final/) of the same architecture.")
    s.add_argument("model_a", metavar="MODEL_A")
    s.add_argument("model_b", metavar="MODEL_B")
    s.add_argument("--weight", type=float, required=True, metavar="W", help="share of MODEL_A, in [0, 1]")
    s.add_argument("-o", "--out", required=True, help="folder to write (must not exist or be empty)")
    s.add_argument("--force", action="store_true", help="replace OUT even when it is not empty")
    s.set_defaults(fn=cmd_merge)
    s = sub.add_parser("score", help="score completions from a JSONL file with a task's reward terms",
                       description="Score completions (rows: id or index, completion) with TASK's reward terms.")
    s.add_argument("task", metavar="TASK")
    s.add_argument("params", nargs="*", metavar="param=value", help="task params, e.g. path=problems.jsonl")
    s.add_argument("--completions", required=True, help="JSONL: {\"id\" or \"index\", \"completion\"} per line")
    s.add_argument("--out", help="write the scored rows here (default: stdout)")
    s.add_argument("--eval-size", type=int, default=10000, help="held-out samples searched for ids (default 10000)")
    s.add_argument("--replay-tools", action="store_true",
                   help="re-run each completion's tool calls (```python then ```output blocks) in the sandbox and "
                        "report calls, errors, timeouts and recorded outputs that differ (docs/tools.md)")
    s.add_argument("--skip-unknown", action="store_true",
                   help="skip (and count) rows whose id or index names no held-out sample instead of stopping")
    s.set_defaults(fn=cmd_score)
    s = sub.add_parser("list", help="registered estimators, losses, rewards, tasks, engines")
    s.set_defaults(fn=cmd_list)
    s = sub.add_parser("tasks", help="list tasks, presets and templates; show a sample's exact prompt")
    tsub = s.add_subparsers(dest="action", required=True)
    t = tsub.add_parser("list", help="tasks, file presets, prompt templates, reasoning-gym datasets")
    t.set_defaults(fn=cmd_tasks)
    t = tsub.add_parser("show", help="print the exact prompt text of one sample",
                        description="Print one sample's prompt as the model reads it. TASK is a task or a "
                                    "data.mixture entry name; then " + over)
    t.add_argument("task", metavar="TASK")
    t.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    t.add_argument("--index", type=int, default=0, help="sample number (default 0)")
    t.add_argument("--split", choices=["train", "eval"], default="train", help="training stream or held-out set")
    t.set_defaults(fn=cmd_tasks)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """The command line; `key=value` overrides may also follow a command's options
    (`rlreason eval CONFIG --model X data.eval_size=64`); an unknown option is an error."""
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    wrong = [x for x in extra if x.startswith("-") or not hasattr(ns, "args")]
    if wrong:
        parser.error(f"unrecognized arguments: {' '.join(wrong)}")
    if extra:
        ns.args = ns.args + extra
    return ns


def main(argv: Optional[List[str]] = None) -> int:
    from rlreason.errors import ConfigError, DataError, Interrupted, ModelLoadError, TrainingStopped
    from rlreason.registry import UnknownName

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ns = parse_args(argv)
    try:
        return ns.fn(ns)
    except (ConfigError, ModelLoadError, UnknownName, FileExistsError, FileNotFoundError, DataError) as err:
        print(f"rlreason: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk: one line naming the path and the free space (rlreason/checkpoint.py)
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(f"rlreason: error: {err.strerror or err}", file=sys.stderr)
        return 1
    except TrainingStopped as err:  # the guard rail, or a signal (Interrupted: exit status 128 + signal number)
        print(f"rlreason: stopped: {err}", file=sys.stderr)
        return 128 + err.signum if isinstance(err, Interrupted) else 1
    except KeyboardInterrupt:
        print("rlreason: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
