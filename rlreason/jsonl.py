"""JSON-lines parsing: strict for user-supplied files (`rlreason score` inputs, `code_jsonl` tasks), tolerant
for a run's own logs (`metrics.jsonl`, `samples.jsonl`), which a crash or a full disk may leave damaged."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union


def _object(line: str, where: str) -> Dict[str, Any]:
    """The JSON object on `line`; ValueError "WHERE: not JSON (...)" or "WHERE: expected a JSON object"."""
    try:
        row = json.loads(line)
    except ValueError as e:
        raise ValueError(f"{where}: not JSON ({e})") from None
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a JSON object")
    return row


def json_objects(lines: Iterable[str], source: str) -> Iterator[Tuple[int, str, Dict[str, Any]]]:
    """(line number, "SOURCE line N", object) for each non-blank line.

    Raises ValueError "SOURCE line N: not JSON (...)" or "...: expected a JSON object" on a bad line.
    """
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source} line {n}"
        yield n, where, _object(line, where)


def scan_records(path: Union[str, Path]) -> Iterator[Tuple[str, Optional[Dict[str, Any]], Optional[str]]]:
    """(line text, record, None) for each good line of a run log and (line text or '', None, "PATH line N:
    reason") for each bad one, in file order; blank lines are skipped. A good line holds a JSON object
    whose `step` is an integer. Raises FileNotFoundError when `path` does not exist."""
    for n, raw in enumerate(Path(path).read_bytes().split(b"\n"), 1):
        if not raw.strip():
            continue
        where = f"{path} line {n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield "", None, f"{where}: not UTF-8 (byte {raw[e.start]:#04x} at column {e.start + 1})"
            continue
        try:
            rec = _object(line, where)
        except ValueError as e:
            yield line, None, str(e)
            continue
        step = rec.get("step")
        if "step" not in rec or not isinstance(step, int) or isinstance(step, bool):
            yield line, None, f"{where}: " + (f"'step' is {json.dumps(step)[:40]}, not an integer" if "step" in rec
                                              else "no 'step'")
            continue
        yield line, rec, None


def read_records(path: Union[str, Path]) -> Tuple[List[Dict[str, Any]], List[str]]:
    """(records, bad) of a run's `metrics.jsonl` or `samples.jsonl`.

    records: every line that is a JSON object with an integer `step`, in file order. bad: one
    "PATH line N: reason" per other non-blank line (not UTF-8, not JSON, not an object, `step` missing or not
    an integer; a last line cut off by a crash is one), skipped so that a reader can go on and report
    `len(bad)` in one line. Blank lines are skipped silently. Raises FileNotFoundError when `path` does not
    exist.

    >>> records, bad = read_records("runs/x/metrics.jsonl")  # doctest: +SKIP
    """
    records, bad = [], []
    for _, rec, problem in scan_records(path):
        if problem:
            bad.append(problem)
        else:
            records.append(rec)
    return records, bad
