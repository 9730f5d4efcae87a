"""`rlreason train|eval|sft|config|list`: the command line, which ties the modules together.

Bad input (config key, model path, task or term name) ends in a one-line
`rlreason: error: ...` and exit status 2, not a traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional, Tuple


def _split(args: List[str]) -> Tuple[Optional[str], List[str]]:
    """[CONFIG] [key=value ...] -> (config path or None, overrides)."""
    if args and "=" not in args[0]:
        return args[0], args[1:]
    return None, args


def cmd_train(ns) -> int:
    from rlreason.config import load_config
    from rlreason.trainer import train

    path, overrides = _split(ns.args)
    cfg = load_config(path, overrides)
    summary = train(cfg)
    b, a = summary["accuracy_before"], summary["accuracy_after"]
    if b is not None and a is not None:
        print(f"held-out accuracy: before RL {b:.1%}, after RL {a:.1%} ({(a - b) * 100:+.1f} points); "
              f"run directory {summary['run_dir']}")
    return 0


def cmd_eval(ns) -> int:
    from rlreason.config import load_config
    from rlreason.evaluate import evaluate
    from rlreason.policy import load_model
    from rlreason.rollout import make_engine
    from rlreason.tasks import TASKS

    path, overrides = _split(ns.args)
    if ns.model:
        overrides = overrides + [f"model.path={ns.model}"]
    cfg = load_config(path, overrides)
    model, tok = load_model(cfg.model.path, cfg.model.dtype, cfg.model.device)
    engine = make_engine(cfg.rollout.engine, model, tok, cfg.rollout)
    task = TASKS.get(cfg.data.task)(cfg.data.params, seed=cfg.run.seed)
    report = {"model": cfg.model.path, "task": cfg.data.task,
              **evaluate(engine, task.eval_samples(cfg.data.eval_size), cfg.rewards,
                         cfg.eval.max_new_tokens or cfg.rollout.max_new_tokens)}
    text = json.dumps(report, indent=2)
    print(text)
    if ns.out:
        with open(ns.out, "w") as f:
            f.write(text + "\n")
    return 0


def cmd_sft(ns) -> int:
    from rlreason.config import load_config
    from rlreason.sft_config import SFTConfig
    from rlreason.sft import run_sft

    path, overrides = _split(ns.args)
    cfg = load_config(path, overrides, schema=SFTConfig)
    info = run_sft(cfg)
    print(f"saved {cfg.out}: held-out accuracy {info['eval/accuracy']:.1%} (greedy, {int(info['eval/size'])} problems), "
          f"final loss {info['final_loss']:.4f}, {info['train_seconds']:.0f}s")
    return 0


def cmd_config(ns) -> int:
    from rlreason.config import Config, field_docs, load_config, to_yaml
    from rlreason.sft_config import SFTConfig

    schema = SFTConfig if ns.sft else Config
    if ns.docs:
        for key, default, doc in field_docs(schema):
            print(f"{key} = {default!r}\n    {doc}")
        return 0
    path, overrides = _split(ns.args)
    print(to_yaml(load_config(path, overrides, schema=schema)), end="")
    return 0


def cmd_list(ns) -> int:
    from rlreason.algos import ADVANTAGES, KL_ESTIMATORS, LOSS_AGGS, LOSSES
    from rlreason.rewards import REWARDS
    from rlreason.rollout import ENGINES
    from rlreason.tasks import TASKS

    for title, reg in [("advantage estimators (algo.advantage)", ADVANTAGES), ("policy losses (algo.loss)", LOSSES),
                       ("loss aggregations (algo.loss_agg)", LOSS_AGGS), ("KL estimators (algo.kl.estimator)", KL_ESTIMATORS),
                       ("reward terms (rewards[].name)", REWARDS), ("tasks (data.task)", TASKS),
                       ("rollout engines (rollout.engine)", ENGINES)]:
        print(title)
        for name in reg:
            if not name.startswith("_"):
                print(f"  {name:<22} {reg.doc(name)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlreason", description="Online RL with verifiable rewards for reasoning models.")
    sub = p.add_subparsers(dest="command", required=True)
    over = "[CONFIG.yaml] [key=value ...]: a YAML file, then dotted overrides"
    s = sub.add_parser("train", help="RL-train a model", description="Train with RL. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.set_defaults(fn=cmd_train)
    s = sub.add_parser("eval", help="held-out accuracy of a model", description="Evaluate greedily. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.add_argument("--model", help="model folder or Hub id (same as model.path=...)")
    s.add_argument("--out", help="also write the JSON report here")
    s.set_defaults(fn=cmd_eval)
    s = sub.add_parser("sft", help="cold-start supervised fine-tuning", description="SFT on demonstrations. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.set_defaults(fn=cmd_sft)
    s = sub.add_parser("config", help="print the resolved config", description="Print the resolved config. " + over)
    s.add_argument("args", nargs="*", metavar="CONFIG|key=value")
    s.add_argument("--sft", action="store_true", help="use the SFT schema")
    s.add_argument("--docs", action="store_true", help="list every key with its default and meaning")
    s.set_defaults(fn=cmd_config)
    s = sub.add_parser("list", help="registered estimators, losses, rewards, tasks, engines")
    s.set_defaults(fn=cmd_list)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    from rlreason.config import ConfigError
    from rlreason.policy import ModelLoadError
    from rlreason.registry import UnknownName

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ns = build_parser().parse_args(argv)
    try:
        return ns.fn(ns)
    except (ConfigError, ModelLoadError, UnknownName, FileExistsError) as err:
        print(f"rlreason: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rlreason: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
