"""Named tokenizer specs. Each is the full `Tokenizer(**spec)` keyword set, the same dict as in
YAML.

Sizes: `tiny_cpu_*` for tests (milliseconds); `emoji32_fsq` trains on a 2-core CPU in well under an
hour; `vit_b16_k64_vq` is shaped like a published ImageNet-256 model for GPU users; `titok_*`,
`one_d_piece_*` and `flextok_d12` / `flextok_d18` / `flextok_d28` *are* the published TiTok,
One-D-Piece and FlexTok networks (load their weights with `vistok convert`).
"""

from __future__ import annotations

import copy
from typing import Any


def _vit(patch: int, width: int, depth: int, heads: int, name: str = "vit_1d") -> dict[str, Any]:
    return {"name": name, "patch_size": patch, "width": width, "depth": depth, "num_heads": heads}


def _vq(codebook_size: int, dim: int) -> dict[str, Any]:
    """L2-normalised VQ with EMA codes and dead-code restarts (the emoji VQ presets' recipe)."""
    return {
        "name": "vq",
        "codebook_size": codebook_size,
        "dim": dim,
        "ema_decay": 0.99,
        "dead_code_threshold": 0.01,
    }


def _emoji32(max_tokens: int, quantizer: dict[str, Any]) -> dict[str, Any]:
    """`emoji32_fsq`'s encoder, decoder and token drop around another quantizer."""
    return {
        "image_size": 32,
        "max_tokens": max_tokens,
        "encoder": _vit(4, 192, 4, 4, "registers"),
        "decoder": _vit(4, 192, 6, 4),
        "quantizer": quantizer,
        "token_drop": {"name": "nested_dropout", "sampling": "uniform_or_pow2", "drop_prob": 0.8},
    }


def _rf(patch: int, width: int, depth: int, heads: int, **extra: Any) -> dict[str, Any]:
    """Rectified-flow decoder (decoders/rectified_flow.py): DiT blocks, token prefix in context."""
    return _vit(patch, width, depth, heads, "rectified_flow") | extra


# FlexTok's VAE (the `EPFL-VILAB/flextok_vae_c16` architecture): Stable Diffusion's layout, 16
# latent channels, 8x down. The scaling factor is the published model's own (its config.json);
# `convert/flextok.py` sets it. A new FlexTok on a pretrained VAE (a local diffusers directory):
# `convert.flextok.flextok_with_vae("flextok_d12", DIR)`.
FLEXTOK_VAE: dict[str, Any] = {
    "latent_channels": 16,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "scaling_factor": 1.0,
}


def _flextok(encoder_depth: int, decoder_depth: int) -> dict[str, Any]:
    """FlexTok dE-dD: a VAE (weights in the state dict), 2x2 patches over its 32x32 latents, a
    register encoder and a rectified-flow decoder of width 64 * depth (64-wide heads) with SwiGLU
    blocks without biases or norm affines, FSQ 8-8-8-5-5-5, 256 tokens, nested dropout whose
    mask token lives at the decoder's width.

    "Equal to the published model" means, as measured: `convert/flextok.py` maps every tensor of
    a reference model (apple/ml-flextok @ 87d00cc, hydra config structured as the published
    ones, seeded random weights) onto this spec with none left over and loads strictly, and then
    on the same images VAE latents and register latents are identical (max abs diff 0), ids
    100 % equal, and decoder velocities at k = 1, 16, 256 within 8.5e-5 (fp32, CPU; the timestep
    features' product order) at d12, d18 and d28 (reports/published-models/
    flextok_full_size_check.md); at tiny width the golden test also holds a seeded 4-step Euler
    decode to 1.5e-5 (tests/test_golden_flextok.py). Not reproduced: FlexTok's adaptive
    projected guidance (APG) at sampling; classifier-free guidance is.
    """
    enc, dec = 64 * encoder_depth, 64 * decoder_depth
    blocks = {"qk_norm": True, "mlp": "swiglu", "bias": False, "norm_eps": 1e-5}
    return {
        "image_size": 256,
        "max_tokens": 256,
        "encoder": _vit(2, enc, encoder_depth, encoder_depth, "registers")
        | blocks
        | {"positions": "sincos2d", "norm_affine": False, "vae": dict(FLEXTOK_VAE)},
        "decoder": _rf(2, dec, decoder_depth, decoder_depth, num_steps=25)
        | blocks
        | {
            "positions": "sincos2d",
            "qk_norm_affine": False,
            "time_scale": 1000.0,
            "time_max_period": 256.0,
            "mask_token": True,
            "cond_dropout": 0.2,
            "vae": dict(FLEXTOK_VAE),
        },
        "quantizer": {"name": "fsq", "levels": [8, 8, 8, 5, 5, 5]},
        "token_drop": {"name": "nested_dropout", "sampling": "pow2", "mask_token": "decoder"},
    }


