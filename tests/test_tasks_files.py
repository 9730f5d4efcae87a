"""File tasks (jsonl, csv, parquet, hf on local files), the GSM8K / MATH presets, splits and bad rows."""
from __future__ import annotations

import itertools
import json
import logging

import pytest

from rlreason.tasks import TASKS
from rlreason.tasks.answers import boxed_content, parse_boxed, parse_gsm8k
from rlreason.tasks.base import DataError

DATA = "tests/data"
GSM = {"path": f"{DATA}/gsm8k_train.jsonl", "eval_path": f"{DATA}/gsm8k_test.jsonl", "preset": "gsm8k"}


def rows(task):
    return [(s.id, s.answer, s.meta["question"]) for s in task.train], [(s.id, s.answer) for s in task.heldout]


# ----------------------------------------------------------------------------- presets on handwritten rows


@pytest.mark.parametrize("text, want", [
    ("3 * 4 = 12 pens.\n#### 12", "12"),
    ("1,050 + 150 = 1,200 apples.\n#### 1,200", "1200"),
    ("#### 12.5", "12.5"),
    ("first #### 3 then #### -7", "-7"),
])
def test_gsm8k_answer(text, want):
    assert parse_gsm8k(text) == want


@pytest.mark.parametrize("text", ["the answer is 3", "#### three", "####", ""])
def test_gsm8k_answer_unparsable(text):
    with pytest.raises(ValueError):
        parse_gsm8k(text)


@pytest.mark.parametrize("text, want", [
    (r"so $\boxed{4}$.", "4"),
    (r"$\frac{2}{4} + \frac{1}{4} = \boxed{\frac{3}{4}}$", r"\frac{3}{4}"),
    (r"first $\boxed{3}$, finally $\boxed{9\pi}$", r"9\pi"),
    (r"\fbox{x^{2}}", "x^{2}"),
])
def test_math_answer_is_last_box(text, want):
    assert parse_boxed(text) == want


@pytest.mark.parametrize("text", ["no box at all", r"\boxed{unclosed", r"\boxed{}"])
def test_math_answer_unparsable(text):
    with pytest.raises(ValueError):
        parse_boxed(text)
    assert boxed_content("nothing") is None


def test_jsonl_gsm8k_preset_with_eval_file_and_dedup():
    task = TASKS.get("jsonl")(GSM, seed=0)
    train, held = rows(task)
    assert [a for _, a, _ in train] == ["12", "1200", "105", "295", "12.5"]  # blank line ignored
    assert held == [("jsonl/heldout/0", "30"), ("jsonl/heldout/1", "81"), ("jsonl/heldout/2", "20")]
    # "What is 9 times 9?" is also in the test file (other case/spacing): dropped from training
    assert task.deduped == 1 and not any("9 times 9" in q for _, _, q in train)
    s = task.train[1]
    assert s.messages == [{"role": "user", "content": s.meta["question"]}] and s.prompt is None
    assert s.meta["source"] == f"{DATA}/gsm8k_train.jsonl:2" and s.task == "jsonl"
    nodedup = TASKS.get("jsonl")({**GSM, "dedup": False})
    assert len(nodedup.train) == 6 and nodedup.deduped == 0


def test_jsonl_math_preset_id_field_and_hash_split():
    params = {"path": f"{DATA}/math_train.jsonl", "preset": "math", "id": "unique_id", "heldout": 0.5}
    task = TASKS.get("jsonl")(params)
    answers = {s.id: s.answer for s in task.train + task.heldout}
    assert answers == {"jsonl/algebra/1": r"\frac{3}{4}", "jsonl/algebra/2": "4", "jsonl/geometry/7": r"9\pi",
                       "jsonl/algebra/9": r"5\sqrt{2}"}
    assert task.train and task.heldout  # both sides of the hash split are used at heldout=0.5
    # deterministic: independent of run seed; another split_seed may move rows
    again = TASKS.get("jsonl")(params, seed=7)
    assert [s.id for s in again.heldout] == [s.id for s in task.heldout]
    splits = {tuple(s.id for s in TASKS.get("jsonl")({**params, "split_seed": k}).heldout) for k in range(8)}
    assert len(splits) > 1


def test_csv_field_mapping_multiline_and_line_numbers():
    task = TASKS.get("csv")({"path": f"{DATA}/plain.csv", "question": "prompt", "answer": "target", "id": "id",
                             "heldout": 0})
    train, held = rows(task)
    assert train == [("csv/p1", "4", "What is 2+2?"), ("csv/p2", "8", "Multi-line\nquestion: 3+5?"),
                     ("csv/p3", "6", "What is 10-4?")]
    assert held == []
    assert [s.meta["source"] for s in task.train] == [f"{DATA}/plain.csv:{n}" for n in (2, 4, 5)]


def test_parquet_loader(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"problem": ["Solve $x+1=3$.", "What is $2^3$?"],
                             "solution": [r"$x=\boxed{2}$", r"It is $\boxed{8}$."]}), path)
    task = TASKS.get("parquet")({"path": str(path), "preset": "math", "heldout": 0})
    assert [(s.answer, s.meta["source"]) for s in task.train] == [("2", f"{path} row 1"), ("8", f"{path} row 2")]


