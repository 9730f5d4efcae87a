"""Tasks: where samples come from (DESIGN.md). A task is a class registered in TASKS.

Protocol (see `tasks/base.py`): `Task(params, seed)` with
`train_samples()` (an endless deterministic stream), `eval_samples(n)` (the
held-out split), `demonstration(sample)` (a worked solution, for cold-start
SFT; optional) and `check_params(params)` (a classmethod that raises ValueError
naming the bad parameter before any model loads). A task declares its
parameters as `Params = XParams` (a dataclass, optionally with `check()`); the
base class checks them and keeps them as `self.p`. Finite tasks stream their
training rows with `base.epochs(rows, seed)`.
"""
from .base import TASKS  # noqa: F401  (the registry lives in base.py, which task modules import)

from . import arithmetic  # noqa: E402,F401  (registers built-in tasks)
from . import code_jsonl, files, humaneval, longcot, reasoning_gym, tool_arith  # noqa: E402,F401
