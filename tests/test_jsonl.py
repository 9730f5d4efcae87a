"""rlreason.jsonl: strict parsing of user files; tolerant reading of a run's own metrics/samples logs."""
from __future__ import annotations

import pytest

from rlreason.jsonl import json_objects, read_records


def test_read_records_skips_and_reports_every_bad_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"\n".join([
        b'{"step": 1, "reward/mean": 0.5}',
        b"",
        b"   ",
        b'{"step": 2, "text": "caf\xc3\xa9"}',
        b'{"step": 2, "bad": "\xff"}',
        b"[1, 2, 3]",
        b'{"step": "8"}',
        b'{"step": 1.5}',
        b'{"step": true}',
        b'{"reward/mean": 1}',
        b"NaN garbage",
        b'{"step": 3}\r',
        b'{"step": 4, "eval/acc',
    ]))
    records, bad = read_records(path)
    assert records == [{"step": 1, "reward/mean": 0.5}, {"step": 2, "text": "café"}, {"step": 3}]
    assert bad == [
        f"{path} line 5: not UTF-8 (byte 0xff at column 21)",
        f"{path} line 6: expected a JSON object",
        f"{path} line 7: 'step' is \"8\", not an integer",
        f"{path} line 8: 'step' is 1.5, not an integer",
        f"{path} line 9: 'step' is true, not an integer",
        f"{path} line 10: no 'step'",
        f"{path} line 11: not JSON (Extra data: line 1 column 5 (char 4))",
        f"{path} line 13: not JSON (Unterminated string starting at: line 1 column 13 (char 12))",
    ]


def test_read_records_of_a_clean_log_and_a_missing_one(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"step": 2, "rows": []}\n{"step": 4, "rows": [{"reward": 1.0}]}\n')
    assert read_records(path) == ([{"step": 2, "rows": []}, {"step": 4, "rows": [{"reward": 1.0}]}], [])
    assert read_records(str(path))[0][1]["step"] == 4
    with pytest.raises(FileNotFoundError):
        read_records(tmp_path / "missing.jsonl")


def test_json_objects_stays_strict():
    rows = list(json_objects(['{"id": 1}\n', "\n", '{"id": 2}\n'], "in.jsonl"))
    assert rows == [(1, "in.jsonl line 1", {"id": 1}), (3, "in.jsonl line 3", {"id": 2})]
    with pytest.raises(ValueError, match=r"^in.jsonl line 2: not JSON \(Expecting value"):
        list(json_objects(['{"id": 1}', "nope"], "in.jsonl"))
    with pytest.raises(ValueError, match=r"^in.jsonl line 1: expected a JSON object$"):
        list(json_objects(["[1]"], "in.jsonl"))
