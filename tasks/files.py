"""Math tasks from your own data: `jsonl`, `csv`, `parquet` files and `hf` (`datasets.load_dataset`).

Each row gives a question and a reference answer through a field mapping
(`question`, `answer`, optional `id`), or a named preset (`tasks/answers.py`:
`gsm8k`, `math`, `math_answer`). Example, GSM8K from a local jsonl file:

    data: {task: jsonl, params: {path: data/gsm8k_train.jsonl, eval_path: data/gsm8k_test.jsonl, preset: gsm8k}}

The row `{"question": "Tom has 3 ...", "answer": "... so 1,200.\\n#### 1,200"}` becomes
`Sample(id="jsonl/1", messages=[{"role": "user", "content": "Tom has 3 ..."}], answer="1200")`.

Splits: held-out rows come from `eval_path` (`eval_split` for `hf`) when given;
otherwise a row is held out when `crc32(f"{split_seed}:{question}") % 1000 < heldout * 1000`,
so the split is deterministic, independent of row order and keeps repeated
questions on one side. `dedup` drops training rows whose (whitespace- and
case-normalised) question also appears in the held-out set. Every row is read and
checked at construction; a bad row (text that is not UTF-8, not an object, a missing
field, an empty or blank question, answer or id, an unparsable reference) raises
`DataError` naming its file and line, or with `on_bad_row="skip"` is dropped and
counted by kind (`self.skipped`, logged once).
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

from rlreason.types import Sample

from .base import TASKS
from .answers import ANSWER_FORMATS, PRESETS, SOLUTION_HINTS, solution_like
from .base import DataError, Task, epochs
from .readers import BadRow, Row, read_csv, read_hf, read_jsonl, read_parquet

log = logging.getLogger("rlreason.tasks")
BAD_ROW_POLICIES = ("error", "skip")


@dataclass
class MappingParams:
    preset: str = ""
    """Named mapping (gsm8k | math | math_answer); explicit fields below override it."""
    question: str = ""
    """Field holding the question (default: the preset's, else 'question')."""
    answer: str = ""
    """Field holding the reference answer (default: the preset's, else 'answer')."""
    id: str = ""
    """Field holding a row id (default: the row's position)."""
    answer_format: str = ""
    """plain | gsm8k | boxed (default: the preset's, else plain)."""
    heldout: float = 0.1
    """Fraction of rows held out for evaluation when no separate eval source is given."""
    split_seed: int = 0
    """Seed of the hash split (the training order uses run.seed)."""
    dedup: bool = True
    """Drop training rows whose question also appears in the held-out set."""

    def resolved(self) -> Dict[str, str]:
        p = PRESETS.get(self.preset)
        return {"question": self.question or (p.question if p else "question"),
                "answer": self.answer or (p.answer if p else "answer"),
                "answer_format": self.answer_format or (p.answer_format if p else "plain"), "id": self.id}

    def check(self) -> None:
        if self.preset and self.preset not in PRESETS:
            raise ValueError(f"preset '{self.preset}' is unknown; known: {', '.join(PRESETS)}")
        fmt = self.resolved()["answer_format"]
        if fmt not in ANSWER_FORMATS:
            raise ValueError(f"answer_format '{fmt}' is not one of {' | '.join(ANSWER_FORMATS)}")
        if not 0 <= self.heldout < 1:
            raise ValueError(f"heldout must be in [0, 1) (got {self.heldout})")


@dataclass
class FileParams(MappingParams):
    path: str = ""
    """The data file (required)."""
    eval_path: str = ""
    """Optional separate held-out file in the same format."""

    def check(self) -> None:
        super().check()
        if not self.path:
            raise ValueError("path is required (the data file)")
        for key in ("path", "eval_path"):
            value = getattr(self, key)
            if value and not Path(value).is_file():
                raise ValueError(f"{key} '{value}': no such file")


@dataclass
class HFParams(MappingParams):
    name: str = ""
    """Dataset for datasets.load_dataset: a Hub id ('openai/gsm8k'), a local folder, or a loader ('json', 'parquet')."""
    config: Optional[str] = None
    """Dataset config name (e.g. 'main' for GSM8K)."""
    split: str = "train"
    """Training split."""
    eval_split: str = ""
    """Held-out split (e.g. 'test'); empty = hash split of `split`."""
    data_files: Any = None
    """data_files for loaders such as 'json' (a path, a list, or {split: path})."""
    cache_dir: Optional[str] = None
    """datasets cache folder (default: the library's)."""

    def check(self) -> None:
        super().check()
        if not self.name:
            raise ValueError("name is required (a Hub id, a local dataset folder, or a loader such as 'json')")


def normalize_question(text: str) -> str:
    return " ".join(text.lower().split())


class FileTask(Task):
    """Shared loading, checking and splitting; subclasses say how to read rows."""

    Params = FileParams
    default_rewards = [{"name": "math_answer", "weight": 1.0}, {"name": "format", "weight": 0.1}]

    def __init__(self, params: Dict | None = None, seed: int = 0, on_bad_row: str = "error"):
        super().__init__(params, seed)
        if on_bad_row not in BAD_ROW_POLICIES:
            raise ValueError(f"on_bad_row must be error | skip (got {on_bad_row!r})")
        self.on_bad_row = on_bad_row
        self.skipped: Dict[str, int] = {}
        self.read = self.deduped = 0
        self.train, self.heldout = self._load()
        if self.skipped:
            log.warning("task '%s': skipped %d bad rows of %d (%s)", self.name, sum(self.skipped.values()), self.read,
                        ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())))
        if not self.train:
            raise DataError(f"task '{self.name}' ({self.source()}): no usable training rows")
        self.warn_solution_answers()

    def warn_solution_answers(self) -> None:
        """A warning when plain references look like whole solutions: math_answer would then compare every
        completion's final answer with the whole text, and training runs at reward 0 without a word."""
        if self.p.resolved()["answer_format"] != "plain":
            return
        reason = solution_like([s.answer for s in self.train])
        if reason:
            key = "name" if isinstance(self.p, HFParams) else "path"
            log.warning("data.params.%s %s: reference answers look like full solutions (%s), not final answers; %s",
                        key, self.source(), reason, SOLUTION_HINTS[reason])

    # -- subclasses
    def source(self) -> str:
        return self.p.path

    def rows(self, heldout: bool) -> Iterable[Row]:
        raise NotImplementedError

    def has_eval_source(self) -> bool:
        return bool(self.p.eval_path)

    # -- loading
    def bad(self, where: str, kind: str, problem: str) -> None:
        """A bad row: raise (naming it) or count it."""
        if self.on_bad_row == "error":
            raise DataError(f"{where}: {problem} (set data.on_bad_row=skip to skip such rows)")
        self.skipped[kind] = self.skipped.get(kind, 0) + 1

    def _samples(self, rows: Iterable[Row], split: str) -> List[Sample]:
        m = self.p.resolved()
        parse = ANSWER_FORMATS[m["answer_format"]]
        out = []
        for n, (where, row) in enumerate(rows):
            self.read += 1
            if isinstance(row, BadRow):
                self.bad(where, row.kind, row.problem)
                continue
            fields = [(role, f) for role, f in (("question", m["question"]), ("answer", m["answer"]), ("id", m["id"])) if f]
            missing = [f for _, f in fields if row.get(f) is None]
            if missing:
                self.bad(where, "missing_field", f"missing field '{missing[0]}' (row has: {', '.join(map(str, row)) or 'nothing'})")
                continue
            blank = [(role, f) for role, f in fields if not str(row[f]).strip()]
            if blank:
                role, f = blank[0]
                self.bad(where, f"empty_{role}", f"empty {role} (field '{f}' is blank)")
                continue
            try:
                answer = parse(row[m["answer"]])
            except ValueError as err:
                self.bad(where, "bad_answer", f"unparsable reference answer in field '{m['answer']}' ({m['answer_format']}): {err}")
                continue
            question = str(row[m["question"]]).strip()
            rid = str(row[m["id"]]) if m["id"] else f"{split}/{n}"
            out.append(Sample(id=f"{self.name}/{rid}", task=self.name, answer=answer,
                              messages=[{"role": "user", "content": question}],
                              meta={"question": question, "source": where}))
        return out

    def _load(self):
        if self.has_eval_source():
            train, heldout = self._samples(self.rows(False), "train"), self._samples(self.rows(True), "heldout")
        else:
            rows = self._samples(self.rows(False), "row")
            cut = round(self.p.heldout * 1000)
            is_out = [zlib.crc32(f"{self.p.split_seed}:{normalize_question(s.meta['question'])}".encode()) % 1000 < cut
                      for s in rows]
            train = [s for s, o in zip(rows, is_out) if not o]
            heldout = [s for s, o in zip(rows, is_out) if o]
        if self.p.dedup:
            seen = {normalize_question(s.meta["question"]) for s in heldout}
            before = len(train)
            train = [s for s in train if normalize_question(s.meta["question"]) not in seen]
            self.deduped = before - len(train)
        return train, heldout

    # -- the task protocol
    def train_samples(self) -> Iterator[Sample]:
        """Endless stream: each epoch is a fresh permutation of the training rows, deterministic by seed."""
        return epochs(self.train, self.seed)

    def eval_samples(self, n: int) -> List[Sample]:
        """The first n held-out rows in file order (the same for every run seed)."""
        return self.heldout[:n]

    def all_samples(self) -> List[Sample]:
        """Every loaded sample (for load-time checks such as prompt length)."""
        return self.train + self.heldout


def _register(name: str, reader, doc: str):
    cls = type(name.capitalize() + "Task", (FileTask,), {
        "name": name, "__doc__": doc,
        "rows": lambda self, heldout: reader(self.p.eval_path if heldout else self.p.path)})
    return TASKS.register(name)(cls)


JsonlTask = _register("jsonl", read_jsonl, "Math problems from a JSON-lines file (field mapping or preset; params: path, eval_path, preset, question, answer, id).")
CsvTask = _register("csv", read_csv, "Math problems from a CSV file with a header line (same params as jsonl).")
ParquetTask = _register("parquet", read_parquet, "Math problems from a parquet file (same params as jsonl).")


@TASKS.register("hf")
class HFTask(FileTask):
    """Math problems through datasets.load_dataset(name, config, split) (params: name, config, split, eval_split, preset, ...)."""

    name = "hf"
    Params = HFParams

    def source(self) -> str:
        return f"{self.p.name}[{self.p.split}]"

    def has_eval_source(self) -> bool:
        return bool(self.p.eval_split)

    def rows(self, heldout: bool) -> Iterable[Row]:
        return read_hf(self.p.name, self.p.config, self.p.eval_split if heldout else self.p.split,
                       self.p.data_files, self.p.cache_dir)
