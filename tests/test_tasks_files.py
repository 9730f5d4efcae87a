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
    ("csv", "bad_missing.csv", {}, "bad_missing.csv:3", "empty answer (field 'answer' is blank)", "empty_answer"),
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
    assert [s.answer for s in t.train] == ["2", "6"] and t.skipped == {"empty_answer": 1}
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 3 and "skipped 2 bad rows of 4 (bad_answer 2)" in msgs[0]


def test_all_rows_bad_is_an_error(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text(json.dumps({"q": 1}) + "\n")
    with pytest.raises(DataError, match="no usable training rows"):
        TASKS.get("jsonl")({"path": str(p)}, on_bad_row="skip")


SKIP_HINT = " (set data.on_bad_row=skip to skip such rows)"


def write_bytes(tmp_path, name, lines):
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def load_both_ways(caplog, task, params):
    """(the DataError message with on_bad_row=error, the task loaded with skip, the skip warnings)."""
    with pytest.raises(DataError) as info:
        TASKS.get(task)(params)
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="rlreason.tasks")
    skipped = TASKS.get(task)(params, on_bad_row="skip")
    return str(info.value), skipped, [r.getMessage() for r in caplog.records]


def test_jsonl_row_not_utf8_names_file_line_and_byte(tmp_path, caplog):
    path = write_bytes(tmp_path, "d.jsonl", [b'{"question": "1+1", "answer": "2"}', b'{"question": "2+\xff", "answer": "4"}',
                                             b'{"question": "3+3", "answer": "6"}'])
    msg, t, warnings = load_both_ways(caplog, "jsonl", {"path": path, "heldout": 0})
    assert msg == f"{path}:2: not UTF-8 (byte 0xff at position 16)" + SKIP_HINT
    assert [s.answer for s in t.train] == ["2", "6"] and t.skipped == {"not_utf8": 1} and t.read == 3
    assert warnings == ["task 'jsonl': skipped 1 bad rows of 3 (not_utf8 1)"]


def test_csv_row_not_utf8_names_the_line_that_holds_the_byte(tmp_path, caplog):
    # the bad row spans lines 3-4 (a quoted field); the byte is on line 3
    path = write_bytes(tmp_path, "d.csv", [b"question,answer", b"1+1,2", b'"2+\xfe', b'2",4', b"3+3,6"])
    msg, t, warnings = load_both_ways(caplog, "csv", {"path": path, "heldout": 0})
    assert msg == f"{path}:3: not UTF-8 (byte 0xfe at position 3)" + SKIP_HINT
    assert [s.answer for s in t.train] == ["2", "6"] and t.skipped == {"not_utf8": 1}
    assert [s.meta["source"] for s in t.train] == [f"{path}:2", f"{path}:5"]
    assert warnings == ["task 'csv': skipped 1 bad rows of 3 (not_utf8 1)"]


def test_csv_header_not_utf8_or_unparsable_stops_even_with_skip(tmp_path):
    path = write_bytes(tmp_path, "h.csv", [b"qu\xe9stion,answer", b"1+1,2"])
    with pytest.raises(DataError) as info:
        TASKS.get("csv")({"path": path, "heldout": 0}, on_bad_row="skip")
    assert str(info.value) == f"{path}:1: header line is not UTF-8 (byte 0xe9 at position 2)"
    path = write_bytes(tmp_path, "big.csv", [b"question,answer", b"1+1,2", b"x" * 200_000 + b",3"])
    with pytest.raises(DataError) as info:
        TASKS.get("csv")({"path": path, "heldout": 0}, on_bad_row="skip")
    assert str(info.value) == f"{path}:3: not readable as CSV: field larger than field limit (131072)"


def test_parquet_row_not_utf8_names_row_and_field(tmp_path, caplog):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    raw = pa.array([b"1+1", b"2+\xff", b"3+3"])  # a string column holding bytes that are not UTF-8, as other writers can
    question = pa.Array.from_buffers(pa.string(), len(raw), raw.buffers())
    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"answer": ["2", "4", "6"], "question": question}), path)
    msg, t, warnings = load_both_ways(caplog, "parquet", {"path": path, "heldout": 0})
    assert msg == f"{path} row 2: not UTF-8 (byte 0xff at position 2 of field 'question')" + SKIP_HINT
    assert [(s.answer, s.meta["source"]) for s in t.train] == [("2", f"{path} row 1"), ("6", f"{path} row 3")]
    assert t.skipped == {"not_utf8": 1} and warnings == ["task 'parquet': skipped 1 bad rows of 3 (not_utf8 1)"]


def test_hf_rows_not_utf8_are_bad_rows_and_the_rest_still_load(tmp_path, caplog):
    lines = [json.dumps({"question": f"{i}+{i}", "answer": str(2 * i)}).encode() for i in range(1, 13)]
    lines[4] = b'{"question": "5+\xff", "answer": "10"}'
    lines[10] = b'{"question": "\xc3(", "answer": "22"}'  # an invalid continuation byte
    path = write_bytes(tmp_path, "d.jsonl", lines)
    params = {"name": "json", "data_files": path, "heldout": 0, "cache_dir": str(tmp_path / "cache")}
    msg, t, warnings = load_both_ways(caplog, "hf", params)
    assert msg == "json[train] row 5: not UTF-8 (byte 0xff at position 2 of field 'question')" + SKIP_HINT
    assert [s.answer for s in t.train] == [str(2 * i) for i in range(1, 13) if i not in (5, 11)]
    assert [s.id for s in t.train][3:5] == ["hf/row/3", "hf/row/5"]  # ids keep the row positions
    assert t.skipped == {"not_utf8": 2} and warnings == ["task 'hf': skipped 2 bad rows of 12 (not_utf8 2)"]


