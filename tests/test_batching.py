"""rlreason.batching: the train batch holds each completion's tokens and engine log-probs under its loss mask."""
from types import SimpleNamespace

import torch

from rlreason.batching import make_train_batch
from rlreason.rewards import compute_rewards
from rlreason.rollout.hf import HFEngine
from rlreason.tasks import TASKS


def test_rewards_and_batch_layout(tiny):
    model, tok = tiny
    task = TASKS.get("arithmetic")({}, seed=0)
    rollout = HFEngine(model, tok).generate(task.eval_samples(2), n=2, max_new_tokens=5)
    terms = [SimpleNamespace(**t) for t in TASKS.get("arithmetic").default_rewards]  # the config default: the task's terms
    out = compute_rewards(rollout, terms)
    total, per_term = out.total, out.per_term
    assert len(total) == 4 and set(per_term) == {"math_answer", "format"}
    batch = make_train_batch(rollout, torch.zeros(4), tok.pad_token_id)
    for i, c in enumerate(rollout.completions):
        assert int(batch.loss_mask[i].sum()) == len(c.token_ids)
        pos = batch.loss_mask[i].nonzero().flatten()
        assert batch.input_ids[i, pos].tolist() == c.token_ids
        torch.testing.assert_close(batch.old_logp[i, pos], torch.tensor(c.logprobs))
