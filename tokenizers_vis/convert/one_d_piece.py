"""Published One-D-Piece checkpoints (Miwa et al., 2025; turingmotors/One-D-Piece) -> vistok.

One-D-Piece is TiTok's stage-2 network (L2-normalised VQ 4,096 x 12, raw-reshape code head,
MaskGIT-VQGAN decoding) trained with tail token drop, so every prefix of its 256 tokens decodes.
Its checkpoints use TiTok's names, so the key map is TiTok's (`convert/titok.py`); the spec differs
in the token drop, which samples k uniformly in 1..K during training, as published.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from tokenizers_vis.convert.base import ConversionError, Converted, Family, register_family
from tokenizers_vis.convert.titok import convert_titok
from tokenizers_vis.presets import PRESETS


@register_family
class OneDPieceFamily(Family):
    """One-D-Piece-S/B/L-256. Sources: "model" and, when the checkpoint lacks the VQGAN decoder,
    "vqgan" (MaskGIT-VQGAN's published weights)."""

    name = "one_d_piece"
    sources = ("model", "vqgan")

    def convert(
        self, tensors: dict[str, dict[str, Tensor]], config: dict[str, Any] | None = None
    ) -> Converted:
        model = tensors.get("model", {})
        if "decoder.conv_out.weight" in model and "decoder.ffn.2.weight" not in model:
            raise ConversionError(
                "model: has decoder.conv_out.weight and no decoder.ffn.2.weight, a TiTok VQ8k"
                " pixel head; One-D-Piece decodes through the MaskGIT-VQGAN (convert it as titok)"
            )
        return convert_titok(
            self.name,
            tensors,
            config,
            tail_drop=True,
            presets=[n for n in PRESETS if n.startswith("one_d_piece_")],
        )
