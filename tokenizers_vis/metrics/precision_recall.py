"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall
Metric for Assessing Generative Models"), as ADM's evaluator computes them.

Each feature set's manifold is the union of balls around its points, the radius of a ball being
the distance to the point's k-th nearest neighbour in its own set (k = 3; the point itself is the
0-th). Precision: the fraction of generated points inside the real manifold; recall: the
fraction of real points inside the generated one. Distances are squared Euclidean, which orders
points as the distances do.

Batching: pairwise distances are computed in blocks of ``batch_size`` rows x ``batch_size``
columns (ADM's 10,000 x 10,000), so memory stays at one block whatever the number of images;
the k-th neighbour of each row is kept as a running ``topk`` over column blocks instead of a full
row of distances. ``half=True`` reproduces ADM's arithmetic: its distance block runs in float16
(inputs, norms, product and sum each rounded to float16), falling back to float32 for a block
that overflows. The default is float32, as in torch-fidelity and the original paper's code; the
two differ only for points whose distance lies within float16 rounding of a radius.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["manifold_radii", "in_manifold", "precision_recall", "squared_distances"]


def _round16(x: Tensor) -> Tensor:
    return x.half().float()


def squared_distances(a: Tensor, b: Tensor, half: bool = False) -> Tensor:
    """Pairwise squared Euclidean distances, ``max(|a|^2 - 2 a b^T + |b|^2, 0)``.

    Args:
        a: (m, d) features. b: (n, d) features.
        half: emulate ADM's float16 distance block (see the module docstring).

    Returns:
        (m, n) float32.
    """
    a, b = a.float(), b.float()
    if half:
        a16, b16 = _round16(a), _round16(b)
        norm_a = _round16(a16.square().sum(1))[:, None]  # (m 1)
        norm_b = _round16(b16.square().sum(1))[None, :]  # (1 n)
        d = _round16(_round16(norm_a - 2 * _round16(a16 @ b16.T)) + norm_b).clamp_(min=0)
        if torch.isfinite(d).all():
            return d  # (m n), values on the float16 grid
    d = a.square().sum(1)[:, None] - 2 * (a @ b.T) + b.square().sum(1)[None, :]  # (m n)
    return d.clamp_(min=0)


def manifold_radii(
    features: Tensor, k: int = 3, batch_size: int = 10_000, half: bool = False
) -> Tensor:
    """Squared distance of every point to its k-th nearest neighbour in the same set.

    Args:
        features: (n, d), n > k.
        k: neighbourhood size (the point itself is neighbour 0).
        batch_size: rows and columns per distance block.
        half: ADM's float16 distances.

    Returns:
        (n,) float32.
    """
    n = features.shape[0]
    if n <= k:
        raise ValueError(f"{n} points: the k-th neighbour needs more than k = {k}")
    radii = []
    for start in range(0, n, batch_size):
        rows = features[start : start + batch_size]  # (r d)
        best = None  # (r k+1): the k + 1 smallest distances seen so far
        for col in range(0, n, batch_size):
            block = squared_distances(rows, features[col : col + batch_size], half)  # (r c)
            both = block if best is None else torch.cat([best, block], dim=1)
            best = both.topk(min(k + 1, both.shape[1]), dim=1, largest=False).values
        radii.append(best[:, k])  # topk sorts ascending when largest=False
    return torch.cat(radii)


def in_manifold(
    points: Tensor,
    manifold: Tensor,
    radii: Tensor,
    batch_size: int = 10_000,
    half: bool = False,
) -> Tensor:
    """Whether each point lies in some ball of the manifold (distance <= that ball's radius).

    Args:
        points: (m, d). manifold: (n, d) ball centres. radii: (n,) squared radii.

    Returns:
        (m,) bool.
    """
    inside = []
    for start in range(0, points.shape[0], batch_size):
        rows = points[start : start + batch_size]  # (r d)
        hit = torch.zeros(rows.shape[0], dtype=torch.bool)
        for col in range(0, manifold.shape[0], batch_size):
            block = squared_distances(rows, manifold[col : col + batch_size], half)  # (r c)
            hit |= (block <= radii[None, col : col + batch_size]).any(dim=1)
        inside.append(hit)
    return torch.cat(inside)


def precision_recall(
    real: Tensor,
    fake: Tensor,
    k: int = 3,
    batch_size: int = 10_000,
    half: bool = False,
    real_radii: Tensor | None = None,
) -> tuple[float, float]:
    """Improved precision and recall of generated (or reconstructed) features.

    Args:
        real: (n_r, d) reference features. fake: (n_f, d) generated features.
        k: neighbourhood size (3 in the paper and in ADM's evaluator).
        batch_size: rows / columns per distance block.
        half: ADM's float16 distance arithmetic.
        real_radii: the reference's radii if already computed (they depend only on it).

    Returns:
        (precision, recall) in [0, 1].
    """
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"features of different widths: {real.shape[1]} and {fake.shape[1]}")
    real, fake = real.float().cpu(), fake.float().cpu()
    if real_radii is None:
        real_radii = manifold_radii(real, k, batch_size, half)
    fake_radii = manifold_radii(fake, k, batch_size, half)
    precision = in_manifold(fake, real, real_radii, batch_size, half).double().mean().item()
    recall = in_manifold(real, fake, fake_radii, batch_size, half).double().mean().item()
    return precision, recall
