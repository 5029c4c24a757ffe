"""Warm starts: a run that begins from a pretrained tokenizer's weights, whole or by component.

Fine-tuning, carrying a long run across machines (where a Lightning checkpoint with its optimizer
state cannot travel), or training a new decoder on a pretrained tokenizer's frozen tokens. Specs
must agree on the architecture; settings that only change how a tokenizer trains or samples may
differ.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from tokenizers_vis.tokenizer import Tokenizer

# Spec keys that only change how a tokenizer trains or samples, not which weights it has.
TRAINING_ONLY_KEYS = {
    "token_drop": {"sampling", "drop_prob", "min_tokens"},
    "decoder": {"num_steps", "sampler", "guidance_scale", "cond_dropout", "time_sampling"},
}
PARTS = ("encoder", "quantizer", "token_drop", "decoder")  # the Tokenizer's components


def architecture(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without its training-only settings: two specs with equal architectures load each
    other's weights."""
    out = copy.deepcopy(spec)
    for key, fields in TRAINING_ONLY_KEYS.items():
        for field in fields:
            out.get(key, {}).pop(field, None)
    return out


def check_parts(parts: Iterable[str], what: str) -> list[str]:
    parts = list(parts)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ValueError(f"{what}: unknown parts {unknown}; known: {', '.join(PARTS)}")
    return parts


def warm_start(tokenizer: Tokenizer, init_from: str, parts: list[str] | None = None) -> None:
    """Copy the weights of pretrained `init_from` into `tokenizer` (strict: same architecture).

    `parts` (e.g. ["encoder", "quantizer"]) copies only those components, which then must agree
    with `init_from` (with the shared sizes); the others keep their fresh initialisation, so a
    new decoder can learn on a pretrained tokenizer's tokens.
    """
    pretrained = Tokenizer.from_pretrained(init_from)
    ours, theirs = architecture(tokenizer.config), architecture(pretrained.config)
    if parts is not None:
        keys = ["image_size", "max_tokens", *check_parts(parts, "init_from_parts")]
        ours, theirs = ({k: spec[k] for k in keys} for spec in (ours, theirs))
    if ours != theirs:
        raise ValueError(
            f"init_from {init_from!r} has a different architecture: {theirs} vs this run's {ours}"
        )
    if parts is None:
        tokenizer.load_state_dict(pretrained.state_dict(), strict=True)
        return
    for part in parts:
        getattr(tokenizer, part).load_state_dict(getattr(pretrained, part).state_dict())
