"""Contract tests over every registered encoder and token drop (decoders: test_decoders.py)."""

from __future__ import annotations

import pytest
import torch

from tokenizers_vis.encoders.vit_1d import attention_mask
from tokenizers_vis.layers.transformer import Transformer, sincos_2d_positions
from tokenizers_vis.registry import ENCODERS, TOKEN_DROPS

SHARED = {"image_size": 16, "num_tokens": 6}
ENCODER_SPECS = {
    "vit_1d": {"name": "vit_1d", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 2},
    "registers": {"name": "registers", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 2},
}
TINY_VAE = {"latent_channels": 4, "block_out_channels": [8, 8], "norm_num_groups": 4}
ENCODER_VARIANTS = {  # options of the registered encoders that published models need
    "registers+flextok": {
        **ENCODER_SPECS["registers"],
        "patch_size": 2,
        "qk_norm": True,
        "positions": "sincos2d",
        "vae": TINY_VAE,
        "mlp": "swiglu",
        "bias": False,
        "norm_affine": False,
        "norm_eps": 1e-5,
    },
}
ALL_ENCODERS = ENCODER_SPECS | ENCODER_VARIANTS
DROP_SPECS = {
    "nested_dropout": {"name": "nested_dropout", "sampling": "pow2"},
    "tail_drop": {"name": "tail_drop", "sampling": "uniform"},
}


def test_every_registered_component_has_a_spec() -> None:
    assert sorted(ENCODER_SPECS) == ENCODERS.names()
    assert sorted(DROP_SPECS) == TOKEN_DROPS.names()


@pytest.mark.parametrize("name", sorted(ALL_ENCODERS))
def test_encoder_shapes_gradients_determinism(name: str) -> None:
    enc = ENCODERS.build(ALL_ENCODERS[name], out_dim=5, **SHARED).eval()
    images = torch.rand(2, 3, 16, 16, requires_grad=True) * 2 - 1
    latents = enc(images)
    assert latents.shape == (2, 6, 5)
    assert torch.equal(latents, enc(images))
    latents.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_causal_registers_do_not_see_later_registers() -> None:
    enc = ENCODERS.build(ENCODER_SPECS["registers"], out_dim=5, **SHARED).eval()
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    base = enc(images)
    with torch.no_grad():  # perturb the learned query of the last register only
        enc.latent_tokens[:, -1] += 5 * torch.randn(32)  # not constant: LayerNorm would cancel it
    moved = enc(images)
    torch.testing.assert_close(moved[:, :-1], base[:, :-1])
    assert not torch.allclose(moved[:, -1], base[:, -1])


def test_full_attention_latents_see_each_other() -> None:
    enc = ENCODERS.build(ENCODER_SPECS["vit_1d"], out_dim=5, **SHARED).eval()
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    base = enc(images)
    with torch.no_grad():
        enc.latent_tokens[:, -1] += 5 * torch.randn(32)  # not constant: LayerNorm would cancel it
    assert (enc(images)[:, 0] - base[:, 0]).abs().max() > 1e-4


def test_attention_mask_layout() -> None:
    mask = attention_mask(num_patches=2, num_tokens=3)
    assert mask[:2, :2].all() and not mask[:2, 2:].any()  # patches never see registers
    assert mask[2:, :2].all()
    assert torch.equal(mask[2:, 2:], torch.ones(3, 3).tril().bool())


@pytest.mark.parametrize("name", sorted(DROP_SPECS))
@pytest.mark.parametrize("sampling", ["uniform", "pow2", "uniform_pow2", "uniform_or_pow2"])
def test_token_drop_sampling_range(name: str, sampling: str) -> None:
    drop = TOKEN_DROPS.build({**DROP_SPECS[name], "sampling": sampling}, max_tokens=16, dim=3)
    lengths = drop.sample_lengths(2000, torch.device("cpu"))
    assert lengths.min() >= 1 and lengths.max() <= 16
    assert len(lengths.unique()) > 1  # per sample, not per batch
    if sampling == "pow2":
        assert set(lengths.tolist()) <= {1, 2, 4, 8, 16}
    if sampling == "uniform":
        assert set(lengths.tolist()) == set(range(1, 17))
    if sampling == "uniform_pow2":  # FlexTok's: a uniform k rounded up to a power of two
        assert set(lengths.tolist()) <= {1, 2, 4, 8, 16}
        assert 0.4 < (lengths == 16).float().mean() < 0.6  # k in 9..16: half of 1..16


