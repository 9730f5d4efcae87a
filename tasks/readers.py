"""Row readers for the file and `hf` tasks: each yields `(where, row)` pairs.

`where` names the row for error messages: `data/train.jsonl:12` (line), `data/x.csv:7`
(the row's last line), `data/x.parquet row 3`, `openai/gsm8k[test] row 5` (1-based).
A jsonl line that is not a JSON object comes back as `(where, None)`: a bad row.
"""
from __future__ import annotations

import csv
import json
from typing import Any, Dict, Iterator, Optional, Tuple

from rlreason.errors import DataError, first_line

Row = Tuple[str, Optional[Dict[str, Any]]]


def read_jsonl(path: str) -> Iterator[Row]:
    """One JSON object per line; blank lines are ignored."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            yield f"{path}:{lineno}", row if isinstance(row, dict) else None


def read_csv(path: str) -> Iterator[Row]:
    """A header line, then one row per record (quoted fields may span lines)."""
    try:
        f = open(path, encoding="utf-8", newline="")
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    with f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise DataError(f"{path}: empty CSV file (no header line)")
        for row in reader:
            # DictReader fills absent trailing cells with None and puts extra cells under the key None
            yield f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}


def read_parquet(path: str) -> Iterator[Row]:
    """Every row of every row group."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # missing file, not a parquet file
        raise DataError(f"{path}: cannot read as parquet: {first_line(err)}") from None
    for i, row in enumerate(table.to_pylist(), 1):
        yield f"{path} row {i}", row


def read_hf(name: str, config: Optional[str], split: str, data_files: Any = None,
            cache_dir: Optional[str] = None) -> Iterator[Row]:
    """`datasets.load_dataset(name, config, split=split)`: a Hub id, a local dataset folder or a loader
    name such as "json" with `data_files`."""
    import datasets

    try:
        ds = datasets.load_dataset(name, config, split=split, data_files=data_files, cache_dir=cache_dir)
    except Exception as err:  # the library raises many types (FileNotFoundError, ValueError, ConnectionError...)
        msg = first_line(err)
        raise DataError(f"hf dataset '{name}' (config {config!r}, split {split!r}): cannot load: {msg}") from None
    for i, row in enumerate(ds, 1):
        yield f"{name}[{split}] row {i}", dict(row)
