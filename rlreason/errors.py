"""The error types every layer raises (DESIGN.md, bottom layer: imports nothing from the project).

Each carries a one-line message naming the key, file, row, term or sample at fault; the CLI prints it as
`rlreason: error: ...` (exit 2), or `rlreason: stopped: ...` for `TrainingStopped` (exit 1).
"""
from __future__ import annotations

from typing import Optional


class ConfigError(ValueError):
    """A bad config: the message names the key and the file."""


class DataError(ValueError):
    """Bad task data found at load time; the message names the file and line (or row)."""


class ModelLoadError(RuntimeError):
    """The model path is neither a local folder nor loadable from the Hub."""


class RewardError(RuntimeError):
    """A reward term failed; the message names the term and, when known, the sample.

    `term`, `index` (completion index in the rollout) and `sample_id` are kept as
    attributes so callers can log them without parsing the message.
    """

    def __init__(self, message: str, term: Optional[str] = None, index: Optional[int] = None,
                 sample_id: Optional[str] = None):
        super().__init__(message)
        self.term = term
        self.index = index
        self.sample_id = sample_id


class TrainingStopped(RuntimeError):
    """The run stopped itself (e.g. too many consecutive non-finite steps); the message says why."""


class Interrupted(TrainingStopped):
    """A run stopped by a signal (SIGINT, SIGTERM); `signum` gives the conventional exit status 128 + signum."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when it has none.

    >>> first_line(ValueError("bad value\\nmore detail")), first_line(KeyError())
    ('bad value', 'KeyError')
    """
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
