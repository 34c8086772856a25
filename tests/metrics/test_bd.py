"""Bjøntegaard deltas against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nlq_jax.metrics import bd

METHODS = ["pchip", "cubic"]
# An anchor curve with a realistic bend: PSNR vs bpp of a JPEG-like codec.
RATE = np.array([0.25, 0.4, 0.6, 0.9, 1.3, 2.0])
PSNR = np.array([27.0, 29.1, 30.9, 32.6, 34.2, 36.3])


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_of_a_curve_using_nine_tenths_of_the_bits_is_minus_ten_percent(method):
    assert bd.bd_rate(RATE, PSNR, 0.9 * RATE, PSNR, method=method) == pytest.approx(-10.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_psnr_of_a_curve_shifted_up_by_half_a_db_is_half_a_db(method):
    assert bd.bd_psnr(RATE, PSNR, RATE, PSNR + 0.5, method=method) == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_bd_rate_with_a_saving_varying_linearly_in_quality_matches_the_hand_integral(method):
    # Anchor: log10 R = (Q - 30)/8 - 1 on Q in [30, 38]. Test on Q in [32, 40]:
    # log10 R_t = log10 R_a(Q) + log10(0.8)·(38 - Q)/8. Both are straight lines, which both
    # interpolations reproduce exactly. On the common range [32, 38] the mean log-ratio is
    # log10(0.8)·(3/8), so BD-rate = 0.8^(3/8) - 1.
    qa = np.array([30.0, 32.0, 34.0, 36.0, 38.0])
    qt = np.array([32.0, 34.0, 36.0, 38.0, 40.0])
    ra = 10 ** ((qa - 30) / 8 - 1)
    rt = 10 ** ((qt - 30) / 8 - 1 + math.log10(0.8) * (38 - qt) / 8)
    expected = (0.8 ** (3 / 8) - 1) * 100
    assert bd.bd_rate(ra, qa, rt, qt, method=method) == pytest.approx(expected, abs=1e-9)


def test_pchip_and_cubic_agree_where_the_curve_is_a_cubic_in_quality():
    q = np.linspace(28, 38, 7)
    log_r = 0.002 * (q - 33) ** 3 + 0.11 * (q - 28) - 0.7  # monotone cubic
    qt = q + 0.3
    a = bd.bd_rate(10**log_r, q, 10**log_r, qt, method="cubic")
    b = bd.bd_rate(10**log_r, q, 10**log_r, qt, method="pchip")
    assert a == pytest.approx(b, abs=0.1)


def test_pchip_bd_rate_matches_dense_trapezoid_integration():
    from scipy.interpolate import pchip_interpolate

    rt = RATE * np.array([0.8, 0.85, 0.9, 0.92, 0.95, 0.97])
    qt = PSNR + 0.1
    lo, hi = max(PSNR.min(), qt.min()), min(PSNR.max(), qt.max())
    grid = np.linspace(lo, hi, 200001)
    diff = pchip_interpolate(qt, np.log10(rt), grid) - pchip_interpolate(PSNR, np.log10(RATE), grid)
    expected = (10 ** (np.trapezoid(diff, grid) / (hi - lo)) - 1) * 100
    assert bd.bd_rate(RATE, PSNR, rt, qt) == pytest.approx(expected, abs=1e-6)


def test_bd_rate_is_the_inverse_when_the_curves_swap_roles():
    rt, qt = RATE * 0.7, PSNR + np.linspace(0, 0.4, 6)
    forward = 1 + bd.bd_rate(RATE, PSNR, rt, qt) / 100
    backward = 1 + bd.bd_rate(rt, qt, RATE, PSNR) / 100
    assert forward * backward == pytest.approx(1.0, abs=1e-12)


def test_point_order_does_not_matter():
    order = np.array([3, 0, 5, 1, 4, 2])
    for method in METHODS:
        a = bd.bd_rate(RATE, PSNR, 0.8 * RATE, PSNR + 0.2, method=method)
        b = bd.bd_rate(RATE[order], PSNR[order], 0.8 * RATE[::-1], PSNR[::-1] + 0.2, method=method)
        assert a == pytest.approx(b, abs=1e-9)


def test_curves_without_common_quality_range_are_refused():
    with pytest.raises(ValueError, match="do not overlap"):
        bd.bd_rate(RATE, PSNR, RATE, PSNR + 20)


def test_cubic_fit_needs_four_points_and_rates_must_be_positive():
    with pytest.raises(ValueError, match="at least 4"):
        bd.bd_rate(RATE[:3], PSNR[:3], RATE[:3], PSNR[:3], method="cubic")
    with pytest.raises(ValueError, match="positive"):
        bd.bd_rate(RATE - 1, PSNR, RATE, PSNR)


def test_a_repeated_abscissa_is_a_value_error_not_an_index_error():
    rate, quality = [0.1, 0.2, 0.2, 0.4], [30.0, 31.0, 31.5, 33.0]
    with pytest.raises(ValueError, match="same abscissa"):
        bd.bd_psnr(rate, quality, [0.1, 0.2, 0.3, 0.4], [29.0, 30.0, 31.0, 32.0])
