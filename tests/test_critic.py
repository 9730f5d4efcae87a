"""rlreason.critic: the clipped value loss by hand, and the value model's causal alignment with the log-probs."""
from __future__ import annotations

import torch

from rlreason.critic import ValueModel, value_loss


def test_value_loss_by_hand():
    """0.5 * max((V-R)^2, (V_old + clip(V - V_old, -c, c) - R)^2)."""
    v = torch.tensor([[1.5, 0.5, 1.05]], requires_grad=True)
    old = torch.tensor([[1.0, 1.0, 1.0]])
    ret = torch.tensor([[2.0, 0.0, 1.0]])
    mask = torch.ones(1, 3)
    loss, stats = value_loss(v, old, ret, mask, 0.2)
    # tok 0: unclipped (1.5-2)^2=.25, clipped V=1.2 -> (1.2-2)^2=.64 -> .32 (clipped active)
    # tok 1: unclipped (.5-0)^2=.25, clipped V=.8 -> .64 -> .32 (clipped active)
    # tok 2: unclipped .0025, clipped (inside the range) .0025 -> .00125
    torch.testing.assert_close(loss, torch.tensor([[0.32, 0.32, 0.00125]]))
    assert float(stats["critic/vf_clipfrac"]) == 2.0
    loss.sum().backward()
    torch.testing.assert_close(v.grad, torch.tensor([[0.0, 0.0, 0.05]]))  # clipped terms pass no gradient
    loss0, _ = value_loss(v, old, ret, mask, 0.0)
    torch.testing.assert_close(loss0, torch.tensor([[0.125, 0.125, 0.00125]]))


def test_value_model_is_causal_and_aligned_with_logprobs(tiny):
    """values[:, t] depends only on tokens < t (the state in which token t is chosen); values[:, 0] = 0."""
    model, _ = tiny
    torch.manual_seed(0)
    critic = ValueModel(model.base_model, model.config.hidden_size)
    torch.nn.init.normal_(critic.head.weight)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    attn = torch.ones_like(ids)
    with torch.no_grad():
        v = critic(ids, attn)
        v2 = critic(changed := ids.clone().index_fill_(1, torch.tensor([3]), 20), attn)
    assert v.shape == (1, 5) and float(v[0, 0]) == 0.0
    torch.testing.assert_close(v2[0, :4], v[0, :4])  # token 3 changed: values up to position 3 unchanged
    assert not torch.allclose(v2[0, 4], v[0, 4])
