"""`rlreason plot`: synthetic run directories -> a PNG of the panels with something to show, overlays, errors."""
import json

import pytest

from rlreason.cli import main
from rlreason.plot import PANELS, moving_average, plot_runs, read_metrics


def make_run(root, name, steps=12, kl=True, extra_lines=(), pass_k=False):
    d = root / name
    d.mkdir(parents=True)
    sampled = {"eval/pass@1": 0.3, "eval/pass@4": 0.7} if pass_k else {}
    lines = [{"step": 0, "eval/accuracy": 0.4, "eval/size": 8, **sampled}]
    for s in range(1, steps + 1):
        rec = {"step": s, "reward/mean": s / steps, "rollout/response_length": 20 - s / 2,
               "policy/entropy": 1.0 / s, "policy/clipfrac": 0.0, "loss/policy": "nan" if s == 3 else 0.1}
        if kl:
            rec["policy/kl"] = 0.01 * s if s != 5 else "inf"
        lines.append(rec)
    lines.append({"step": steps, "eval/accuracy": 0.6, "eval/size": 8, **sampled})
    extra = b"".join(x if isinstance(x, bytes) else x.encode() for x in extra_lines)
    (d / "metrics.jsonl").write_bytes("".join(json.dumps(x) + "\n" for x in lines).encode() + extra)
    return d


def test_read_metrics_skips_non_finite_and_keeps_eval_lines(tmp_path):
    d = make_run(tmp_path, "a", extra_lines=['{"step": 13, "reward/me'])  # half-written last line: ignored
    m = read_metrics(d)
    assert m["eval/accuracy"] == [(0, 0.4), (12, 0.6)]
    assert len(m["reward/mean"]) == 12 and 5 not in dict(m["policy/kl"])  # "inf" skipped
    assert 3 not in dict(m["loss/policy"])  # "nan" skipped


def test_read_metrics_errors_name_the_file_and_bad_lines_are_skipped(tmp_path):
    from rlreason.plot import PlotError

    with pytest.raises(PlotError, match="metrics.jsonl: no such file"):
        read_metrics(tmp_path)
    d = make_run(tmp_path, "bad", extra_lines=["garbage\n", '{"step": 99, "reward/mean": 0.5}\n', b"\xff\n"])
    warned = []
    m = read_metrics(d, warn=warned.append)  # bad lines are skipped and reported in one line; good ones kept
    assert dict(m["reward/mean"])[99] == 0.5
    assert len(warned) == 1 and warned[0].startswith("skipped 2 line(s) that are not metric records: ")
    assert "metrics.jsonl line 15" in warned[0]


def test_moving_average():
    assert moving_average([1, 3, 5], 2) == [1, 2, 4]
    assert moving_average([2, 4, 6, 8], 3) == [2, 3, 4, 6]
    assert moving_average([5.0], 10) == [5.0]


def test_plot_two_runs_png(tmp_path):
    a = make_run(tmp_path, "run_a", pass_k=True)  # its pass@4 is drawn dashed beside the greedy accuracy
    b = make_run(tmp_path, "run_b", kl=False)
    out = tmp_path / "out" / "curves.png"
    drawn, skipped = plot_runs([str(a), str(b)], str(out), smooth=3)
    # clip fraction is 0.0 in every record: left out, named with its reason
    assert list(drawn) == [t for t, _, _ in PANELS if t != "clip fraction"]
    assert skipped == {"clip fraction": "constant 0"}
    assert drawn["training reward (mean)"] == ["run_a", "run_b"]
    assert drawn["held-out accuracy (eval)"] == ["run_a", "run_b"]
    assert drawn["KL to reference"] == ["run_a"]  # run_b logged no KL
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(data) < 200_000


def test_panels_with_nothing_to_show_are_left_out_and_cli(tmp_path, capsys):
    a = make_run(tmp_path / "x", "same", kl=False)
    b = make_run(tmp_path / "y", "same", kl=False)
    out = tmp_path / "p.png"
    assert main(["plot", str(a), str(b), "-o", str(out)]) == 0
    msg = capsys.readouterr().out
    assert msg.strip() == (f"wrote {out}: 4 panels, 2 run(s); left out: KL to reference (no run logged policy/kl), "
                           "clip fraction (constant 0)")
    drawn, _ = plot_runs([str(a), str(b)], str(out))
    assert drawn["entropy (nats/token)"] == ["x/same", "y/same"] and out.stat().st_size > 0
    assert main(["plot", str(tmp_path / "nope"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rlreason: error:") and "nope" in err and err.strip().count("\n") == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.jsonl").write_text('{"step": 1, "reward/mean": 0.5}\n{"step": 2, "reward/mean": 0.5}\n')
    assert main(["plot", str(empty), "-o", str(out)]) == 2
    assert "nothing to plot in" in capsys.readouterr().err