PRESETS: dict[str, dict[str, Any]] = {
    # Test-sized: a few thousand parameters per block, 16x16 images, 8 tokens.
    "tiny_cpu_fsq": {
        "image_size": 16,
        "max_tokens": 8,
        "encoder": _vit(4, 32, 1, 2),
        "decoder": _vit(4, 32, 1, 2),
        "quantizer": {"name": "fsq", "levels": [5, 5, 5]},
        "token_drop": {"name": "nested_dropout", "sampling": "uniform"},
    },
    "tiny_cpu_vq": {
        "image_size": 16,
        "max_tokens": 8,
        "encoder": _vit(4, 32, 1, 2, "registers"),
        "decoder": _vit(4, 32, 1, 2),
        "quantizer": {
            "name": "vq",
            "codebook_size": 64,
            "dim": 8,
            "ema_decay": 0.9,
            "dead_code_threshold": 0.01,
        },
        "token_drop": {"name": "tail_drop", "sampling": "pow2"},
    },
    # Factorized (FQGAN-style): two 64-code VQ sub-codebooks, ids (b n 2).
    "tiny_cpu_fvq": {
        "image_size": 16,
        "max_tokens": 8,
        "encoder": _vit(4, 32, 1, 2, "registers"),
        "decoder": _vit(4, 32, 1, 2),
        "quantizer": {
            "name": "factorized",
            "quantizers": [{"name": "vq", "codebook_size": 64, "dim": 4}] * 2,
            "adapter_hidden": 16,
        },
        "token_drop": {"name": "nested_dropout", "sampling": "uniform"},
    },
    # The shipped default: 32x32 emoji, 64 tokens x 12 bits (FSQ 8^4 = 4096 codes) = 96 bytes at
    # k=64.
    "emoji32_fsq": {
        "image_size": 32,
        "max_tokens": 64,
        "encoder": _vit(4, 192, 4, 4, "registers"),
        "decoder": _vit(4, 192, 6, 4),
        "quantizer": {"name": "fsq", "levels": [8, 8, 8, 8]},
        "token_drop": {"name": "nested_dropout", "sampling": "uniform_or_pow2", "drop_prob": 0.8},
    },
    # 64 px photos, up to 128 tokens x 12 bits = 192 bytes (0.375 bpp). emoji32_fsq's network
    # with 8 px patches: the same 8x8 patch grid, so a trained emoji32/photo32 carries over
    # (training/upscale.py). K = 128 over 256: 1.33x less CPU per step (measured; configs/
    # tokenizer/photo64_fsq.yaml), so more steps on a CPU budget.
    "photo64_fsq": {
        "image_size": 64,
        "max_tokens": 128,
        "encoder": _vit(8, 192, 4, 4, "registers"),
        "decoder": _vit(8, 192, 6, 4),
        "quantizer": {"name": "fsq", "levels": [8, 8, 8, 8]},
        "token_drop": {"name": "nested_dropout", "sampling": "uniform_or_pow2", "drop_prob": 0.8},
    },
    # Issue 10's comparison at 96 bytes per image (k = K): plain VQ 4096 x 12, K = 64 (12 bits a
    # token); factorized VQ 2 x 64 at K = 64 (equal bits per token); factorized VQ 2 x 4096 at
    # K = 32 (24 bits a token, equal bytes per image). Same encoder, decoder and token drop.
    "emoji32_vq": _emoji32(64, _vq(4096, 12)),
    "emoji32_fvq_2x64": _emoji32(64, {"name": "factorized", "quantizers": [_vq(64, 6)] * 2}),
    "emoji32_fvq_2x4096_k32": _emoji32(
        32, {"name": "factorized", "quantizers": [_vq(4096, 12)] * 2}
    ),
    # emoji32_fsq's encoder, quantizer and token drop with a rectified-flow decoder of the ViT
    # decoder's size (4.2M parameters): the same tokens decode both ways. Train it on the shipped
    # emoji32's frozen tokens (configs/tokenizer/emoji32_fsq_rf_decoder.yaml) or end to end.
    "emoji32_fsq_rf": _emoji32(64, {"name": "fsq", "levels": [8, 8, 8, 8]})
    | {"decoder": _rf(4, 192, 6, 4, num_steps=25)},
    # A TiTok-B-64-shaped model of our own (ViT-B/16 encoder and decoder, 64 tokens, VQ 4096 x 12,
    # linear pixel head): what `vistok bench` times and FLOP-counts. Not the published network;
    # that is `titok_b64_vq` below.
    "vit_b16_k64_vq": {
        "image_size": 256,
        "max_tokens": 64,
        "encoder": _vit(16, 768, 12, 12),
        "decoder": _vit(16, 768, 12, 12),
        "quantizer": {"name": "vq", "codebook_size": 4096, "dim": 12},
        "token_drop": {"name": "tail_drop", "sampling": "uniform", "drop_prob": 0.0},
    },
    # FlexTok (Bachmann et al., 2025), the published d12-d12, d18-d18 and d18-d28 ImageNet models:
    # see `_flextok`.
    "flextok_d12": _flextok(12, 12),
    "flextok_d18": _flextok(18, 18),
    "flextok_d28": _flextok(18, 28),
}


