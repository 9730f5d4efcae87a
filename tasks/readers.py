"""Row readers for the file and `hf` tasks: each yields `(where, row)` pairs.

`where` names the row for error messages: `data/train.jsonl:12` (line), `data/x.csv:7`
(the row's last line), `data/x.parquet row 3`, `openai/gsm8k[test] row 5` (1-based).
A row that cannot be read comes back as `(where, BadRow(kind, problem))`, which the task
raises or skips (`data.on_bad_row`): a jsonl line that is not a JSON object, or text that
is not UTF-8: `data/train.jsonl:3: not UTF-8 (byte 0xff at position 17)`, the position
counting bytes from 0 within the line (within the field for parquet and `hf`). For a csv
row it names the line that holds the byte; a header line that is not UTF-8, or one the
csv module cannot parse, stops the read.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple, Union

from rlreason.errors import DataError, first_line


@dataclass(frozen=True)
class BadRow:
    """A row that could not be read: `kind` counts it when skipped, `problem` says why."""

    kind: str
    problem: str


NOT_AN_OBJECT = BadRow("not_an_object", "not a valid JSON object")
Row = Tuple[str, Union[Dict[str, Any], BadRow]]
_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that are not UTF-8, as errors="surrogateescape" reads them


def _not_utf8(err: UnicodeDecodeError, field: str = "") -> BadRow:
    where = f" of field '{field}'" if field else ""
    return BadRow("not_utf8", f"not UTF-8 (byte 0x{err.object[err.start]:02x} at position {err.start}{where})")


def check_utf8(line: str) -> Optional[BadRow]:
    """None when `line` (read with errors="surrogateescape") is UTF-8, else the bad row naming its first bad byte."""
    if line.isascii() or not _ESCAPED.search(line):
        return None
    try:
        line.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError as err:
        return _not_utf8(err)
    return None


def _open_text(path: str, **kwargs):
    try:
        return open(path, encoding="utf-8", errors="surrogateescape", **kwargs)
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None


def read_jsonl(path: str) -> Iterator[Row]:
    """One JSON object per line; blank lines are ignored."""
    with _open_text(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            bad = check_utf8(line)
            if bad:
                yield f"{path}:{lineno}", bad
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            yield f"{path}:{lineno}", row if isinstance(row, dict) else NOT_AN_OBJECT


class _CheckedLines:
    """The lines of a text file read with errors="surrogateescape", as they are; `bad` collects (line number,
    bad row) for each line that is not UTF-8, `lineno` is the number of the last line read."""

    def __init__(self, f):
        self.f, self.lineno, self.bad = f, 0, []

    def __iter__(self) -> Iterator[str]:
        for self.lineno, line in enumerate(self.f, 1):
            bad = check_utf8(line)
            if bad:
                self.bad.append((self.lineno, bad))
            yield line


def read_csv(path: str) -> Iterator[Row]:
    """A header line, then one row per record (quoted fields may span lines)."""
    with _open_text(path, newline="") as f:
        lines = _CheckedLines(f)
        reader = csv.DictReader(lines)
        try:
            if not reader.fieldnames:
                raise DataError(f"{path}: empty CSV file (no header line)")
            if lines.bad:
                raise DataError(f"{path}:{lines.bad[0][0]}: header line is {lines.bad[0][1].problem}")
            for row in reader:
                if lines.bad:
                    yield f"{path}:{lines.bad[0][0]}", lines.bad[0][1]
                    lines.bad.clear()
                    continue
                # DictReader fills absent trailing cells with None and puts extra cells under the key None
                yield f"{path}:{reader.line_num}", {k: v for k, v in row.items() if k is not None}
        except csv.Error as err:  # e.g. a field over csv.field_size_limit(): the reader cannot go on reliably
            raise DataError(f"{path}:{lines.lineno}: not readable as CSV: {err}") from None


def _arrow_rows(table, where) -> Iterator[Row]:
    """The rows of a pyarrow table as dicts; a row with a text field that is not UTF-8 comes back as a bad row."""
    try:
        rows = table.to_pylist()
    except UnicodeDecodeError:  # find the rows (and fields) at fault, one row at a time
        rows = None
    if rows is not None:
        yield from ((where(i), row) for i, row in enumerate(rows, 1))
        return
    for i in range(table.num_rows):
        one = table.slice(i, 1)
        try:
            yield where(i + 1), one.to_pylist()[0]
        except UnicodeDecodeError:
            yield where(i + 1), _bad_arrow_row(one)


def _bad_arrow_row(one) -> BadRow:
    """The bad row for a one-row pyarrow table whose text does not decode, naming the first field at fault."""
    for name in one.column_names:
        try:
            one.column(name).to_pylist()
        except UnicodeDecodeError as err:
            return _not_utf8(err, name)
    return BadRow("not_utf8", "not UTF-8")


def read_parquet(path: str) -> Iterator[Row]:
    """Every row of every row group."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # missing file, not a parquet file
        raise DataError(f"{path}: cannot read as parquet: {first_line(err)}") from None
    yield from _arrow_rows(table, lambda i: f"{path} row {i}")


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
    done = 0  # rows yielded; the library's iterator stops at a row whose text is not UTF-8, so it restarts after it
    while done < len(ds):
        try:
            for row in ds.select(range(done, len(ds))) if done else ds:
                done += 1
                yield f"{name}[{split}] row {done}", dict(row)
        except UnicodeDecodeError:
            done += 1
            yield f"{name}[{split}] row {done}", _bad_arrow_row(ds.with_format("arrow")[done - 1:done])
