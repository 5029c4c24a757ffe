"""The ADM evaluator's suite on synthetic features, each checked against an independent
implementation fed the same features: torch-fidelity (IS, precision / recall), numpy / scipy
(FID formula for sFID)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from tokenizers_vis.layers import inception as inc
from tokenizers_vis.metrics.feature_statistics import (
    GaussianStatistics,
    frechet_distance_from_statistics,
)
from tokenizers_vis.metrics.inception_features import FeatureSet
from tokenizers_vis.metrics.inception_score import inception_score
from tokenizers_vis.metrics.precision_recall import (
    manifold_radii,
    precision_recall,
    squared_distances,
)
from tokenizers_vis.metrics.sfid import sfid, spatial_features
from tokenizers_vis.metrics.suite import ReferenceSide, suite_metrics


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _close(ours: float, theirs: float, rel: float = 1e-3) -> bool:
    return abs(ours - theirs) <= rel * max(abs(theirs), 1e-12)


@pytest.mark.parametrize("n", [50, 203])
def test_inception_score_matches_torch_fidelity(n):
    from torch_fidelity.metric_isc import isc_features_to_metric

    # Peaky, class-dependent logits so the score is far from 1.
    logits = torch.randn(n, 1008, generator=_gen(n)) * 4  # (n 1008)
    mean, std = inception_score(logits, splits=10)
    ref = isc_features_to_metric(logits, splits=10, shuffle=False)
    assert mean > 2
    assert _close(mean, ref["inception_score_mean"]) and _close(std, ref["inception_score_std"])


def test_inception_score_follows_adm_for_whole_splits():
    # ADM: consecutive splits of split_size, numpy softmax, no shuffle; n = 10 * split_size.
    logits = torch.randn(60, 1008, generator=_gen(3)) * 3
    p = torch.softmax(logits.double(), 1).numpy()
    scores = []
    for i in range(0, 60, 6):
        part = p[i : i + 6]
        kl = part * (np.log(part) - np.log(part.mean(0, keepdims=True)))
        scores.append(np.exp(kl.sum(1).mean()))
    assert _close(inception_score(logits, 10)[0], float(np.mean(scores)), 1e-9)


def test_inception_score_of_uniform_and_confident_logits():
    assert _close(inception_score(torch.zeros(20, 1008), 10)[0], 1.0, 1e-9)  # no information
    confident = torch.full((20, 1008), -1e4)
    confident[torch.arange(20), torch.arange(20)] = 0  # one sure, distinct class each
    assert _close(inception_score(confident, 1)[0], 20.0, 1e-6)  # exp(log 20)
    with pytest.raises(ValueError, match="splits"):
        inception_score(torch.zeros(5, 1008), 10)


def _cluster_features(n: int, d: int, seed: int, shift: float) -> torch.Tensor:
    centres = torch.randn(5, d, generator=_gen(100)) * 3  # shared by every set
    g = _gen(seed)
    which = torch.randint(0, 5, (n,), generator=g)
    return centres[which] + torch.randn(n, d, generator=g) + shift  # (n d)


@pytest.mark.parametrize("batch_size", [10_000, 37])
def test_precision_recall_match_torch_fidelity(batch_size):
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real = _cluster_features(300, 32, seed=0, shift=0.0)
    fake = _cluster_features(250, 32, seed=1, shift=0.6)
    ours = precision_recall(real, fake, k=3, batch_size=batch_size)
    # torch-fidelity's convention: features_1 generated, features_2 real.
    theirs = calculate_precision_recall_full(fake, real, neighborhood=3, batch_size=10_000)
    assert 0.05 < ours[0] < 0.95 and 0.05 < ours[1] < 0.95  # neither trivially 0 nor 1
    assert _close(ours[0], theirs[0]) and _close(ours[1], theirs[1])


def test_radii_are_the_third_neighbour_in_blocks():
    x = _cluster_features(41, 8, seed=2, shift=0.0)
    full = torch.cdist(x.double(), x.double()).square()  # (n n)
    expected = full.sort(dim=1).values[:, 3]  # index 0 is the point itself
    for batch in (41, 10, 3):
        assert torch.allclose(manifold_radii(x, 3, batch).double(), expected, rtol=1e-4)


def test_half_distances_follow_float16_rounding():
    a, b = _cluster_features(20, 16, 3, 0.0), _cluster_features(30, 16, 4, 0.2)
    exact = squared_distances(a.double(), b.double())
    half = squared_distances(a, b, half=True)
    assert torch.equal(half, half.half().float())  # on the float16 grid
    assert torch.allclose(half.double(), exact.double(), rtol=5e-3, atol=1.0)
    p16, r16 = precision_recall(a.repeat(3, 1), b.repeat(2, 1), half=True)
    p32, r32 = precision_recall(a.repeat(3, 1), b.repeat(2, 1))
    assert abs(p16 - p32) < 0.05 and abs(r16 - r32) < 0.05
    huge = torch.full((2, 4), 300.0)  # squared norms overflow float16: the float32 fallback
    assert torch.isfinite(squared_distances(huge, -huge, half=True)).all()


def _numpy_fid(a: np.ndarray, b: np.ndarray) -> float:
    # The TTUR / ADM formula, written independently with scipy's sqrtm.
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def test_sfid_matches_numpy_scipy_formula():
    maps_r = torch.rand(120, 192, 3, 3, generator=_gen(5)).relu()  # small stand-in maps
    maps_f = (torch.rand(110, 192, 3, 3, generator=_gen(6)) * 1.2 - 0.05).relu()
    real, fake = spatial_features(maps_r), spatial_features(maps_f)  # (n 63)
    assert real.shape == (120, 3 * 3 * 7)
    ours = sfid(real, fake)
    assert ours > 0.05 and _close(ours, _numpy_fid(real.double().numpy(), fake.double().numpy()))
    assert sfid(real, real) == pytest.approx(0.0, abs=1e-8)


def test_spatial_features_are_tensorflow_nhwc_order():
    conv = torch.arange(2 * 192 * 17 * 17, dtype=torch.float32).reshape(2, 192, 17, 17)
    flat = spatial_features(conv)  # (2 2023)
    assert flat.shape == (2, 2023)
    nhwc = conv.permute(0, 2, 3, 1)[..., :7].reshape(2, -1)  # TF: spatial[..., :7] then reshape
    assert torch.equal(flat, nhwc)


def test_statistics_match_numpy_cov_and_refuse_mismatched_dims():
    x = torch.randn(30, 6, generator=_gen(7))
    stats = GaussianStatistics.from_features(x)
    assert np.allclose(stats.sigma.numpy(), np.cov(x.double().numpy(), rowvar=False))
    other = GaussianStatistics.from_features(torch.randn(30, 5, generator=_gen(8)))
    with pytest.raises(ValueError, match="dimensions"):
        frechet_distance_from_statistics(stats, other)


def test_suite_reports_every_metric_and_says_why_is_is_missing():
    g = _gen(9)  # narrow stand-ins for the 2048 / 2023 / 1008-wide features
    real = FeatureSet(_cluster_features(40, 16, 10, 0.0), torch.rand(40, 12, generator=g))
    fake = FeatureSet(
        _cluster_features(30, 16, 11, 0.3),
        torch.rand(30, 12, generator=g),
        torch.randn(30, 50, generator=g),
    )
    out = suite_metrics(ReferenceSide.from_features(real), fake)
    for name in ("fid", "sfid", "inception_score", "precision", "recall", "kid_mean"):
        assert isinstance(out[name], float), name
    assert out["sfid"] == pytest.approx(sfid(real.spatial, fake.spatial), rel=1e-6)
    no_logits = suite_metrics(
        ReferenceSide.from_features(real), FeatureSet(fake.pool, fake.spatial)
    )
    assert no_logits["inception_score"] is None and "classifier" in no_logits["notes"]
    assert inc.WEIGHTS_ENV in no_logits["notes"]  # says how to supply the weights that have it
    stats_only = ReferenceSide(
        GaussianStatistics.from_features(real.pool), GaussianStatistics.from_features(real.spatial)
    )
    partial = suite_metrics(stats_only, fake)
    assert partial["precision"] is None and partial["fid"] == pytest.approx(out["fid"])
