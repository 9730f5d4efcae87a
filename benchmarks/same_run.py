"""Check that a change leaves training bit for bit as it was: run 3-step jobs at two commits, compare.

    python benchmarks/same_run.py run ROOT              # the cases below, into ROOT/<case>/ (this checkout)
    python benchmarks/same_run.py compare OLD NEW [--rename old/key=new/key ...]

`compare` prints IDENTICAL when every metrics.jsonl record (perf/* wall times left out) and the bytes of
final/model.safetensors agree, else each differing key; exit status 1 on any difference. `--rename`
maps a metric renamed on purpose between the two. The cases cover the default job and the paths a
refactor of the loop can break: a critic (GAE) with several epochs and mini-batches, a batch-scope
estimator with KL in the reward and sampled eval, dynamic sampling with KL in the loss and checkpoints.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

BASE = ["configs/default.yaml", "train.steps=3", "log.progress=false"]
CASES = {
    "default": BASE,
    "gae": BASE + ["algo.advantage=gae", "algo.ppo_epochs=2", "algo.mini_batches=2", "data.eval_size=16"],
    "rpp_klrew": BASE + ["algo.advantage=reinforce_pp", "algo.kl.coef=0.05", "algo.kl.where=reward",
                         "data.eval_size=16", "eval.samples=2"],
    "dyn_kl": BASE + ["algo.dynamic_sampling=true", "algo.kl.coef=0.05", "data.eval_size=16", "run.save_every=2"],
}


def run(root: str) -> int:
    failed = 0
    for name, args in CASES.items():
        done = subprocess.run([sys.executable, "-m", "rlreason", "train", *args, f"run.root={root}",
                               f"run.name={name}"], capture_output=True, text=True)
        failed += done.returncode != 0
        print(name, "ok" if done.returncode == 0 else "FAILED\n" + done.stderr[-2000:])
    return 1 if failed else 0


def _records(run_dir: Path, rename: dict) -> list:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{rename.get(k, k): v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _weights(run_dir: Path) -> str:
    return hashlib.sha256((run_dir / "final" / "model.safetensors").read_bytes()).hexdigest()


def compare(old: str, new: str, rename: dict) -> int:
    same_all = True
    for name in CASES:
        a, b = Path(old) / name, Path(new) / name
        ra, rb = _records(a, rename), _records(b, {})
        same = ra == rb and _weights(a) == _weights(b)
        same_all &= same
        print(f"{name}: {'IDENTICAL' if same else 'DIFFERENT'} ({len(ra)} records, final weights "
              f"{'equal' if _weights(a) == _weights(b) else 'differ'})")
        for x, y in zip(ra, rb):
            for k in sorted(set(x) | set(y)):
                if x.get(k) != y.get(k):
                    print(f"  step {x.get('step')} {k}: {x.get(k)} -> {y.get(k)}")
    return 0 if same_all else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["run", "compare"])
    p.add_argument("dirs", nargs="+")
    p.add_argument("--rename", nargs="*", default=[], metavar="OLD=NEW")
    a = p.parse_args()
    if a.action == "run":
        return run(a.dirs[0])
    return compare(a.dirs[0], a.dirs[1], dict(x.split("=", 1) for x in a.rename))


if __name__ == "__main__":
    sys.exit(main())
