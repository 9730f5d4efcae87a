"""How short can a `longcot_arith` answer be? Mean tokens (EOS included, the long-CoT model's tokenizer) of the
task's own demonstrations for the held-out problems, with the redundant lines switched off: the floor that a
long2short method can reach without dropping work the demonstrations always show (benchmarks/long2short.md §1).

    .venv/bin/python benchmarks/longcot_floor.py [--n 256]
"""
from __future__ import annotations

import argparse
import re
import statistics

from transformers import AutoTokenizer

from rlreason.tasks import TASKS

VARIANTS = [  # (row, task params, drop the ", so a op b=c" restatement that ends each step)
    ("as shipped (verify_rate 0.5, error_rate 0.2)", {}, False),
    ("no checks, no slips: the format's floor", {"verify_rate": 0.0, "error_rate": 0.0}, False),
    ("the floor without the `, so a op b=c` restatements", {"verify_rate": 0.0, "error_rate": 0.0}, True),
    ("verify_rate 1.0, error_rate 0.5 (more to remove)", {"verify_rate": 1.0, "error_rate": 0.5}, False),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="held-out problems (the long-CoT job evaluates 256)")
    ap.add_argument("--model", default="models/tiny-longcot-rl", help="whose tokenizer counts the tokens")
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(args.model)
    print("| demonstrations | mean tokens |\n|---|---|")
    for row, params, strip in VARIANTS:
        task = TASKS.get("longcot_arith")(params, seed=0)
        texts = [task.demonstration(s) for s in task.eval_samples(args.n)]
        texts = [re.sub(r", so [^\n]*", "", t) for t in texts] if strip else texts
        print(f"| {row} | {statistics.mean(len(tok(t)['input_ids']) + 1 for t in texts):.1f} |")


if __name__ == "__main__":
    main()
