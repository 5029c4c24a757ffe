"""Codebook usage, entropy and perplexity: overall, per token position, per sub-codebook."""

from __future__ import annotations

import math

import pytest
import torch

from tokenizers_vis.metrics.usage import CodebookUsage, codebook_usage, entropy_bits


def _known_ids() -> torch.Tensor:
    # 4 images, 3 positions, 2 sub-codebooks (vocab 4 and 2).
    # position 0: codebook 0 always code 1; codebook 1 codes 0, 1, 0, 1
    # position 1: codebook 0 codes 0, 1, 2, 3 (uniform); codebook 1 always 0
    # position 2: codebook 0 codes 0, 0, 1, 1; codebook 1 always 1
    first = torch.tensor([[1, 1, 1, 1], [0, 1, 2, 3], [0, 0, 1, 1]]).T  # (b n)
    second = torch.tensor([[0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]]).T
    return torch.stack([first, second], dim=-1)  # (4 3 2)


def test_known_values_per_position():
    stats = codebook_usage(_known_ids(), (4, 2))
    expected_entropy = torch.tensor([[0.0, 1.0], [2.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(stats["entropy_per_position"], expected_entropy)
    torch.testing.assert_close(stats["perplexity_per_position"], 2**expected_entropy)
    expected_usage = torch.tensor([[0.25, 1.0], [1.0, 0.5], [0.5, 0.5]], dtype=torch.float64)
    torch.testing.assert_close(stats["usage_per_position"], expected_usage)
    assert stats["tokens_per_position"].tolist() == [4, 4, 4]
    # Overall, codebook 0: counts [3, 7, 1, 1] of 12; codebook 1: [6, 6].
    h0 = -sum(p * math.log2(p) for p in (3 / 12, 7 / 12, 1 / 12, 1 / 12))
    torch.testing.assert_close(stats["entropy"], torch.tensor([h0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(stats["usage"], torch.ones(2, dtype=torch.float64))
    assert stats["num_tokens"] == 12
    assert stats["perplexity_mean"] == pytest.approx((2**h0 + 2) / 2)


def test_streaming_equals_one_shot_and_lengths_mask():
    ids = _known_ids()
    halves = CodebookUsage((4, 2))
    halves.update(ids[:2])
    halves.update(ids[2:])
    oneshot = codebook_usage(ids, (4, 2))
    assert torch.equal(halves.compute()["entropy_per_position"], oneshot["entropy_per_position"])

    meter = CodebookUsage((4, 2))
    meter.update(ids[:1, :2])  # image 0 shows 2 tokens, in a shorter batch: positions grow later
    meter.update(ids[1:])
    meter.update(ids[:1, 2:], lengths=torch.tensor([0]))  # nothing valid: no change
    masked = codebook_usage(ids, (4, 2), lengths=torch.tensor([2, 3, 3, 3]))
    streamed = meter.compute()
    for key in ("entropy_per_position", "usage_per_position", "tokens_per_position", "entropy"):
        assert torch.equal(streamed[key], masked[key]), key
    assert masked["tokens_per_position"].tolist() == [4, 4, 3]


def test_uniform_codes_reach_full_perplexity_and_unseen_positions_are_nan():
    ids = torch.arange(8).reshape(8, 1, 1)  # (b=8, n=1, g=1): every code once
    stats = codebook_usage(ids, (8,), lengths=None)
    assert stats["perplexity"].item() == pytest.approx(8.0)
    masked = codebook_usage(torch.zeros(2, 3, 1, dtype=torch.long), (8,), torch.tensor([1, 1]))
    assert torch.isnan(masked["entropy_per_position"][1:]).all()
    assert masked["usage_per_position"][1:].eq(0).all()
    assert torch.isnan(entropy_bits(torch.zeros(3))).item()


def test_overall_only_and_validation():
    stats = CodebookUsage((4, 2), per_position=False)
    stats.update(_known_ids())
    out = stats.compute()
    assert "usage_per_position" not in out and out["num_tokens"] == 12
    with pytest.raises(ValueError, match="outside"):
        codebook_usage(torch.full((1, 1, 1), 4), (4,))
    with pytest.raises(ValueError, match="expected ids"):
        codebook_usage(torch.zeros(1, 2, dtype=torch.long), (4,))
