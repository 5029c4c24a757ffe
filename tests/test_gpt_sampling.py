"""Sampling: the KV cache equals full recomputation, CFG at scale 1 equals the conditional model,
top-k / top-p / temperature, reproducibility, and k < K tokens decode into images."""

from __future__ import annotations

import pytest
import torch
from test_gpt import VOCABS, random_ids, tiny_gpt

from generation.sampling import (
    check_compatible,
    filter_logits,
    generate,
    guidance_scale,
    sample_images,
    sample_logits,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", VOCABS)
def test_kv_cache_features_equal_full_recompute(kind: str) -> None:
    vocabs = VOCABS[kind]
    gpt = tiny_gpt(vocabs)
    ids, labels = random_ids(vocabs), torch.tensor([2, gpt.null_class])
    full = gpt.hidden(ids[:, :-1], labels)  # (b 8 w)
    cache = gpt.new_cache()
    steps = [gpt.hidden(ids[:, :t], labels, cache) for t in range(8)]  # one position each
    assert all(s.shape[1] == 1 for s in steps) and cache.length == 8
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=1e-5, atol=1e-5)
    # A warm cache extended by several positions at once (the masked path) agrees too.
    cache = gpt.new_cache()
    first = gpt.hidden(ids[:, :2], labels, cache)  # positions 0..2
    rest = gpt.hidden(ids[:, :7], labels, cache)  # positions 3..7
    torch.testing.assert_close(torch.cat([first, rest], 1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", VOCABS)
@pytest.mark.parametrize(
    "options",
    [{}, {"cfg_scale": 3.0, "top_k": 4}, {"cfg_scale": 2.0, "cfg_schedule": "linear_down"}],
)
def test_kv_cache_tokens_equal_full_recompute(kind: str, options: dict) -> None:
    gpt = tiny_gpt(VOCABS[kind])
    labels = torch.tensor([0, 1, 2, gpt.null_class])
    cached = generate(gpt, 8, labels, generator=seeded(), **options)
    full = generate(gpt, 8, labels, use_cache=False, generator=seeded(), **options)
    assert cached.shape == (4, 8, len(VOCABS[kind])) and cached.dtype == torch.long
    assert torch.equal(cached, full)
    for j, v in enumerate(VOCABS[kind]):
        assert 0 <= int(cached[..., j].min()) and int(cached[..., j].max()) < v


@pytest.mark.parametrize("kind", VOCABS)
def test_cfg_scale_one_equals_conditional(kind: str) -> None:
    """Scale 1 runs the null branch too (a 2b batch) and must give the unguided tokens."""
    gpt = tiny_gpt(VOCABS[kind])
    labels = torch.tensor([0, 1, 2])
    plain = generate(gpt, 8, labels, generator=seeded(1))
    assert torch.equal(generate(gpt, 8, labels, cfg_scale=1.0, generator=seeded(1)), plain)
    assert not torch.equal(generate(gpt, 8, labels, cfg_scale=4.0, generator=seeded(1)), plain)


def test_guidance_schedules() -> None:
    assert [guidance_scale(t, 5, 3.0) for t in range(5)] == [3.0] * 5
    assert [guidance_scale(t, 5, 3.0, "linear_up") for t in range(5)] == [1.0, 1.5, 2.0, 2.5, 3.0]
    assert [guidance_scale(t, 5, 3.0, "linear_down") for t in range(5)] == [3.0, 2.5, 2.0, 1.5, 1.0]
    assert guidance_scale(0, 1, 3.0, "linear_up") == 3.0
    with pytest.raises(ValueError, match="cfg schedule"):
        guidance_scale(0, 5, 3.0, "cosine")


def test_reproducible_for_a_generator() -> None:
    gpt = tiny_gpt([125])
    a = generate(gpt, 8, batch_size=4, generator=seeded(5))
    assert torch.equal(a, generate(gpt, 8, batch_size=4, generator=seeded(5)))
    assert not torch.equal(a, generate(gpt, 8, batch_size=4, generator=seeded(6)))


def test_temperature_zero_is_greedy() -> None:
    gpt = tiny_gpt([7, 5])
    labels = torch.tensor([0, 1])
    ids = generate(gpt, 6, labels, temperature=0.0)
    for t in range(6):
        for j in range(2):
            logits = gpt.next_token_logits(ids[:, :t], labels, ids[:, t, :j])
            assert torch.equal(ids[:, t, j], logits.argmax(-1))


def test_filter_logits() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]]))
    kept = lambda out: torch.isfinite(out)[0].tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.6)) == [True, True, False, False, False]
    assert kept(filter_logits(logits, top_p=0.5)) == [True, False, False, False, False]
    assert kept(filter_logits(logits, top_p=0.01)) == [True, False, False, False, False]
    assert kept(filter_logits(logits, top_p=0.9)) == [True, True, True, True, False]
    assert kept(filter_logits(logits)) == [True] * 5
    # Shuffled columns: the nucleus follows the ids, not their positions.
    order = torch.tensor([3, 0, 4, 1, 2])
    assert kept(filter_logits(logits[:, order], top_p=0.6)) == [False, True, False, True, False]


def test_draws_follow_the_probabilities_and_skip_zero_ones() -> None:
    probs = torch.tensor([0.0, 0.5, 0.0, 0.3, 0.2, 0.0])  # zeros at both ends and inside
    logits = probs.log().expand(20_000, -1)  # -inf where the probability is 0
    ids = sample_logits(logits, generator=seeded())
    freq = torch.bincount(ids, minlength=6).float() / len(ids)
    # 20,000 draws: the standard error of each frequency is at most 0.0036.
    assert torch.allclose(freq, probs, atol=0.015) and freq[[0, 2, 5]].sum() == 0
    assert torch.equal(ids, sample_logits(logits, generator=seeded()))
    assert not torch.equal(ids, sample_logits(logits, generator=seeded(1)))


def test_top_k_one_and_top_p_restrict_samples() -> None:
    gpt = tiny_gpt([125])
    greedy = generate(gpt, 8, batch_size=3, temperature=0.0)
    assert torch.equal(generate(gpt, 8, batch_size=3, top_k=1, generator=seeded()), greedy)
    assert torch.equal(generate(gpt, 8, batch_size=3, top_p=1e-6, generator=seeded()), greedy)


@pytest.fixture(scope="module")
def tokenizer():
    import tokenizers_vis as tv

    torch.manual_seed(0)
    return tv.create_tokenizer("tiny_cpu_fsq").eval()  # image 16, K = 8, vocab (125,)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_k_tokens_decode_into_images(tokenizer, k: int) -> None:
    gpt = tiny_gpt([125], max_tokens=8)
    images, ids = sample_images(gpt, tokenizer, k, torch.tensor([0, 1]), cfg_scale=2.0,
                                generator=seeded())  # fmt: skip
    assert ids.shape == (2, k, 1)
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.float32
    assert torch.isfinite(images).all() and images.min() >= -1 and images.max() <= 1
    with pytest.raises(ValueError, match="num_tokens must be in 1..8"):
        generate(gpt, 9, batch_size=1)


def test_incompatible_tokenizer_refused(tokenizer) -> None:
    with pytest.raises(ValueError, match="vocab_sizes"):
        check_compatible(tiny_gpt([7, 5]), tokenizer)
    with pytest.raises(ValueError, match="decodes at most 8"):
        check_compatible(tiny_gpt([125], max_tokens=16), tokenizer)
