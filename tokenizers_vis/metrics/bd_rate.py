"""Bjontegaard deltas between two rate-distortion curves (G. Bjontegaard, "Calculation of
average PSNR differences between RD-curves", VCEG-M33, 2001).

    from tokenizers_vis.metrics.bd_rate import bd_rate, bjontegaard
    bd_rate(webp_bytes, webp_psnr, tokens_bytes, tokens_psnr)   # -12.5: 12.5 % fewer bytes
    bjontegaard(webp_bytes, webp_psnr, tokens_bytes, tokens_psnr).rate_reason  # why None

BD-rate: the log of the rate is fitted as a cubic polynomial of the quality, for each curve;
both fits are integrated over the quality interval the two curves share, and the mean
difference of log rates d gives ``100 * (exp(d) - 1)``: the average percent of rate the test
curve spends more (positive) or less (negative) than the anchor at equal quality. BD-quality
(BD-PSNR for PSNR): the quality as a cubic of the log rate, integrated over the shared log-rate
interval; the mean difference is in the metric's own units (dB).

What we add to the method as described: the fit is least squares when a curve has more than
four points (the original interpolates exactly four). Each curve is first reduced to its
efficient points (a point that a cheaper one matches or beats in quality is dropped): a
saturated model's last k add bytes and no quality, and a curve that turns back on itself has
no single rate for a quality to fit. A curve with fewer than four efficient points, or two
curves that share no interval, give None and say why.

Lower-is-better metrics (rFID, KID, a perceptual distance): pass ``lower_is_better=True``; the
metric is negated for the fit and the quality delta is reported in the metric's own sign
(negative = the test curve is better). BD-rate is still "percent of rate at equal metric", which
is sound for any metric that improves monotonically with rate: nothing in the method needs dB.
Two cautions: the average is uniform over the metric's scale (for FID an interval from 200 to
20 counts each FID unit equally, so the poor end weighs as much as the good one), and a noisy
metric (FID of a few hundred images) is not monotone in rate, so more of its points are dropped
as inefficient; read such a BD-rate as coarse.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BjontegaardDelta", "bd_quality", "bd_rate", "bjontegaard", "efficient_points"]

MIN_POINTS = 4  # a cubic needs four


@dataclass(frozen=True)
class BjontegaardDelta:
    """Both deltas of a test curve against an anchor curve.

    Attributes:
        rate: percent rate at equal quality (negative: the test curve spends less), or None.
        rate_reason: why `rate` is None (None when it is a number).
        quality: mean quality difference at equal rate in the metric's units (PSNR: dB), or
            None.
        quality_reason: why `quality` is None.
    """

    rate: float | None
    rate_reason: str | None
    quality: float | None
    quality_reason: str | None


def efficient_points(
    rates: Sequence[float], quality: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """The points no cheaper point matches: rate and quality both strictly increasing.

    Args:
        rates: (n,) positive rates (bytes, bits per pixel: any unit, the same for both curves).
        quality: (n,) higher is better.

    Returns:
        (rates, quality), sorted by rate, non-finite points dropped.
    """
    r, q = np.asarray(rates, dtype=float), np.asarray(quality, dtype=float)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError(f"rates and quality must be 1-D of one length, got {r.shape}, {q.shape}")
    ok = np.isfinite(r) & np.isfinite(q) & (r > 0)
    order = np.lexsort((-q[ok], r[ok]))  # by rate; at equal rate the best quality first
    keep_r, keep_q = [], []
    for x, y in zip(r[ok][order], q[ok][order], strict=True):
        if not keep_q or (y > keep_q[-1] and x > keep_r[-1]):
            keep_r.append(x)
            keep_q.append(y)
    return np.asarray(keep_r), np.asarray(keep_q)


def _mean_gap(
    xa: np.ndarray, ya: np.ndarray, xt: np.ndarray, yt: np.ndarray, what: str, sign: float
) -> float | str:
    """Mean of (test fit - anchor fit) over the shared x interval; a reason string if none.

    `what`: "quality" (x is sign * metric) or "rate" (x is log rate); the reason shows either
    in its own units."""
    lo, hi = max(xa.min(), xt.min()), min(xa.max(), xt.max())
    if not lo < hi:
        a, t = [np.exp(x) if what == "rate" else np.sort(sign * x) for x in (xa, xt)]
        return (
            f"the curves share no {what} interval (anchor {a.min():.4g}..{a.max():.4g}, "
            f"test {t.min():.4g}..{t.max():.4g})"
        )
    # Centring keeps the cubic's normal equations well conditioned at any scale.
    centre, scale = (lo + hi) / 2, (hi - lo) / 2
    integrals = []
    for x, y in ((xa, ya), (xt, yt)):
        primitive = np.polyint(np.polyfit((x - centre) / scale, y, 3))
        integrals.append(np.polyval(primitive, 1.0) - np.polyval(primitive, -1.0))
    return float((integrals[1] - integrals[0]) / 2.0)


def bjontegaard(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    lower_is_better: bool = False,
) -> BjontegaardDelta:
    """BD-rate and BD-quality of the test curve against the anchor (module docstring).

    Args:
        anchor_rate: (n,) rates of the anchor (e.g. WebP's bytes per image at each quality).
        anchor_quality: (n,) its metric at those rates.
        test_rate: (m,) rates of the curve compared, in the same unit.
        test_quality: (m,) its metric.
        lower_is_better: the metric improves downwards (rFID, KID, LPIPS).
    """
    sign = -1.0 if lower_is_better else 1.0
    ra, qa = efficient_points(anchor_rate, sign * np.asarray(anchor_quality, dtype=float))
    rt, qt = efficient_points(test_rate, sign * np.asarray(test_quality, dtype=float))
    few = [
        f"the {name} curve has {len(r)} efficient points (a cubic needs {MIN_POINTS})"
        for name, r in (("anchor", ra), ("test", rt))
        if len(r) < MIN_POINTS
    ]
    if few:
        return BjontegaardDelta(None, few[0], None, few[0])
    log_gap = _mean_gap(qa, np.log(ra), qt, np.log(rt), "quality", sign)
    quality_gap = _mean_gap(np.log(ra), qa, np.log(rt), qt, "rate", sign)
    rate = None if isinstance(log_gap, str) else 100.0 * float(np.expm1(log_gap))
    quality = None if isinstance(quality_gap, str) else sign * quality_gap
    return BjontegaardDelta(
        rate,
        log_gap if isinstance(log_gap, str) else None,
        quality,
        quality_gap if isinstance(quality_gap, str) else None,
    )


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    lower_is_better: bool = False,
) -> float | None:
    """Percent rate of the test curve against the anchor at equal quality, or None (the reason:
    `bjontegaard(...).rate_reason`)."""
    return bjontegaard(
        anchor_rate, anchor_quality, test_rate, test_quality, lower_is_better=lower_is_better
    ).rate


def bd_quality(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    *,
    lower_is_better: bool = False,
) -> float | None:
    """Mean quality difference (test - anchor) at equal rate, BD-PSNR for PSNR, or None (the
    reason: `bjontegaard(...).quality_reason`)."""
    return bjontegaard(
        anchor_rate, anchor_quality, test_rate, test_quality, lower_is_better=lower_is_better
    ).quality
