"""FlexTok-style register encoder.

Paper: Bachmann et al., "FlexTok: Resampling Images into 1D Token Sequences of Flexible Length"
(2025).
FlexTok appends register tokens to the patch sequence and gives the registers a causal mask, so the
register sequence is ordered coarse to fine by construction. That is the TiTok encoder with a
different attention mask, so this is a preset of `ViT1DEncoder`, not a copy of it.
"""

from __future__ import annotations

from typing import Any

from tokenizers_vis.encoders.vit_1d import ViT1DEncoder
from tokenizers_vis.registry import ENCODERS


@ENCODERS.register("registers")
def register_encoder(**kwargs: Any) -> ViT1DEncoder:
    """`ViT1DEncoder` with causal register attention (set `latent_attention` to ablate)."""
    kwargs.setdefault("latent_attention", "causal")
    return ViT1DEncoder(**kwargs)
