"""Named tokenizer specs. Each is the full `Tokenizer(**spec)` keyword set, the same dict as in
YAML.

Sizes: `tiny_cpu_*` for tests (milliseconds); `emoji32_fsq` trains on a 2-core CPU in well under an
hour; `titok_b64_vq` and `flextok_d12_fsq` mirror the published ImageNet-256 models for GPU users.
"""

from __future__ import annotations

import copy
from typing import Any


def _vit(patch: int, width: int, depth: int, heads: int, name: str = "vit_1d") -> dict[str, Any]:
    return {"name": name, "patch_size": patch, "width": width, "depth": depth, "num_heads": heads}


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
    # The shipped default: 32x32 emoji, 64 tokens x 12 bits (FSQ 8^4 = 4096 codes) = 96 bytes at
    # k=64.
    "emoji32_fsq": {
        "image_size": 32,
        "max_tokens": 64,
        "encoder": _vit(4, 192, 4, 4, "registers"),
        "decoder": _vit(4, 192, 6, 4),
        "quantizer": {"name": "fsq", "levels": [8, 8, 8, 8]},
        "token_drop": {"name": "nested_dropout", "sampling": "uniform_pow2", "drop_prob": 0.8},
    },
    # TiTok-B-64 (Yu et al., 2024): ViT-B/16 encoder and decoder, 64 tokens, VQ 4096 x 12.
    "titok_b64_vq": {
        "image_size": 256,
        "max_tokens": 64,
        "encoder": _vit(16, 768, 12, 12),
        "decoder": _vit(16, 768, 12, 12),
        "quantizer": {"name": "vq", "codebook_size": 4096, "dim": 12},
        "token_drop": {"name": "tail_drop", "sampling": "uniform", "drop_prob": 0.0},
    },
    # FlexTok-like (Bachmann et al., 2025): causal registers, FSQ 64,000 codes, nested dropout over
    # powers of two. FlexTok decodes with rectified flow; the deterministic decoder stands in until
    # the rectified-flow decoder lands.
    "flextok_d12_fsq": {
        "image_size": 256,
        "max_tokens": 256,
        "encoder": _vit(8, 768, 12, 12, "registers") | {"qk_norm": True},
        "decoder": _vit(8, 768, 12, 12) | {"qk_norm": True},
        "quantizer": {"name": "fsq", "levels": [8, 8, 8, 5, 5, 5]},
        "token_drop": {"name": "nested_dropout", "sampling": "pow2"},
    },
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
