"""One micro-batch invariance check shared by the aggregation tests."""
import torch


def assert_split_invariant(agg, w0, mask, totals, splits):
    """Summing `agg` over row splits (with whole-step `totals`) gives the full value and gradients.

    The per-token loss is w**2. Returns the full-batch gradient of w for further hand checks.
    """
    w_full = w0.clone().requires_grad_(True)
    full = agg(w_full ** 2, mask, totals)
    full.backward()
    w_mb = w0.clone().requires_grad_(True)
    total = torch.zeros(())
    for idx in splits:
        idx = torch.tensor(idx)
        share = agg(w_mb[idx] ** 2, mask[idx], totals)
        share.backward()
        total = total + share.detach()
    torch.testing.assert_close(total, full.detach(), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(w_mb.grad, w_full.grad, atol=1e-7, rtol=1e-6)
    return w_full.grad
