"""Perceptual distance: LPIPS-style, on frozen TF-Inception features that load offline.

Follows Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric" (LPIPS) in its unlearned form: features of a few layers are unit-normalised over
channels, squared differences are summed over channels, averaged over space, and summed over
layers. What we changed: the backbone is the TF-FID InceptionV3 of
``tokenizers_vis.layers.inception`` instead of VGG16, with all layer weights 1.

Why not LPIPS itself by default: the ``lpips`` package ships only its small linear heads; its VGG16
backbone comes from torchvision's ImageNet weights, which it downloads on first use. vistok must
train and evaluate offline, and the Inception weights are already needed (and verified) for FID,
so the default distance uses them; it also puts the loss in the feature space FID measures.
:func:`load_perceptual` picks LPIPS-VGG only when the ``lpips`` package *and* torchvision's
``vgg16-397923af.pth`` are already on disk, and every module carries a ``metric_name`` so reports
say which distance was used. The two are not interchangeable numbers.

Cost: Inception needs 75 px to reach Mixed_6e, so smaller images are upsampled to ``min_size``
(default 128 px: 4x for 32 px images, ~5x cheaper than the 299 px FID view).
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from einops import reduce
from torch import Tensor, nn

from tokenizers_vis.data.transforms import to_pixel_scale
from tokenizers_vis.layers.inception import InceptionV3Features, load_tf_inception

DEFAULT_LAYERS = ("Conv2d_2b_3x3", "Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e")
VGG16_FILE = "vgg16-397923af.pth"  # torchvision's ImageNet VGG16, what lpips loads


class PerceptualDistance(nn.Module):
    """Unlearned LPIPS on TF-Inception features; differentiable, frozen, always in eval mode.

    Args:
        layers: Inception stages to compare (see ``tokenizers_vis.layers.inception.STAGES``).
        min_size: images with a shorter side below this are upsampled (TF1 bilinear) to it.
        weights: Inception weights file; None searches the usual local places.
        extractor: an already loaded extractor to share (e.g. the FID one); overrides weights.
    """

    metric_name = "perceptual_inception"

    def __init__(
        self,
        layers: Sequence[str] = DEFAULT_LAYERS,
        min_size: int = 128,
        weights: str | os.PathLike | None = None,
        extractor: InceptionV3Features | None = None,
    ) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.min_size = min_size
        self.extractor = extractor if extractor is not None else load_tf_inception(weights)

    def train(self, mode: bool = True) -> PerceptualDistance:
        return super().train(False)  # frozen BatchNorm statistics, whatever the parent does

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Distance per image.

        Args:
            x: (b, 3, h, w) in [-1, 1], e.g. reconstructions (gradients flow to it).
            y: (b, 3, h, w) in [-1, 1], e.g. targets.

        Returns:
            (b,) float32; 0 for identical images.
        """
        h, w = x.shape[-2:]
        scale = max(1.0, self.min_size / min(h, w))
        size = (round(h * scale), round(w * scale))
        pixels = to_pixel_scale(torch.cat([x, y]))  # (2b, 3, h, w) in the uint8 scale
        feats = self.extractor.forward_features(pixels, self.layers, resize=size)
        total = x.new_zeros(x.shape[0], dtype=torch.float32)
        for name in self.layers:
            fx, fy = _unit_channels(feats[name]).chunk(2)  # (b, c, h', w') each
            per_pixel = reduce((fx - fy) ** 2, "b c h w -> b h w", "sum")
            total = total + reduce(per_pixel, "b h w -> b", "mean")
        return total


def _unit_channels(f: Tensor, eps: float = 1e-10) -> Tensor:
    # LPIPS' normalize_tensor: unit L2 norm over channels at every position.
    return f / (f.square().sum(1, keepdim=True).sqrt() + eps)


def lpips_vgg_available() -> bool:
    """True when LPIPS-VGG can be built without any download."""
    weights = Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE
    return importlib.util.find_spec("lpips") is not None and weights.is_file()


class LpipsVgg(nn.Module):
    """The ``lpips`` package's LPIPS-VGG (learned heads), only from local weights."""

    metric_name = "lpips_vgg"

    def __init__(self) -> None:
        super().__init__()
        if not lpips_vgg_available():
            raise FileNotFoundError(
                f"LPIPS-VGG needs `pip install lpips` and torchvision's {VGG16_FILE} in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'}; vistok never downloads it."
            )
        import lpips

        self.net = lpips.LPIPS(net="vgg", verbose=False).eval().requires_grad_(False)

    def train(self, mode: bool = True) -> LpipsVgg:
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Distance per image.

        Args:
            x, y: (b, 3, h, w) in [-1, 1].

        Returns:
            (b,) float32.
        """
        return reduce(self.net(x.float(), y.float()), "b 1 1 1 -> b", "sum")


def load_perceptual(
    kind: Literal["auto", "inception", "lpips_vgg"] = "inception",
) -> nn.Module:
    """A perceptual distance module ``(x, y) -> (b,)``; read its ``metric_name``.

    Args:
        kind: "inception" (offline default), "lpips_vgg" (raises when not available locally),
            or "auto": LPIPS-VGG when available, else Inception, with a warning naming it.
    """
    if kind == "lpips_vgg" or (kind == "auto" and lpips_vgg_available()):
        return LpipsVgg()
    if kind == "auto":
        warnings.warn(
            "LPIPS-VGG backbone not on disk; using the offline Inception perceptual distance "
            "(reported as 'perceptual_inception').",
            stacklevel=2,
        )
    elif kind != "inception":
        raise ValueError(f"unknown perceptual distance {kind!r}; known: auto, inception, lpips_vgg")
    return PerceptualDistance()
