"""Nucleus sampling of the transformers backend: draws follow the nucleus distribution exactly,
whether the nucleus lies among the candidate tokens or a flat row needs the whole vocabulary."""

from __future__ import annotations

import pytest
import torch

from humpback.engines.transformers_engine import PerRequestSampler


def reference(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The nucleus distribution, written out plainly: sort, keep while the mass before is < top_p."""
    probs = torch.softmax(logits / temperature, dim=-1)
    order = probs.argsort(descending=True)
    out, mass = torch.zeros_like(probs), 0.0
    for t in order.tolist():
        if mass >= top_p:
            break
        out[t], mass = probs[t], mass + float(probs[t])
    return out / out.sum()


def draws(logits: torch.Tensor, n: int, temperature: float, top_p: float, candidates: int) -> torch.Tensor:
    sampler = PerRequestSampler(range(n), temperature, top_p, "cpu")
    sampler.candidates = candidates
    scores = logits.expand(n, -1).clone()
    out = sampler(torch.zeros((n, 1), dtype=torch.long), scores)
    assert ((out == 0).sum(-1) == 1).all()  # one token left for greedy decoding to pick, per row
    return torch.bincount(out.argmax(-1), minlength=logits.numel()).float() / n


@pytest.mark.parametrize(("logits", "top_p"), [
    ([4.0, 3.5, 3.0, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0], 0.9),  # nucleus within 3 candidates
    ([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1], 0.9),  # flat: reaches past them
    ([0.5, 2.0, -1.0, 3.0, 1.5, 0.0, -2.0, 2.5, 1.0, -0.5, 0.2, 0.1], 0.5),  # unsorted vocabulary order
    ([0.5, 2.0, -1.0, 3.0, 1.5, 0.0, -2.0, 2.5, 1.0, -0.5, 0.2, 0.1], 1.0),  # no nucleus cut
])
def test_draws_follow_the_nucleus_distribution(logits, top_p):
    logits = torch.tensor(logits)
    expected = reference(logits, 0.7, top_p)
    got = draws(logits, 6000, 0.7, top_p, candidates=3)
    assert (got[expected == 0] == 0).all()  # nothing outside the nucleus, ever
    assert torch.allclose(got, expected, atol=0.025), (got, expected)


def test_each_row_draws_from_its_own_seed():
    logits = torch.randn(50)
    a = PerRequestSampler([1, 2, 3], 1.0, 0.95, "cpu")(None, logits.expand(3, -1).clone()).argmax(-1)
    b = PerRequestSampler([9, 2, 7], 1.0, 0.95, "cpu")(None, logits.expand(3, -1).clone()).argmax(-1)
    assert a[1] == b[1]  # same seed, same draw, whatever the other rows


def test_a_flat_row_elsewhere_in_the_batch_does_not_change_a_draw():
    """A flat row makes the whole step search the full vocabulary; the other rows must draw the same."""
    # a vocabulary of 5,000: the full vector and the candidates differ in length by far
    peaked = torch.cat([torch.tensor([4.0, 3.5, 3.0, 1.0, 0.5]), torch.full((4995,), -20.0)])[torch.randperm(5000, generator=torch.Generator().manual_seed(0))]
    flat = torch.zeros(5000)
    seeds = list(range(200))
    picks = {}
    for name, other in (("alone", peaked), ("beside a flat row", flat)):
        sampler = PerRequestSampler([s for seed in seeds for s in (seed, 10_000 + seed)], 0.7, 0.9, "cpu")
        sampler.candidates = 3
        scores = torch.stack([row for _ in seeds for row in (peaked, other)])
        picks[name] = sampler(None, scores).argmax(-1)[0::2]
    assert len(set(picks["alone"].tolist())) > 1  # the draws vary: a real comparison
    assert torch.equal(picks["alone"], picks["beside a flat row"])
