"""Sampling: the inverse-CDF draw follows the distribution and never picks a code of probability 0;
top-k by selection keeps exactly the k largest."""
from __future__ import annotations

import torch

from tsbench.engine.sampling import SamplingConfig, draw, filter_logits, sample


def test_draw_follows_the_distribution_and_skips_zero_probability_codes() -> None:
    probs = torch.tensor([[0.0, 0.2, 0.0, 0.5, 0.3, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    generator = torch.Generator().manual_seed(0)
    codes = torch.stack([draw(probs, generator) for _ in range(20000)])
    share = torch.bincount(codes[:, 0], minlength=6) / len(codes)
    torch.testing.assert_close(share, probs[0], atol=0.015, rtol=0)
    assert share[[0, 2, 5]].sum() == 0
    assert (codes[:, 1] == 5).all()


def test_draw_at_the_top_of_the_unit_interval_stays_on_a_possible_code(monkeypatch) -> None:
    """The largest u torch.rand gives, against a distribution that does not sum to exactly 1 and ends in
    codes of probability 0: the draw lands on the last possible code, never past it."""
    monkeypatch.setattr(torch, "rand", lambda *shape, **kw: torch.full(shape, 1.0 - 2**-24, dtype=kw["dtype"]))
    for total in (0.75, 0.99999994, 1.0000001, 0.6):
        probs = torch.tensor([[0.4 * total, 0.6 * total, 0.0, 0.0]])
        assert draw(probs, torch.Generator()).item() == 1


def test_top_k_keeps_the_k_largest() -> None:
    logits = torch.randn(2, 3, 500)
    kept = filter_logits(logits, SamplingConfig(top_k=7)).isfinite()
    assert (kept.sum(-1) == 7).all()
    assert torch.equal(kept, logits >= logits.topk(7, dim=-1).values[..., -1:])


def test_rows_use_their_own_generator() -> None:
    logits = torch.randn(2, 4, 64)
    both = sample(logits, SamplingConfig(), [torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    alone = sample(logits[1:], SamplingConfig(), [torch.Generator().manual_seed(2)])
    assert torch.equal(both[1:], alone)
