"""The decoder contract: deterministic and rectified-flow decoders share it."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor


@dataclass
class DecoderOutput:
    """What a decoder returns in training.

    Attributes:
        images: (b 3 h w) the decoder's estimate of the input (unclamped); the training system puts
            reconstruction, perceptual and adversarial losses on it.
        losses: unweighted named terms the decoder owns (a flow-matching loss, for instance).
        features: (b f gh gw) an intermediate layer's projected patch features on the decoder's
            patch grid, for a representation-alignment loss (REPA) the training system owns; None
            when the decoder has no such layer.
    """

    images: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    features: Tensor | None = None
