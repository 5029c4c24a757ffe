"""Named GPT architectures. A preset holds only the architecture: the vocabularies, K and the
classes come from the data (the pretokenized shards' `{split}.json`) when a run starts.

    gpt_tiny    tests: milliseconds a step
    gpt_emoji   the 32x32 emoji GPT (2.2 M parameters, 9 MB fp32 with emoji32's 4096 codes):
                ~1.0 s a step of 64 x 64 tokens on 2 CPU cores, so 3,000 steps in under an hour
                (width 192 / 6 heads: 4.2 M parameters, ~1.8 s a step)
    gpt_b       LlamaGen's GPT-B (12 x 768, ~110 M parameters) for ImageNet on GPUs
"""

from __future__ import annotations

import copy
from typing import Any

GPT_PRESETS: dict[str, dict[str, Any]] = {
    "gpt_tiny": {"width": 32, "depth": 2, "num_heads": 2, "head_depth": 1},
    "gpt_emoji": {"width": 128, "depth": 6, "num_heads": 4, "head_depth": 1, "dropout": 0.1},
    "gpt_b": {"width": 768, "depth": 12, "num_heads": 12, "head_depth": 2, "dropout": 0.1},
}

# Spec keys the data decides (see `gpt_spec`).
DATA_KEYS = ("vocab_sizes", "max_tokens", "num_classes", "class_names")


def list_gpts() -> list[str]:
    return sorted(GPT_PRESETS)


def gpt_spec(
    gpt: str | dict[str, Any], data_info: dict[str, Any] | None = None, **overrides: Any
) -> dict[str, Any]:
    """A full `GPT(**spec)` from a preset name or a (partial) spec, the data's fields and overrides.

    Args:
        gpt: preset name, or a dict (optionally with `"name": preset` plus changed keys).
        data_info: `vocab_sizes`, `max_tokens`, `num_classes`, `class_names` of the token data;
            where the spec also gives one of them, they must agree.
        **overrides: keys that replace the preset's.

    Raises:
        KeyError: unknown preset. ValueError: spec and data disagree, or data fields missing.
    """
    spec = {"name": gpt} if isinstance(gpt, str) else copy.deepcopy(dict(gpt))
    name = spec.pop("name", None)
    if name is not None:
        if name not in GPT_PRESETS:
            raise KeyError(f"unknown GPT preset {name!r}; known: {', '.join(list_gpts())}")
        spec = {**copy.deepcopy(GPT_PRESETS[name]), **spec}
    spec.update(overrides)
    for key in DATA_KEYS:
        if not data_info or data_info.get(key) is None:
            continue
        value = data_info[key]
        value = list(value) if isinstance(value, list | tuple) else value
        if spec.get(key) is not None and spec[key] != value:
            raise ValueError(f"the GPT spec has {key}={spec[key]!r}, the token data {value!r}")
        spec[key] = value
    missing = [k for k in ("vocab_sizes", "max_tokens") if spec.get(k) is None]
    if missing:
        raise ValueError(f"GPT spec lacks {', '.join(missing)} (give them or token data)")
    return spec
