"""Shortcuts that compute less but the same function: the transformer's `rows` (the last block
computes only the rows a tokenizer reads) and the MaskGIT-VQGAN's upsampling as a 2x2 conv on the
coarse grid. Each is checked against the plain computation, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tokenizers_vis.decoders.maskgit_vqgan import upsample_conv
from tokenizers_vis.encoders.vit_1d import attention_mask
from tokenizers_vis.layers.transformer import Transformer
from tokenizers_vis.registry import DECODERS, ENCODERS

PATCHES, LATENTS = 9, 5
OPTIONS = {
    "plain": {},
    "qk_norm": {"qk_norm": True},
    "flextok": {"mlp": "swiglu", "bias": False, "norm_affine": False, "norm_eps": 1e-5},
}


def masks() -> dict[str, torch.Tensor | None]:
    length = PATCHES + LATENTS
    keys = torch.ones(2, 1, 1, length, dtype=torch.bool)
    keys[1, ..., -2:] = False  # the second sequence's last two tokens hidden (a tail drop)
    return {"none": None, "causal": attention_mask(PATCHES, LATENTS), "keys": keys}


@pytest.mark.parametrize("mask_name", ["none", "causal", "keys"])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_rows_equal_the_full_sequence_sliced(option: str, mask_name: str) -> None:
    torch.manual_seed(0)
    net = Transformer(32, 2, 4, **OPTIONS[option]).eval()
    for p in net.parameters():  # away from the unit/zero init, so every term counts
        p.data.add_(torch.randn_like(p) * 0.1)
    x = torch.randn(2, PATCHES + LATENTS, 32, requires_grad=True)
    mask = masks()[mask_name]
    rows = slice(PATCHES, None)
    full = net(x, mask)[:, rows]  # (b n w)
    (grad_full,) = torch.autograd.grad(full.square().sum(), x)
    part = net(x, mask, rows=rows)  # (b n w)
    (grad_part,) = torch.autograd.grad(part.square().sum(), x)
    # fp32 matmuls over fewer rows may sum in another order (threads, blocking): ~1e-6 apart.
    torch.testing.assert_close(part, full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad_part, grad_full, rtol=1e-5, atol=1e-5)


def test_rows_last_block_sees_only_the_kept_rows() -> None:
    net = Transformer(32, 2, 4).eval()
    seen: list[tuple[int, ...]] = []
    net.blocks[-1].mlp.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    net.blocks[0].mlp.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape)))
    out = net(torch.randn(2, 14, 32), rows=slice(3, 7))
    assert out.shape == (2, 4, 32)
    assert seen == [(2, 14, 32), (2, 4, 32)]  # first block: every row; last: the four read


def test_tokenizer_parts_run_their_last_block_on_what_they_read() -> None:
    enc = ENCODERS.build(
        {
            "name": "vit_1d",
            "patch_size": 4,
            "width": 32,
            "depth": 2,
            "num_heads": 4,
            "class_token": True,
        },
        image_size=16,
        num_tokens=LATENTS,
        out_dim=6,
    ).eval()
    dec = DECODERS.build(
        {
            "name": "vit_1d",
            "patch_size": 4,
            "width": 32,
            "depth": 2,
            "num_heads": 4,
            "class_token": True,
        },
        image_size=16,
        num_tokens=LATENTS,
        in_dim=6,
    ).eval()
    seen: list[int] = []
    for part in (enc, dec):
        part.transformer.blocks[-1].mlp.register_forward_hook(
            lambda m, i, o: seen.append(i[0].shape[1])
        )
    assert enc(torch.randn(2, 3, 16, 16)).shape == (2, LATENTS, 6)
    assert dec(torch.randn(2, LATENTS, 6)).images.shape == (2, 3, 16, 16)
    assert seen == [LATENTS, 16]  # the latents; the 4x4 patch grid (not the class token)


def naive_upsample_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_upsample_conv_is_nearest_then_conv(bias: bool, channels_last: bool) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, bias=bias)
    x = torch.randn(2, 6, 4, 7)  # not square: rows and columns fold separately
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        conv = conv.to(memory_format=torch.channels_last)
    x.requires_grad_(True)
    want = naive_upsample_conv(x, conv)  # (2 5 8 14)
    want_grads = torch.autograd.grad(want.square().sum(), [x, *conv.parameters()])
    got = upsample_conv(x, conv)
    got_grads = torch.autograd.grad(got.square().sum(), [x, *conv.parameters()])
    assert got.shape == (2, 5, 8, 14)
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_upsample_conv_under_bf16_autocast_stays_near_fp32() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=1)
    x = torch.randn(1, 32, 6, 6)
    want = naive_upsample_conv(x, conv)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = upsample_conv(x, conv)
        naive_bf16 = naive_upsample_conv(x, conv)
    assert got.dtype == torch.bfloat16
    # bf16 rounding of inputs and kernel, no worse than the plain path's own bf16 error x 2.
    ours, theirs = (got.float() - want).abs().max(), (naive_bf16.float() - want).abs().max()
    assert ours <= 2 * theirs + 1e-3
