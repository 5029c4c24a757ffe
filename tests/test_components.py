"""Contract tests over every registered encoder and token drop (decoders: test_decoders.py)."""

from __future__ import annotations

import pytest
import torch

from tokenizers_vis.encoders.vit_1d import attention_mask, raw_reshape
from tokenizers_vis.layers.transformer import Transformer, sincos_2d_positions
from tokenizers_vis.registry import DECODERS, ENCODERS, PIXEL_DECODERS, TOKEN_DROPS

SHARED = {"image_size": 16, "num_tokens": 6}
ENCODER_SPECS = {
    "vit_1d": {"name": "vit_1d", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 2},
    "registers": {"name": "registers", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 2},
}
DECODER_SPECS = {
    "vit_1d": {"name": "vit_1d", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 2},
    "rectified_flow": {
        "name": "rectified_flow", "patch_size": 4, "width": 32, "depth": 2, "num_heads": 2
    },
}  # fmt: skip
PIXEL_DECODER_SPECS = {
    "maskgit_vqgan": {
        "name": "maskgit_vqgan", "codebook_size": 16, "code_dim": 8, "channels": 32,
        "channel_mult": [2, 1], "num_res_blocks": 1,
    },
}  # fmt: skip
# The options the published TiTok / One-D-Piece networks need, held to the same contracts.
PUBLISHED = {"class_token": True, "ln_pre": True, "norm_eps": 1e-5}
ENCODER_VARIANTS = ENCODER_SPECS | {  # options published models need
    "vit_1d+published": ENCODER_SPECS["vit_1d"] | PUBLISHED | {"code_head": "raw_reshape"},
    "registers+class_token": ENCODER_SPECS["registers"] | {"class_token": True},
}
DECODER_VARIANTS = DECODER_SPECS | {
    "vit_1d+output_conv": DECODER_SPECS["vit_1d"] | PUBLISHED | {"output_conv": True},
    "vit_1d+maskgit_vqgan": DECODER_SPECS["vit_1d"]
    | PUBLISHED
    | {"patch_size": 2, "pixel_decoder": PIXEL_DECODER_SPECS["maskgit_vqgan"]},
}
TINY_VAE = {"latent_channels": 4, "block_out_channels": [8, 8], "norm_num_groups": 4}
FLEXTOK_ENCODERS = {
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
ALL_ENCODERS = ENCODER_VARIANTS | FLEXTOK_ENCODERS
DROP_SPECS = {
    "nested_dropout": {"name": "nested_dropout", "sampling": "pow2"},
    "tail_drop": {"name": "tail_drop", "sampling": "uniform"},
}


def test_every_registered_component_has_a_spec() -> None:
    assert sorted(ENCODER_SPECS) == ENCODERS.names()
    assert sorted(DROP_SPECS) == TOKEN_DROPS.names()
    assert sorted(PIXEL_DECODER_SPECS) == PIXEL_DECODERS.names()


@pytest.mark.parametrize("name", sorted(ALL_ENCODERS))
def test_encoder_shapes_gradients_determinism(name: str) -> None:
    enc = ENCODERS.build(ALL_ENCODERS[name], out_dim=5, **SHARED).eval()
    images = torch.rand(2, 3, 16, 16, requires_grad=True) * 2 - 1
    latents = enc(images)
    assert latents.shape == (2, 6, 5)
    assert torch.equal(latents, enc(images))
    latents.sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["registers", "registers+class_token"])
def test_causal_registers_do_not_see_later_registers(name: str) -> None:
    enc = ENCODERS.build(ENCODER_VARIANTS[name], out_dim=5, **SHARED).eval()
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