# The published TiTok (Yu et al., 2024; bytedance/1d-tokenizer) and One-D-Piece (Miwa et al., 2025;
# turingmotors/One-D-Piece) tokenizers, equal in architecture: `vistok convert titok|one_d_piece`
# loads their weights into these specs strictly. "Equal" was measured against the reference code
# run on the same seeded random weights and images, fp32: at tiny widths (tests/
# test_golden_titok.py, the suite) latents within 1e-4 (measured <= 7e-7), ids 100 % equal, pixels
# within 1e-4 (measured <= 3e-6); at every published size (reports/published-models/
# full_size_check.md, run once) ids 100 % equal, latents within ~3e-6 and pixels within ~1e-4 of
# values up to ~3 (the ViT's fp32 rounding, ~1e-6, magnified by the peaked 1,024-way code softmax;
# the published-size VQGAN alone agrees to 1.2e-7). Parameter counts equal the reference's less
# what the converter folds (a test holds them).
# Images are in [-1, 1] like every vistok model; the converter folds the published [0, 1] range
# into the first and last convolutions.
PUBLISHED_VIT = {"S": (512, 8, 8), "B": (768, 12, 12), "L": (1024, 24, 16)}  # width, depth, heads


def _published_vit(size: str) -> dict[str, Any]:
    width, depth, heads = PUBLISHED_VIT[size]
    return _vit(16, width, depth, heads) | {"class_token": True, "ln_pre": True, "norm_eps": 1e-5}


def titok_spec(
    encoder: str, decoder: str, tokens: int, vq8k: bool = False, tail_drop: bool = False
) -> dict[str, Any]:
    """A published TiTok-family spec. `vq8k`: the BL/SL models (VQ 8,192 x 64, not normalised,
    pixel head with a 3x3 conv); otherwise the stage-2 models (VQ 4,096 x 12, L2-normalised, the
    encoder's raw-reshape code head, decoding through the MaskGIT-VQGAN). `tail_drop`: One-D-Piece,
    which decodes any prefix of its tokens."""
    enc, dec = _published_vit(encoder), _published_vit(decoder)
    if vq8k:
        quantizer = {"name": "vq", "codebook_size": 8192, "dim": 64, "normalize": False}
        dec["output_conv"] = True
    else:
        quantizer = {"name": "vq", "codebook_size": 4096, "dim": 12, "normalize": True}
        enc["code_head"] = "raw_reshape"
        dec["pixel_decoder"] = {"name": "maskgit_vqgan"}
    # One-D-Piece trains with k uniform in 1..K; TiTok never drops (k < K still decodes, poorly).
    drop = {"name": "tail_drop", "sampling": "uniform", "drop_prob": 1.0 if tail_drop else 0.0}
    return {
        "image_size": 256,
        "max_tokens": tokens,
        "encoder": enc,
        "decoder": dec,
        "quantizer": quantizer,
        "token_drop": drop,
    }


PRESETS |= {
    "titok_l32_vq": titok_spec("L", "L", 32),
    "titok_b64_vq": titok_spec("B", "B", 64),
    "titok_s128_vq": titok_spec("S", "S", 128),
    "titok_bl64_vq8k": titok_spec("B", "L", 64, vq8k=True),
    "titok_bl128_vq8k": titok_spec("B", "L", 128, vq8k=True),
    "titok_sl256_vq8k": titok_spec("S", "L", 256, vq8k=True),
    "one_d_piece_s256": titok_spec("S", "S", 256, tail_drop=True),
    "one_d_piece_b256": titok_spec("B", "B", 256, tail_drop=True),
    "one_d_piece_l256": titok_spec("L", "L", 256, tail_drop=True),
}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge `overrides` into a copy of `base`; a new component `name` replaces its dict."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        both = isinstance(value, dict) and isinstance(out.get(key), dict)
        if both and value.get("name", out[key].get("name")) == out[key].get("name"):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def preset_spec(name: str, **overrides: Any) -> dict[str, Any]:
    """The spec of preset `name` with `overrides` merged in."""
    if name not in PRESETS:
        raise KeyError(f"unknown tokenizer preset {name!r}; known: {', '.join(sorted(PRESETS))}")
    return merge(PRESETS[name], overrides)