def test_token_drop_keep_all_fraction() -> None:
    drop = TOKEN_DROPS.build({"name": "nested_dropout", "drop_prob": 0.25}, max_tokens=16, dim=3)
    full = (drop.sample_lengths(4000, torch.device("cpu")) == 16).float().mean()
    assert 0.7 < full < 0.85  # 75% kept whole + 1/16 of the sampled ones


def test_nested_dropout_masks_and_tail_drop_hides() -> None:
    codes = torch.randn(2, 4, 3)
    lengths = torch.tensor([1, 3])
    nested = TOKEN_DROPS.build(DROP_SPECS["nested_dropout"], max_tokens=4, dim=3)
    tokens, key_mask = nested(codes, lengths)
    assert key_mask is None
    assert torch.equal(tokens[0, 0], codes[0, 0]) and torch.equal(tokens[1, :3], codes[1, :3])
    assert torch.equal(tokens[0, 1], nested.mask_token[0, 0])
    tail = TOKEN_DROPS.build(DROP_SPECS["tail_drop"], max_tokens=4, dim=3)
    tokens, key_mask = tail(codes, lengths)
    assert key_mask.tolist() == [[True, False, False, False], [True, True, True, False]]
    assert tokens[0, 1:].abs().sum() == 0


def test_bad_sampling_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="sampling"):
        TOKEN_DROPS.build({"name": "nested_dropout", "sampling": "geometric"}, max_tokens=4, dim=3)
    with pytest.raises(KeyError, match="known: nested_dropout, tail_drop"):
        TOKEN_DROPS.build({"name": "nope"}, max_tokens=4, dim=3)


def test_nested_dropout_can_leave_the_mask_token_to_the_decoder() -> None:
    drop = TOKEN_DROPS.build(
        {"name": "nested_dropout", "mask_token": "decoder"}, max_tokens=4, dim=3
    )
    assert drop.mask_token is None and not list(drop.parameters())
    codes = torch.randn(2, 4, 3)
    tokens, key_mask = drop(codes, torch.tensor([1, 3]))
    assert torch.equal(tokens, codes)
    assert key_mask.tolist() == [[True, False, False, False], [True, True, True, False]]
    with pytest.raises(ValueError, match="mask_token"):
        TOKEN_DROPS.build({"name": "tail_drop", "mask_token": "decoder"}, max_tokens=4, dim=3)


def test_transformer_block_options() -> None:
    default = Transformer(32, 1, 2)
    flextok = Transformer(32, 1, 2, qk_norm=True, mlp="swiglu", bias=False, norm_affine=False)
    names = dict(flextok.named_parameters())
    assert not [n for n in names if n.endswith("bias") or "norm" in n]  # no biases, no affines
    assert names["blocks.0.mlp.fc1_g.weight"].shape == (int(2 * 32 * 4 / 3), 32)  # 2/3 of 4x
    assert "blocks.0.mlp.fc1.bias" in dict(default.named_parameters())
    x = torch.randn(2, 5, 32)
    assert flextok(x).shape == x.shape


def test_sincos_positions_rows_then_columns() -> None:
    table = sincos_2d_positions(3, 8)  # (1 9 8): [sin r, cos r, sin c, cos c], 2 frequencies
    assert table.shape == (1, 9, 8)
    row1_col2 = table[0, 1 * 3 + 2]
    torch.testing.assert_close(row1_col2[:2], torch.sin(torch.tensor([1.0, 1e-2])))
    torch.testing.assert_close(row1_col2[4:6], torch.sin(torch.tensor([2.0, 2e-2])))
