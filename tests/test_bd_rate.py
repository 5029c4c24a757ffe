"""Bjontegaard deltas on curves whose answer is known by hand."""

import math

import numpy as np
import pytest

from tokenizers_vis.metrics import bd_quality, bd_rate, bjontegaard
from tokenizers_vis.metrics.bd_rate import efficient_points

RATES = np.array([100.0, 200.0, 400.0, 800.0, 1600.0])


def psnr_of(rates, offset=0.0):
    # 3 dB per doubling of the rate: linear in log rate, so every cubic fit is exact.
    return 20.0 + 3.0 * np.log2(rates) + offset


def test_identical_curves_give_zero():
    out = bjontegaard(RATES, psnr_of(RATES), RATES, psnr_of(RATES))
    assert out.rate == pytest.approx(0.0, abs=1e-9)
    assert out.quality == pytest.approx(0.0, abs=1e-9)
    assert out.rate_reason is None and out.quality_reason is None


def test_half_the_rate_everywhere_is_minus_fifty_percent():
    assert bd_rate(RATES, psnr_of(RATES), RATES / 2, psnr_of(RATES)) == pytest.approx(-50.0)
    assert bd_rate(RATES / 2, psnr_of(RATES), RATES, psnr_of(RATES)) == pytest.approx(100.0)


def test_half_the_rate_on_a_curved_line_too():
    quality = np.array([20.0, 24.0, 26.5, 28.0, 29.0])  # concave, as real curves are
    assert bd_rate(RATES, quality, RATES / 2, quality) == pytest.approx(-50.0)


def test_a_constant_shift_in_db_is_the_delta_psnr():
    shifted = psnr_of(RATES, offset=1.5)
    assert bd_quality(RATES, psnr_of(RATES), RATES, shifted) == pytest.approx(1.5)
    # 1.5 dB at 3 dB per doubling is half a doubling: 2**-0.5 of the rate.
    expected = 100.0 * (2.0**-0.5 - 1.0)
    assert bd_rate(RATES, psnr_of(RATES), RATES, shifted) == pytest.approx(expected)


def test_no_overlap_is_none_with_a_reason():
    far = RATES * 1000.0
    out = bjontegaard(RATES, psnr_of(RATES), far, psnr_of(RATES, offset=100.0))
    assert out.rate is None and out.quality is None
    assert "no quality interval" in out.rate_reason and "no rate interval" in out.quality_reason


def test_fewer_than_four_points_is_none():
    out = bjontegaard(RATES, psnr_of(RATES), RATES[:3], psnr_of(RATES[:3]))
    assert out.rate is None and "test curve has 3 efficient points" in out.rate_reason


def test_saturated_points_are_dropped_before_fitting():
    rates = np.append(RATES, [3200.0, 6400.0])
    quality = np.append(psnr_of(RATES), [psnr_of(RATES)[-1]] * 2)  # no gain past 1600
    r, q = efficient_points(rates, quality)
    assert r.tolist() == RATES.tolist() and q.tolist() == psnr_of(RATES).tolist()
    assert bd_rate(RATES, psnr_of(RATES), rates / 2, quality) == pytest.approx(-50.0)


def test_a_lower_is_better_metric_keeps_its_sign():
    fid = 100.0 - 10.0 * np.log2(RATES)  # falls as the rate grows
    out = bjontegaard(RATES, fid, RATES / 2, fid, lower_is_better=True)
    assert out.rate == pytest.approx(-50.0)
    better = bjontegaard(RATES, fid, RATES, fid - 5.0, lower_is_better=True)
    assert better.quality == pytest.approx(-5.0)
    assert better.rate == pytest.approx(100.0 * (2.0**-0.5 - 1.0))
    # Read as higher-is-better, the same falling curves have no efficient points past the first.
    assert bjontegaard(RATES, fid, RATES / 2, fid).rate is None


def test_order_and_non_finite_points_do_not_matter():
    order = [3, 0, 4, 1, 2]
    rates = np.append(RATES[order], 50.0)
    quality = np.append(psnr_of(RATES)[order], math.nan)
    assert bd_rate(RATES, psnr_of(RATES), rates / 2, quality) == pytest.approx(-50.0)
