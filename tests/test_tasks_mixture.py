"""Mixtures: sampling proportions, determinism, entry names and eval sizes, templates, prompt-length checks."""
from __future__ import annotations

import itertools
import math

import pytest

from rlreason.config_load import load_config
from rlreason.tasks.mixture import build_task

MIX = ("data.mixture=[{task: arithmetic, weight: 3}, "
       "{task: jsonl, name: gsm, weight: 1, params: {path: tests/data/gsm8k_train.jsonl, preset: gsm8k, "
       "eval_path: tests/data/gsm8k_test.jsonl}}, "
       "{task: reasoning_gym, name: legs, weight: 1, eval_size: 2, params: {dataset: leg_counting}}]")


def test_mixture_proportions_and_determinism():
    cfg = load_config(None, [MIX])
    task = build_task(cfg.data, seed=0)
    n = 5000
    names = [s.task for s in itertools.islice(task.train_samples(), n)]
    for name, p in (("arithmetic", 0.6), ("gsm", 0.2), ("legs", 0.2)):
        frac = names.count(name) / n
        assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n), (name, frac)  # 4 standard errors
    again = [s.task for s in itertools.islice(build_task(cfg.data, seed=0).train_samples(), 300)]
    assert again == names[:300]
    assert [s.task for s in itertools.islice(build_task(cfg.data, seed=1).train_samples(), 300)] != names[:300]


def test_mixture_eval_names_and_sizes():
    cfg = load_config(None, [MIX, "data.eval_size=3"])
    task = build_task(cfg.data, seed=0)
    ev = task.eval_samples(cfg.data.eval_size)
    assert [s.task for s in ev] == ["arithmetic"] * 3 + ["gsm"] * 3 + ["legs"] * 2  # per-entry caps
    assert [e.name for e in task.entries] == ["arithmetic", "gsm", "legs"]


