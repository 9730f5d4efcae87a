"""Strict JSON-lines parsing shared by user-supplied files (`rlreason score` inputs, `code_jsonl` tasks)."""
from __future__ import annotations

import json
from typing import Any, Dict, Iterable, Iterator, Tuple


def json_objects(lines: Iterable[str], source: str) -> Iterator[Tuple[int, str, Dict[str, Any]]]:
    """(line number, "SOURCE line N", object) for each non-blank line.

    Raises ValueError "SOURCE line N: not JSON (...)" or "...: expected a JSON object" on a bad line.
    """
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source} line {n}"
        try:
            row = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{where}: not JSON ({e})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected a JSON object")
        yield n, where, row