def test_hf_loader_on_a_local_dataset_folder(tmp_path):
    """datasets.load_dataset on a local folder of split files: the same code path as a Hub id, no download."""
    folder = tmp_path / "gsm"
    folder.mkdir()
    for split, src in (("train", "gsm8k_train.jsonl"), ("test", "gsm8k_test.jsonl")):
        (folder / f"{split}.jsonl").write_text(open(f"{DATA}/{src}").read())
    task = TASKS.get("hf")({"name": str(folder), "split": "train", "eval_split": "test", "preset": "gsm8k",
                            "cache_dir": str(tmp_path / "cache")})
    assert [s.answer for s in task.train] == ["12", "1200", "105", "295", "12.5"]
    assert [s.answer for s in task.eval_samples(2)] == ["30", "81"]
    assert task.train[0].meta["source"] == f"{folder}[train] row 1"
    # a loader name plus data_files works too
    task = TASKS.get("hf")({"name": "json", "data_files": f"{DATA}/math_train.jsonl", "preset": "math",
                            "heldout": 0, "cache_dir": str(tmp_path / "cache")})
    assert [s.answer for s in task.train][:2] == [r"\frac{3}{4}", "4"]
    with pytest.raises(DataError, match="cannot load"):
        TASKS.get("hf")({"name": str(tmp_path / "missing"), "cache_dir": str(tmp_path / "cache")})


def test_train_stream_epochs_are_seeded_permutations():
    task = TASKS.get("jsonl")(GSM, seed=3)
    ids = [s.id for s in itertools.islice(task.train_samples(), 15)]
    assert sorted(ids[:5]) == sorted(s.id for s in task.train) == sorted(ids[5:10])  # every row once per epoch
    assert ids == [s.id for s in itertools.islice(TASKS.get("jsonl")(GSM, seed=3).train_samples(), 15)]
    others = {tuple(s.id for s in itertools.islice(TASKS.get("jsonl")(GSM, seed=k).train_samples(), 15))
              for k in range(4, 9)}
    assert len(others | {tuple(ids)}) > 1


def test_eval_cap():
    task = TASKS.get("jsonl")(GSM)
    assert len(task.eval_samples(2)) == 2 and len(task.eval_samples(100)) == 3 and task.eval_samples(0) == []


# ----------------------------------------------------------------------------- params and bad rows


@pytest.mark.parametrize("params, needle", [
    ({}, "path is required"),
    ({"path": f"{DATA}/nope.jsonl"}, "no such file"),
    ({"path": f"{DATA}/gsm8k_train.jsonl", "preset": "gsm9k"}, "preset 'gsm9k'"),
    ({"path": f"{DATA}/gsm8k_train.jsonl", "answer_format": "xml"}, "answer_format"),
    ({"path": f"{DATA}/gsm8k_train.jsonl", "heldout": 1.0}, "heldout"),
    ({"path": f"{DATA}/gsm8k_train.jsonl", "qestion": "q"}, "qestion"),
])
def test_params_rejected(params, needle):
    with pytest.raises(ValueError, match=needle):
        TASKS.get("jsonl").check_params(params)


@pytest.mark.parametrize("task, file, params, where, needle, kind", [
    ("jsonl", "bad_missing.jsonl", {"preset": "gsm8k"}, "bad_missing.jsonl:2", "missing field 'answer'", "missing_field"),
    ("jsonl", "bad_answer.jsonl", {"preset": "gsm8k"}, "bad_answer.jsonl:3", "unparsable reference answer", "bad_answer"),
    ("jsonl", "bad_json.jsonl", {"preset": "gsm8k"}, "bad_json.jsonl:2", "not a valid JSON object", "not_an_object"),
    ("csv", "bad_missing.csv", {}, "bad_missing.csv:3", "missing field 'answer'", "missing_field"),
    ("jsonl", "math_train.jsonl", {"preset": "math", "id": "uid"}, "math_train.jsonl:1", "missing field 'uid'",
     "missing_field"),
])
def test_bad_row_error_names_file_and_line(task, file, params, where, needle, kind):
    full = {"path": f"{DATA}/{file}", "heldout": 0, **params}
    with pytest.raises(DataError) as info:
        TASKS.get(task)(full)
    msg = str(info.value)
    assert msg.startswith(f"{DATA}/{where}: ") and needle in msg and "on_bad_row=skip" in msg and "\n" not in msg


def test_bad_rows_skipped_and_counted_once(caplog):
    caplog.set_level(logging.WARNING, logger="rlreason.tasks")
    t = TASKS.get("jsonl")({"path": f"{DATA}/bad_answer.jsonl", "preset": "gsm8k", "heldout": 0}, on_bad_row="skip")
    assert [s.answer for s in t.train] == ["1", "2"] and t.skipped == {"bad_answer": 2} and t.read == 4
    t = TASKS.get("jsonl")({"path": f"{DATA}/bad_json.jsonl", "preset": "gsm8k", "heldout": 0}, on_bad_row="skip")
    assert [s.answer for s in t.train] == ["1", "2"] and t.skipped == {"not_an_object": 2}
    t = TASKS.get("csv")({"path": f"{DATA}/bad_missing.csv", "heldout": 0}, on_bad_row="skip")
    assert [s.answer for s in t.train] == ["2", "6"] and t.skipped == {"missing_field": 1}
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 3 and "skipped 2 bad rows of 4 (bad_answer 2)" in msgs[0]


def test_all_rows_bad_is_an_error(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"q": 1}) + "\n")
    with pytest.raises(DataError, match="no usable training rows"):
        TASKS.get("jsonl")({"path": str(p)}, on_bad_row="skip")
