"""sFID: the Fréchet distance on spatial Inception features (Nash et al. 2021, "Generating Images
with Sparse Representations"; the metric of ADM's evaluator, Dhariwal & Nichol 2021).

The features are the TF graph's ``mixed_6/conv`` tensor: the ReLU output of the first 1x1
convolution (192 channels, 17 x 17 at 299 px input) of the seventh mixed block, ``Mixed_6d``'s
``branch1x1`` in torch-fidelity's names. Only its first 7 channels are kept and flattened in
TensorFlow's NHWC order, ``(h, w, c)`` with the channel fastest, into 17 * 17 * 7 = 2023
dimensions. The order matters only when comparing with statistics computed elsewhere (ADM's
reference batches store ``mu_s`` / ``sigma_s`` in that order), so we keep it.
"""

from __future__ import annotations

from einops import rearrange
from torch import Tensor

from tokenizers_vis.metrics.feature_statistics import (
    GaussianStatistics,
    frechet_distance_from_statistics,
)

__all__ = ["SPATIAL_CHANNELS", "sfid", "spatial_features"]

SPATIAL_CHANNELS = 7


def spatial_features(conv_map: Tensor) -> Tensor:
    """ADM's spatial features from the ``mixed_6/conv`` map.

    Args:
        conv_map: (b, c, h, w) activations (c = 192, h = w = 17 for the TF graph at 299 px).

    Returns:
        (b, h * w * 7) float32: the first 7 channels, flattened in (h, w, c) order.
    """
    first = conv_map[:, :SPATIAL_CHANNELS].float()  # (b 7 h w)
    return rearrange(first, "b c h w -> b (h w c)").contiguous()


def sfid(real: Tensor | GaussianStatistics, fake: Tensor | GaussianStatistics) -> float:
    """Fréchet distance between spatial features (n, 2023) or their statistics."""
    a = real if isinstance(real, GaussianStatistics) else GaussianStatistics.from_features(real)
    b = fake if isinstance(fake, GaussianStatistics) else GaussianStatistics.from_features(fake)
    return frechet_distance_from_statistics(a, b)
