"""Gaussian statistics of a feature set (mean, covariance) and the Fréchet distance between two.

The statistics are what FID and sFID compare (Heusel et al. 2017), and what ADM-style reference
batches store (``mu`` / ``sigma`` for pool features, ``mu_s`` / ``sigma_s`` for spatial ones), so
a reference file can be scored against without its images. The covariance is the unbiased one
(``numpy.cov`` / ``ddof=1``), as in the TTUR and ADM code.

``Tr sqrt(S_1 S_2)`` comes from symmetric eigenproblems rather than ``scipy.linalg.sqrtm`` of the
non-symmetric product: with ``R = sqrt(S_1)`` (from ``eigh``), ``R S_2 R`` is symmetric PSD and
similar to ``S_1 S_2``, so its eigenvalues' square roots sum to the trace. It agrees with the
scipy formula where that is well conditioned (tests check it) and never yields the imaginary
parts ``sqrtm`` produces on rank-deficient covariances (e.g. fewer images than dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["GaussianStatistics", "frechet_distance_from_statistics"]


@dataclass(frozen=True)
class GaussianStatistics:
    """Mean (d,) and covariance (d, d) of a feature set, float64 on CPU.

    Attributes:
        mu: (d,) mean.
        sigma: (d, d) unbiased covariance.
        count: number of feature vectors they came from (0 when read from a file without it).
    """

    mu: Tensor
    sigma: Tensor
    count: int = 0

    def __post_init__(self) -> None:
        d = self.mu.shape[0] if self.mu.ndim == 1 else -1
        if self.mu.ndim != 1 or tuple(self.sigma.shape) != (d, d):
            raise ValueError(
                f"statistics need mu (d,) and sigma (d, d), got {tuple(self.mu.shape)} "
                f"and {tuple(self.sigma.shape)}"
            )

    @classmethod
    def from_features(cls, features: Tensor) -> GaussianStatistics:
        """Statistics of (n, d) features, n >= 2."""
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"need (n >= 2, d) features, got {tuple(features.shape)}")
        x = features.detach().double().cpu()  # (n d)
        mu = x.mean(0)  # (d)
        centred = x - mu  # (n d)
        return cls(mu, centred.T @ centred / (x.shape[0] - 1), x.shape[0])

    @property
    def dim(self) -> int:
        return self.mu.shape[0]

    def sqrt_sigma(self) -> Tensor:
        """sqrt(sigma), symmetric (d, d); computed once (a reference's is reused for every k)."""
        root = self.__dict__.get("_sqrt_sigma")
        if root is None:
            s = self.sigma.double()
            lam, vec = torch.linalg.eigh((s + s.T) / 2)  # symmetrised: files store rounded values
            root = (vec * lam.clamp(min=0).sqrt()) @ vec.T
            object.__setattr__(self, "_sqrt_sigma", root)  # a cache, not state: frozen is kept
        return root


def frechet_distance_from_statistics(a: GaussianStatistics, b: GaussianStatistics) -> float:
    """``|mu_a - mu_b|^2 + Tr(S_a) + Tr(S_b) - 2 Tr sqrt(S_a S_b)``, in float64.

    Raises:
        ValueError: the two have different dimensions (e.g. pool vs spatial statistics).
    """
    if a.dim != b.dim:
        raise ValueError(f"statistics of different dimensions: {a.dim} and {b.dim}")
    sa, sb = a.sigma.double(), b.sigma.double()
    root = a.sqrt_sigma()  # (d d)
    middle = root @ sb @ root  # symmetric PSD, similar to S_a S_b
    trace_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    diff = a.mu.double() - b.mu.double()
    return (diff @ diff + sa.trace() + sb.trace() - 2 * trace_sqrt).item()
