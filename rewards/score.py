"""Score completions from any source with reward terms (`rlreason score`).

Each input row names a task sample by `id` or `index` (position in the task's
held-out split) and gives the `completion` text; optional `token_ids` (for the
length terms; absent = 0 tokens) and `finish_reason` ("stop" by default). Every
row is its own group (G = 1), so group-relative terms such as `kimi_length` score 0.

>>> from rlreason.types import Sample
>>> from types import SimpleNamespace as T
>>> s = [Sample(id="q0", task="t", prompt="1+1=", answer="2")]
>>> rows = parse_rows(['{"index": 0, "completion": "\\\\\\\\boxed{2}"}', '{"id": "q0", "completion": "3"}'], "in.jsonl")
>>> [r["total"] for r in score_rows(rows, s, [T(name="math_answer", weight=1.0, params={})])]
[1.0, 0.0]
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

from rlreason.jsonl import json_objects
from rlreason.rewards.terms import RewardError, compute_rewards
from rlreason.types import Completion, Rollout, Sample


def parse_rows(lines: Iterable[str], source: str) -> List[Tuple[int, Dict[str, Any]]]:
    """(line number, row) for each non-blank JSONL line; ValueError "SOURCE line N: ..." on a bad one."""
    rows = []
    for n, where, row in json_objects(lines, source):
        if not isinstance(row.get("completion"), str):
            raise ValueError(f"{where}: needs a 'completion' string")
        if ("id" in row) == ("index" in row):
            raise ValueError(f"{where}: give exactly one of 'id' or 'index'")
        if "index" in row and (type(row["index"]) is not int or row["index"] < 0):
            raise ValueError(f"{where}: 'index' must be an integer >= 0")
        ids = row.get("token_ids", [])
        if not isinstance(ids, list) or not all(type(t) is int for t in ids):
            raise ValueError(f"{where}: 'token_ids' must be a list of integers")
        rows.append((n, row))
    if not rows:
        raise ValueError(f"{source}: no rows")
    return rows


def known_rows(rows: List[Tuple[int, Dict[str, Any]]], samples: List[Sample]
               ) -> Tuple[List[Tuple[int, Dict[str, Any]]], List[int]]:
    """(the rows that name a sample of `samples`, the line numbers of those that do not), for
    `rlreason score --skip-unknown`. Example: ids ["q0", "zz"] of samples [q0] -> ([row 1], [2])."""
    ids = {s.id for s in samples}
    kept, unknown = [], []
    for n, row in rows:
        known = row["index"] < len(samples) if "index" in row else str(row["id"]) in ids
        (kept if known else unknown).append((n, row))
    return kept, [n for n, _ in unknown]


def score_rows(rows: List[Tuple[int, Dict[str, Any]]], samples: List[Sample], terms: List[Any],
               source: str = "input") -> List[Dict[str, Any]]:
    """One output row per input row: {"line", "id", "total", "terms": {name: value}}; `samples` is the
    task's held-out split. A row naming no known sample, or a term failing on a row, raises
    ValueError naming `source` and the line. "outcomes" gives each term's ok / wrong / timeout / error."""
    by_id = {s.id: s for s in samples}
    picked: List[Sample] = []
    for n, row in rows:
        if "index" in row:
            if row["index"] >= len(samples):
                raise ValueError(f"{source} line {n}: index {row['index']} is past the task's {len(samples)} held-out samples")
            picked.append(samples[row["index"]])
        elif str(row["id"]) in by_id:
            picked.append(by_id[str(row["id"])])
        else:
            raise ValueError(f"{source} line {n}: no sample with id {row['id']!r} in the task's held-out split")
    completions = [Completion(row["completion"], list(row.get("token_ids", [])), [0.0] * len(row.get("token_ids", [])),
                              str(row.get("finish_reason", "stop"))) for _, row in rows]
    try:
        out = compute_rewards(Rollout(picked, completions, 1), terms)
    except RewardError as e:
        line = f" line {rows[e.index][0]}" if e.index is not None else ""
        raise ValueError(f"{source}{line}: {e}") from None
    return [{"line": n, "id": s.id, "total": out.total[i], "terms": {k: v[i] for k, v in out.per_term.items()},
             "outcomes": {k: v[i] for k, v in out.outcomes.items()}}
            for i, ((n, _), s) in enumerate(zip(rows, picked))]
