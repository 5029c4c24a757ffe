"""Named tokenizer specs. Each is the full `Tokenizer(**spec)` keyword set, the same dict as in
YAML.

Sizes: `tiny_cpu_*` for tests (milliseconds); `emoji32_fsq` trains on a 2-core CPU in well under an
hour; `titok_b64_vq` mirrors TiTok-B-64's shape; `flextok_d12` / `flextok_d18` / `flextok_d28` are
the published FlexTok models' architectures (convert their weights with `convert/flextok.py`).
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
    # TiTok-B-64 (Yu et al., 2024): ViT-B/16 encoder and decoder, 64 tokens, VQ 4096 x 12.
    "titok_b64_vq": {
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