def perturbed(module: torch.nn.Module) -> torch.nn.Module:
    """Every weight nudged: an adaLN-Zero decoder starts as the identity with a zero head, so
    until it trains its output does not depend on the tokens at all (by design)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return module


@pytest.mark.parametrize("name", sorted(DECODER_VARIANTS))
def test_decoder_shapes_and_gradients(name: str) -> None:
    dec = perturbed(DECODERS.build(DECODER_VARIANTS[name], in_dim=5, **SHARED))
    tokens = torch.randn(2, 6, 5, requires_grad=True)
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    out = dec(tokens, None, images=images)
    assert out.images.shape == (2, 3, 16, 16)
    loss = out.images.square().mean() + sum(out.losses.values(), torch.zeros(()))
    loss.backward()
    assert tokens.grad is not None and tokens.grad.abs().sum() > 0
    no_grad = [n for n, p in dec.named_parameters() if p.requires_grad and p.grad is None]
    assert not no_grad, no_grad

    def sample(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return dec.sample(tokens, None, num_steps=4, generator=g)

    assert sample(0).shape == (2, 3, 16, 16) and torch.equal(sample(0), sample(0))
    if getattr(dec, "generative", False):  # sampling decoders: the generator matters
        assert not torch.allclose(sample(0), sample(1))
    else:
        assert torch.equal(sample(0), out.images)


@pytest.mark.parametrize("name", sorted(DECODER_VARIANTS))
def test_decoder_key_mask_hides_tail_for_every_decoder(name: str) -> None:
    dec = perturbed(DECODERS.build(DECODER_VARIANTS[name], in_dim=5, **SHARED)).eval()
    tokens = torch.randn(1, 6, 5)
    mask = torch.tensor([[True, True, True, False, False, False]])
    changed = tokens.clone()
    changed[:, 3:] = torch.randn(1, 3, 5)

    def sample(x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        return dec.sample(x, key_mask, num_steps=2, generator=torch.Generator().manual_seed(0))

    torch.testing.assert_close(sample(tokens, mask), sample(changed, mask))
    assert not torch.allclose(sample(tokens, None), sample(changed, None))


def test_decoder_key_mask_hides_tail() -> None:
    dec = DECODERS.build(DECODER_SPECS["vit_1d"], in_dim=5, **SHARED).eval()
    tokens = torch.randn(1, 6, 5)
    mask = torch.tensor([[True, True, True, False, False, False]])
    changed = tokens.clone()
    changed[:, 3:] = torch.randn(1, 3, 5)
    torch.testing.assert_close(dec(tokens, mask).images, dec(changed, mask).images)
    assert not torch.allclose(dec(tokens, None).images, dec(changed, None).images)


def test_raw_reshape_reads_memory_order_and_mixes_tokens() -> None:
    latents = torch.randn(2, 3, 4)  # (b n w)
    mixed = raw_reshape(latents)
    flat = latents.flatten(1)
    for i in range(3):  # code i reads flat values w_index * n + i
        assert torch.equal(mixed[:, i], flat[:, torch.arange(4) * 3 + i])
    enc = ENCODERS.build(ENCODER_VARIANTS["vit_1d+published"], out_dim=5, **SHARED).eval()
    per_token = ENCODERS.build(ENCODER_SPECS["vit_1d"] | PUBLISHED, out_dim=5, **SHARED).eval()
    per_token.load_state_dict(enc.state_dict())  # same weights, only the head's read differs
    images = torch.rand(1, 3, 16, 16) * 2 - 1
    assert not torch.allclose(enc(images), per_token(images))


def test_published_options_are_validated() -> None:
    with pytest.raises(ValueError, match="code_head"):
        ENCODERS.build(ENCODER_SPECS["vit_1d"] | {"code_head": "transpose"}, out_dim=5, **SHARED)
    bad = DECODER_VARIANTS["vit_1d+maskgit_vqgan"] | {"patch_size": 4}  # VQGAN upsamples 2x
    with pytest.raises(ValueError, match="upsamples 2x"):
        DECODERS.build(bad, in_dim=5, **SHARED)
    both = DECODER_VARIANTS["vit_1d+maskgit_vqgan"] | {"output_conv": True}
    with pytest.raises(ValueError, match="pick one"):
        DECODERS.build(both, in_dim=5, **SHARED)
    with pytest.raises(ValueError, match="multiple of 32"):
        PIXEL_DECODERS.build(PIXEL_DECODER_SPECS["maskgit_vqgan"] | {"channels": 16})


@pytest.mark.parametrize("name", sorted(PIXEL_DECODER_SPECS))
def test_pixel_decoder_shapes_gradients_and_hard_codes(name: str) -> None:
    dec = perturbed(PIXEL_DECODERS.build(PIXEL_DECODER_SPECS[name])).eval()
    f, c = dec.upsample_factor, dec.codebook_size
    logits = torch.randn(2, 3, 4, c, requires_grad=True)  # (b h w c)
    images = dec(logits.softmax(-1))
    assert images.shape == (2, 3, 3 * f, 4 * f)
    images.square().mean().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert all(p.grad is not None for p in dec.parameters())
    ids = torch.randint(0, c, (2, 3, 4))
    one_hot = torch.nn.functional.one_hot(ids, c).float()
    torch.testing.assert_close(dec.decode_ids(ids), dec(one_hot))


def test_published_maskgit_vqgan_size() -> None:
    with torch.device("meta"):  # the published size: 30.5 M parameters besides its codebook
        dec = PIXEL_DECODERS.build({"name": "maskgit_vqgan"})
    params = sum(p.numel() for n, p in dec.named_parameters() if n != "codebook")
    assert dec.upsample_factor == 16 and round(params / 1e6, 1) == 30.5


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
