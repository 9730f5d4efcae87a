"""On-policy distillation (`rlreason/distill.py`, `algo.teacher`): the per-token reverse-KL advantage by hand,
training runs with the policy itself and with a perturbed copy as teacher, no teacher loaded when off, and a
teacher with another vocabulary refused."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlreason import build as build_module, train
from rlreason.build import build
from rlreason.config import ConfigError
from rlreason.config_load import load_config
from rlreason.distill import Teacher, distill_advantages
from rlreason.errors import ModelLoadError
from rlreason.policy import REPO_ROOT, load_model

SHIPPED = REPO_ROOT / "models" / "tiny-reasoner"
needs_shipped = pytest.mark.skipif(not SHIPPED.is_dir(), reason="shipped model not built yet")


def small(tmp_path, *extra):
    return load_config(None, [f"run.root={tmp_path}", "run.name=d", f"model.path={SHIPPED}", "rollout.prompts_per_step=4",
                              "rollout.group_size=4", "rollout.max_new_tokens=24", "train.lr=1e-3", "train.steps=2",
                              "data.eval_size=0", "log.progress=false", *extra])


def test_per_token_term_by_hand():
    student = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, -0.5, -0.5]])
    teacher = torch.tensor([[-0.5, -3.0, -9.0], [-1.5, 0.0, -2.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    adv = torch.tensor([1.0, -1.0])  # [N]: repeated over each sample's tokens
    out, term = distill_advantages(adv, student, teacher, mask, coef=0.5)
    # row 0: 0.5 * [0.5, -1.0, (masked)] = [0.25, -0.5, 0]; row 1: 0.5 * [-1.0, 0.5, -1.5] = [-0.5, 0.25, -0.75]
    assert torch.allclose(term, torch.tensor([[0.25, -0.5, 0.0], [-0.5, 0.25, -0.75]]))
    assert torch.allclose(out, torch.tensor([[1.25, 0.5, 0.0], [-1.5, -0.75, -1.75]]))
    only, _ = distill_advantages(adv, student, teacher, mask, coef=0.5, only=True)  # the reward's advantage zeroed
    assert torch.allclose(only, term)
    invalid, _ = distill_advantages(adv, student, teacher, mask, coef=0.5, valid=torch.tensor([True, False]))
    assert torch.allclose(invalid, torch.tensor([[1.25, 0.5, 0.0], [0.0, 0.0, 0.0]]))  # a sample not checked: 0
    per_token = torch.tensor([[2.0, 2.0, 2.0], [0.0, 1.0, 0.0]])  # [N, T] advantages (token-level estimators)
    out2, _ = distill_advantages(per_token, student, teacher, mask, coef=0.5)
    assert torch.allclose(out2, torch.tensor([[2.25, 1.5, 0.0], [-0.5, 1.25, -0.75]]))


def test_teacher_metrics_are_token_means():
    student = torch.tensor([[-1.0, -2.0, 0.0]])
    teacher = torch.tensor([[-0.5, -3.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    t = Teacher(torch.nn.Identity(), coef=2.0, only=False)
    _, stats = t.add(torch.tensor([0.0]), student, teacher, mask, None, tokens=2.0)
    # log pi_s - log pi_t over the 2 response tokens: (-0.5 + 1.0) / 2 = 0.25; the term: 2 * (0.5 - 1.0) / 2 = -0.5
    assert stats == pytest.approx({"distill/reverse_kl": 0.25, "distill/term_mean": -0.5})


def _rows(summary):
    lines = (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "loss/total" in r]


@needs_shipped
def test_self_distillation_has_zero_reverse_kl_at_the_first_step(tmp_path):
    rows = _rows(train(small(tmp_path, f"algo.teacher.path={SHIPPED}", "algo.teacher.coef=1.0")))
    assert [r["step"] for r in rows] == [1, 2]
    assert abs(rows[0]["distill/reverse_kl"]) < 1e-4  # the teacher is the sampling policy: log-ratios ~0
    assert abs(rows[0]["distill/term_mean"]) < 1e-4
    assert abs(rows[1]["distill/reverse_kl"]) > abs(rows[0]["distill/reverse_kl"])  # the student moved


@needs_shipped
def test_a_different_teacher_gives_a_term_and_trains_alone(tmp_path):
    model, tok = load_model(str(SHIPPED), device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(tmp_path / "teacher")
    tok.save_pretrained(tmp_path / "teacher")
    cfg = small(tmp_path, f"algo.teacher.path={tmp_path / 'teacher'}", "algo.teacher.only=true")
    summary = train(cfg)
    rows = _rows(summary)
    assert all(r["distill/reverse_kl"] > 0.01 for r in rows)  # a per-token reverse KL well away from 0
    assert all(r["distill/term_mean"] == pytest.approx(-r["distill/reverse_kl"]) for r in rows)  # coef 1
    after = load_model(str(Path(summary["run_dir"]) / "final"), device="cpu")[0].state_dict()
    before = load_model(str(SHIPPED), device="cpu")[0].state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the teacher's term alone trained the policy


@needs_shipped
def test_no_teacher_is_loaded_when_off(tmp_path, monkeypatch):
    loaded = []
    real = build_module.load_policy
    monkeypatch.setattr(build_module, "load_policy", lambda path, cfg: loaded.append(path) or real(path, cfg))
    parts = build(small(tmp_path))
    assert parts.teacher is None and loaded == [str(SHIPPED)]  # the policy only
    parts.engine.close()
    parts = build(small(tmp_path / "on", f"algo.teacher.path={SHIPPED}"))
    assert parts.teacher is not None and loaded[1:] == [str(SHIPPED), str(SHIPPED)]  # policy, then teacher
    assert not any(p.requires_grad for p in parts.teacher.model.parameters())  # never trained
    parts.engine.close()


@needs_shipped
def test_a_teacher_with_another_vocabulary_is_refused(tmp_path, rehearsal_model_dir):
    with pytest.raises(ModelLoadError, match=r"algo.teacher.path: .* another vocabulary"):
        build(small(tmp_path, f"algo.teacher.path={rehearsal_model_dir}"))


def test_teacher_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="algo.teacher.coef: must be > 0"):
        load_config(None, ["algo.teacher.path=some/model", "algo.teacher.coef=0"])
    with pytest.raises(ConfigError, match="algo.teacher.only: needs algo.teacher.path"):
        load_config(None, ["algo.teacher.only=true"])
