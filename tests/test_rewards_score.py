"""rlreason.rewards.score: every term's value and the total per row.

As run by `rlreason score TASK --completions FILE.jsonl [--out FILE.jsonl]`.
"""
from __future__ import annotations

import json
import os

import pytest

from rlreason.cli import main
from rlreason.tasks import TASKS

DATA = os.path.join(os.path.dirname(__file__), "data", "code_tasks.jsonl")


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def test_score_arithmetic_by_index_and_id(tmp_path, capsys):
    samples = TASKS.get("arithmetic")().eval_samples(3)
    rows = [
        {"index": 0, "completion": f"<think>work</think>\\boxed{{{samples[0].answer}}}"},
        {"id": samples[1].id, "completion": "no idea"},
        {"index": 2, "completion": f"the answer is {samples[2].answer}"},
    ]
    out = tmp_path / "scored.jsonl"
    assert main(["score", "arithmetic", "--completions", write_jsonl(tmp_path / "in.jsonl", rows), "--out", str(out)]) == 0
    scored = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["terms"] for r in scored] == [{"math_answer": 1.0, "format": 1.0}, {"math_answer": 0.0, "format": 0.0},
                                            {"math_answer": 1.0, "format": 0.0}]
    assert [r["total"] for r in scored] == pytest.approx([1.1, 0.0, 1.0])
    assert [r["id"] for r in scored] == [s.id for s in samples] and [r["line"] for r in scored] == [1, 2, 3]
    assert "scored 3 completions" in capsys.readouterr().err


def test_score_code_task_with_params_to_stdout(tmp_path, capsys):
    rows = [{"id": "add", "completion": "```python\ndef add(a, b):\n    return a + b\n```"},
            {"id": "sum_line", "completion": "```python\nprint(0)\n```"}]
    code = main(["score", "code_jsonl", f"path={DATA}", "--completions", write_jsonl(tmp_path / "in.jsonl", rows)])
    assert code == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["terms"]["code_tests"], r["total"]) for r in scored] == [("add", 1.0, 1.0), ("sum_line", 0.0, 0.0)]


@pytest.mark.parametrize(
    "rows,message",
    [
        (['{"index": 0, "completion": "1"}', "{oops"], "in.jsonl line 2: not JSON"),
        ([{"index": 0}], "in.jsonl line 1: needs a 'completion' string"),
        ([{"completion": "1"}], "line 1: give exactly one of 'id' or 'index'"),
        ([{"index": -1, "completion": "1"}], "line 1: 'index' must be an integer >= 0"),
        ([{"index": 0, "completion": "1"}, {"id": "arithmetic/heldout/x", "completion": "1"}],
         "line 2: no sample with id 'arithmetic/heldout/x'"),
        ([{"index": 0, "completion": "1", "token_ids": "abc"}], "line 1: 'token_ids' must be a list of integers"),
        ([], "in.jsonl: no rows"),
    ],
)
def test_bad_rows_are_one_line_errors(tmp_path, capsys, rows, message):
    code = main(["score", "arithmetic", "--completions", write_jsonl(tmp_path / "in.jsonl", rows), "--eval-size", "20"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("rlreason: error: ") and message in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err


def test_skip_unknown_scores_the_rest_and_counts_the_skipped(tmp_path, capsys):
    samples = TASKS.get("arithmetic")().eval_samples(2)
    rows = [{"id": samples[0].id, "completion": f"\\boxed{{{samples[0].answer}}}"},
            {"id": "arithmetic/heldout/nope", "completion": "1"},
            {"id": samples[1].id, "completion": "no idea"},
            {"id": "other/3", "completion": "2"}]
    path = write_jsonl(tmp_path / "in.jsonl", rows)
    assert main(["score", "arithmetic", "--completions", path, "--eval-size", "20"]) == 2  # stops at line 2
    assert "line 2: no sample with id 'arithmetic/heldout/nope'" in capsys.readouterr().err
    assert main(["score", "arithmetic", "--completions", path, "--eval-size", "20", "--skip-unknown"]) == 0
    out, err = capsys.readouterr()
    scored = [json.loads(line) for line in out.splitlines()]
    assert [(r["line"], r["id"], r["terms"]["math_answer"]) for r in scored] == [(1, samples[0].id, 1.0),
                                                                                  (3, samples[1].id, 0.0)]
    assert "scored 2 completions" in err and "skipped 2 rows naming no held-out sample (--skip-unknown): lines 2, 4" in err
    none = write_jsonl(tmp_path / "none.jsonl", [rows[1]])
    assert main(["score", "arithmetic", "--completions", none, "--eval-size", "20", "--skip-unknown"]) == 2
    assert "none of its 1 rows names a held-out sample of task 'arithmetic' (searched 20)" in capsys.readouterr().err


def test_bad_task_params_and_missing_files(tmp_path, capsys):
    assert main(["score", "arithmetic", "--completions", str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    path = write_jsonl(tmp_path / "in.jsonl", [{"index": 0, "completion": "1"}])
    assert main(["score", "arithmetic", "max_digits=99", "--completions", path]) == 2
    assert "max_digits" in capsys.readouterr().err
    assert main(["score", "nosuchtask", "--completions", path]) == 2
    assert "unknown task 'nosuchtask'" in capsys.readouterr().err


def test_failing_term_names_the_line():
    """A term that fails on a row (here: the sample has no answer) is reported with that row's line."""
    from types import SimpleNamespace as T

    from rlreason.rewards.score import parse_rows, score_rows
    from rlreason.types import Sample

    samples = [Sample(id="q", task="t", prompt="p", answer=None)]
    rows = parse_rows(['', '{"id": "q", "completion": "\\\\boxed{1}"}'], "in.jsonl")
    with pytest.raises(ValueError, match="in.jsonl line 2: reward term 'math_answer' failed"):
        score_rows(rows, samples, [T(name="math_answer", weight=1.0, params={})], "in.jsonl")
