"""REPA: align an intermediate layer of a flow network with a frozen teacher's features.

Paper: Yu et al., "Representation Alignment for Generation: Training Diffusion Transformers Is
Easier Than You Think" (REPA, ICLR 2025): an MLP projects the hidden states of the noisy input's
patches at one layer, and the loss is their negative cosine similarity with a frozen encoder's
patch features of the clean image. FlexTok trains its rectified-flow decoder with it.

What we changed: the teacher is any frozen module mapping images (b 3 h w) in [-1, 1] either to
a feature map (b d h' w'), resized (bilinear) to the decoder's patch grid and compared patch by
patch as in REPA, or to pooled features (b d), compared with the mean of the projected patches (a
global alignment, weaker than REPA's, for teachers that only pool). Targets are centred per
channel over the batch: post-ReLU features (Inception's) are non-negative, so raw cosines sit
near 1 and a constant projection would already score well. The training system's default
teacher is the shared offline TF-FID Inception of `tokenizers_vis.losses.teachers` (the paper's
DINOv2 downloads). The term is `1 - cos`: >= 0, with REPA's gradient.
"""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange, reduce
from timm.layers import Mlp
from torch import Tensor, nn


class RepaProjector(nn.Module):
    """hidden (b p w) -> (b p dim): REPA's MLP head (SiLU), trained with the decoder."""

    def __init__(self, width: int, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.mlp = Mlp(width, hidden or 4 * width, dim, act_layer=nn.SiLU)

    def forward(self, hidden: Tensor) -> Tensor:
        return self.mlp(hidden)


def repa_cosine_distance(projected: Tensor, target: Tensor, grid: tuple[int, int]) -> Tensor:
    """Mean `1 - cos` between projected patches and the teacher's features.

    Args:
        projected: (b p d) projected hidden states, p = gh * gw in row-major order.
        target: teacher features of the clean images: a map (b d h w), resized to the grid and
            compared per patch, or pooled (b d), compared with the patches' mean.
        grid: (gh, gw), the decoder's patch grid.

    Returns:
        () scalar in [0, 2], fp32.
    """
    if projected.shape[-1] != target.shape[1]:
        raise ValueError(
            f"REPA projector gives {projected.shape[-1]} features but the teacher {target.shape[1]}"
            "; set the decoder's repa_dim to the teacher's feature size"
        )
    projected = projected.float()
    if target.dim() == 2:
        pooled = reduce(projected, "b p d -> b d", "mean")
        target = target.float() - target.float().mean(0)  # (b d) centred over the batch
        return (1 - F.cosine_similarity(pooled, target, dim=-1)).mean()
    target = F.interpolate(target.float(), size=grid, mode="bilinear", align_corners=False)
    target = rearrange(target, "b d gh gw -> b (gh gw) d")  # (b p d)
    target = target - reduce(target, "b p d -> 1 1 d", "mean")  # centred per channel
    return (1 - F.cosine_similarity(projected, target, dim=-1)).mean()