def test_utf8_text_across_read_chunks_is_read_as_before(tmp_path):
    """Many multi-byte characters (some split across the reader's chunks) are text, not bad bytes."""
    long = "é" * 9000 + "π 😀"
    path = tmp_path / "u.jsonl"
    path.write_text(json.dumps({"question": long, "answer": "1"}, ensure_ascii=False) + "\n"
                    + json.dumps({"question": "ü", "answer": "2"}, ensure_ascii=False) + "\n", encoding="utf-8")
    t = TASKS.get("jsonl")({"path": str(path), "heldout": 0})
    assert [s.meta["question"] for s in t.train] == [long, "ü"] and not t.skipped


@pytest.mark.parametrize("task, lines, where, problem", [
    ("jsonl", [b'{"question": "   ", "answer": "1"}'], "1", "empty question (field 'question' is blank)"),
    ("jsonl", [b'{"question": "", "answer": "1"}'], "1", "empty question (field 'question' is blank)"),
    ("jsonl", [b'{"question": "1+1", "answer": " \\n "}'], "1", "empty answer (field 'answer' is blank)"),
    ("jsonl", [b'{"question": "1+1", "answer": "2", "uid": ""}'], "1", "empty id (field 'uid' is blank)"),
    ("jsonl", [b'{"answer": "2"}'], "1", "missing field 'question' (row has: answer)"),
    ("csv", [b"question,answer", b" ,2"], "2", "empty question (field 'question' is blank)"),
])
def test_blank_fields_are_bad_rows(tmp_path, task, lines, where, problem):
    path = write_bytes(tmp_path, f"d.{task}", lines)
    params = {"path": path, "heldout": 0, **({"id": "uid"} if b"uid" in lines[0] else {})}
    with pytest.raises(DataError) as info:
        TASKS.get(task)(params)
    assert str(info.value) == f"{path}:{where}: {problem}" + SKIP_HINT


def test_blank_questions_and_answers_skipped_and_counted(tmp_path, caplog):
    rows = [{"question": "1+1", "answer": "2"}, {"question": "  \t", "answer": "3"}, {"question": "", "answer": "4"},
            {"question": "2+2", "answer": ""}, {"question": "3+3", "answer": 6}]
    path = write_bytes(tmp_path, "d.jsonl", [json.dumps(r).encode() for r in rows])
    msg, t, warnings = load_both_ways(caplog, "jsonl", {"path": path, "heldout": 0})
    assert msg == f"{path}:2: empty question (field 'question' is blank)" + SKIP_HINT
    assert [(s.meta["question"], s.answer) for s in t.train] == [("1+1", "2"), ("3+3", "6")]
    assert t.skipped == {"empty_answer": 1, "empty_question": 2}
    assert warnings == ["task 'jsonl': skipped 3 bad rows of 5 (empty_answer 1, empty_question 2)"]


# ----------------------------------------------------------------------------- references that are whole solutions


@pytest.mark.parametrize("params, hint", [
    ({"path": f"{DATA}/gsm8k_train.jsonl"}, "(#### markers), not final answers; did you mean data.params.preset: gsm8k"),
    ({"path": f"{DATA}/math_train.jsonl", "question": "problem", "answer": "solution"},
     r"(\boxed{} in the text), not final answers; did you mean data.params.preset: math"),
])
def test_solution_like_references_warn_naming_the_preset(params, hint, caplog):
    with caplog.at_level(logging.WARNING, logger="rlreason.tasks"):
        TASKS.get("jsonl")({**params, "heldout": 0})
    (line,) = [r.getMessage() for r in caplog.records if "full solutions" in r.getMessage()]
    assert line.startswith(f"data.params.path {params['path']}: reference answers look like full solutions ")
    assert hint in line


def test_final_answers_and_presets_do_not_warn(caplog, tmp_path):
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps({"question": f"q{i}", "answer": f"Add {i} and 3 to get {i + 3}, then times 2 "
                                        f"gives {2 * i + 6} as the final result of it all."}) + "\n" for i in range(4)))
    with caplog.at_level(logging.WARNING, logger="rlreason.tasks"):
        TASKS.get("jsonl")(GSM)
        TASKS.get("jsonl")({"path": f"{DATA}/math_train.jsonl", "preset": "math"})
        TASKS.get("csv")({"path": f"{DATA}/plain.csv", "question": "prompt", "answer": "target", "heldout": 0})
        assert not [r for r in caplog.records if "full solutions" in r.getMessage()]
        TASKS.get("jsonl")({"path": str(long), "heldout": 0})
    assert "(long text with many numbers)" in caplog.records[-1].getMessage()
