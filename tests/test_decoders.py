"""The decoder contract (`decoders.base.Decoder`), checked on every registered decoder.

Each test reaches a decoder only through the base class's surface: `forward` for training,
`sample` for inference, `generative`, `last_layer`, `feature_dim`. A new decoder is covered by
adding its spec to SPECS (the first test fails until it is there).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from tokenizers_vis.decoders import Decoder, DecoderOutput
from tokenizers_vis.registry import DECODERS

SHARED = {"image_size": 16, "num_tokens": 6, "in_dim": 5}
SMALL = {"patch_size": 4, "width": 32, "depth": 2, "num_heads": 2}
SPECS = {  # every registered decoder at least once; a variant per optional layer
    "vit_1d": {"name": "vit_1d", **SMALL},
    "rectified_flow": {"name": "rectified_flow", **SMALL},
    "rectified_flow+repa": {"name": "rectified_flow", **SMALL, "repa_layer": 1, "repa_dim": 8},
    "rectified_flow+flextok": {  # the published FlexTok decoders' network options
        "name": "rectified_flow",
        **SMALL,
        "positions": "sincos2d",
        "qk_norm": True,
        "mlp": "swiglu",
        "bias": False,
        "qk_norm_affine": False,
        "norm_eps": 1e-5,
        "time_max_period": 256.0,
        "mask_token": True,
    },
}

pytestmark = pytest.mark.usefixtures("one_thread")


def build(key: str, seed: int = 0) -> Decoder:
    """A decoder with every weight nudged: an adaLN-Zero decoder starts as the identity with a
    zero head, so until it trains its output ignores the tokens (by design) and these tests would
    pass vacuously."""
    torch.manual_seed(seed)
    dec = DECODERS.build(SPECS[key], **SHARED)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in dec.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return dec


def inputs(b: int = 2) -> tuple[Tensor, Tensor, Tensor]:
    """tokens (b 6 5), key_mask (b 6) with a hidden tail on sample 0, images (b 3 16 16)."""
    g = torch.Generator().manual_seed(7)
    tokens = torch.randn(b, 6, 5, generator=g)
    key_mask = torch.ones(b, 6, dtype=torch.bool)
    key_mask[0, 3:] = False
    return tokens, key_mask, torch.rand(b, 3, 16, 16, generator=g) * 2 - 1


def sample(dec: Decoder, tokens: Tensor, key_mask: Tensor | None, seed: int = 0, **kw) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return dec.sample(tokens, key_mask, num_steps=kw.pop("num_steps", 2), generator=g, **kw)


def test_every_registered_decoder_has_a_spec_and_follows_the_base() -> None:
    assert sorted({spec["name"] for spec in SPECS.values()}) == DECODERS.names()
    for name in DECODERS.names():
        cls = DECODERS.get(name)
        assert issubclass(cls, Decoder), name
        assert isinstance(cls.__dict__.get("generative"), bool), f"{name} declares generative"


def test_the_base_refuses_an_incomplete_decoder() -> None:
    class NoSample(Decoder):
        generative = False

        def forward(self, tokens, key_mask=None, images=None) -> DecoderOutput:
            return DecoderOutput(tokens)

        @property
        def last_layer(self) -> Tensor:
            return torch.zeros(())

    with pytest.raises(TypeError, match="sample"):
        NoSample()


@pytest.mark.parametrize("key", sorted(SPECS))
def test_training_output_shapes_and_named_terms(key: str) -> None:
    dec = build(key).train()
    tokens, key_mask, images = inputs()
    out = dec(tokens, key_mask, images=images)
    assert isinstance(out, DecoderOutput) and out.images.shape == (2, 3, 16, 16)
    assert all(v.dim() == 0 and "/" in k for k, v in out.losses.items()), out.losses
    if dec.feature_dim is None:
        assert out.features is None
    else:  # a map on the decoder's 4x4 patch grid
        assert out.features.shape == (2, dec.feature_dim, 4, 4)
    assert sample(dec, tokens, key_mask).shape == (2, 3, 16, 16)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_gradients_reach_every_weight_the_tokens_and_the_last_layer(key: str) -> None:
    dec = build(key).train()
    tokens, key_mask, images = inputs()
    tokens.requires_grad_(True)
    out = dec(tokens, key_mask, images=images)
    loss = out.images.square().mean() + sum(out.losses.values(), torch.zeros(()))
    if out.features is not None:
        loss = loss + out.features.square().mean()
    loss.backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    no_grad = [n for n, p in dec.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad
    last = dec.last_layer  # a weight of this decoder, reached by the images' gradient
    assert any(last is p for p in dec.parameters())
    dec.zero_grad(set_to_none=True)
    dec(tokens, key_mask, images=images).images.sum().backward()
    assert last.grad is not None and last.grad.abs().sum() > 0


@pytest.mark.parametrize("key", sorted(SPECS))
def test_sampling_is_reproducible_and_only_a_generative_decoder_depends_on_the_generator(
    key: str,
) -> None:
    dec = build(key).eval()
    tokens, key_mask, images = inputs()
    first = sample(dec, tokens, key_mask, seed=0)
    assert torch.equal(first, sample(dec, tokens, key_mask, seed=0))
    assert torch.equal(dec.sample(tokens, key_mask), dec.sample(tokens, key_mask))  # no generator
    if dec.generative:
        assert not torch.allclose(first, sample(dec, tokens, key_mask, seed=1))
        assert not torch.allclose(first, sample(dec, tokens, key_mask, seed=0, num_steps=3))
        return
    # Deterministic: one image per prefix, the training output itself, sampling arguments unused.
    out = dec(tokens, key_mask, images=images)
    assert torch.equal(out.images, dec(tokens, key_mask, images=images).images)
    assert torch.equal(first, out.images)
    loud = sample(dec, tokens, key_mask, seed=1, num_steps=9, guidance_scale=3.0)
    assert torch.equal(first, loud)


@pytest.mark.parametrize("key", sorted(SPECS))
def test_hidden_tokens_do_not_matter_and_visible_ones_do(key: str) -> None:
    dec = build(key).eval()
    tokens, key_mask, _ = inputs(1)  # tokens 3.. hidden
    changed = tokens.clone()
    changed[:, 3:] = torch.randn(1, 3, 5)
    torch.testing.assert_close(sample(dec, tokens, key_mask), sample(dec, changed, key_mask))
    assert not torch.allclose(sample(dec, tokens, None), sample(dec, changed, None))


@pytest.mark.parametrize("key", sorted(SPECS))
def test_save_load_gives_identical_outputs(key: str, tmp_path: Path) -> None:
    dec = build(key, seed=0).eval()
    save_file({k: v.contiguous() for k, v in dec.state_dict().items()}, tmp_path / "d.safetensors")
    loaded = build(key, seed=1).eval()  # other weights until loaded
    tokens, key_mask, images = inputs()
    assert not torch.equal(sample(loaded, tokens, key_mask), sample(dec, tokens, key_mask))
    loaded.load_state_dict(load_file(tmp_path / "d.safetensors"), strict=True)
    assert torch.equal(sample(loaded, tokens, key_mask), sample(dec, tokens, key_mask))
    a, b = (d(tokens, key_mask, images=images) for d in (dec, loaded))  # eval: fixed seed
    assert torch.equal(a.images, b.images)
    assert a.losses.keys() == b.losses.keys()
    assert all(torch.equal(a.losses[k], b.losses[k]) for k in a.losses)
