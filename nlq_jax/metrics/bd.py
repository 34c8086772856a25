"""Bjøntegaard deltas: the average rate saving (BD-rate) and quality gain (BD-PSNR) of a curve.

G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves", ITU-T VCEG-M33,
2001: fit log-rate as a function of quality for each curve, integrate the difference of the fits
over the quality range both curves cover, and report exp(mean difference) − 1; BD-PSNR swaps the
axes (quality as a function of log-rate, averaged over the common log-rate range).

Two interpolations:

- "cubic": one cubic polynomial per curve, least-squares through all points (VCEG-M33).
- "pchip": piecewise cubic Hermite interpolation through the points, integrated exactly, as in
  the JCT-VC/JVET common-test-conditions spreadsheets (JCTVC-L1100, JVET-T2010) that replaced the
  cubic fit because it oscillates on long or uneven curves. This is the default; it needs at
  least two points, the cubic fit at least four.

Rates are any positive rate measure (bpp, kbit/s); quality is PSNR in dB or any measure that
increases with quality (MS-SSIM in dB, say). A negative BD-rate means the test curve needs fewer
bits than the anchor for the same quality.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METHODS = ("pchip", "cubic")


def _curve(
    rate: Sequence[float], quality: Sequence[float], what: str
) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rate, np.float64).ravel()
    q = np.asarray(quality, np.float64).ravel()
    if r.shape != q.shape:
        raise ValueError(f"{what}: {r.size} rates but {q.size} quality values")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(q))):
        raise ValueError(f"{what}: rates and quality values must be finite")
    if np.any(r <= 0):
        raise ValueError(f"{what}: rates must be positive")
    return np.log10(r), q


def _average(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str, what: str) -> float:
    """The mean of the interpolant y(x) over [lo, hi]."""
    if method == "cubic":
        if x.size < 4:
            raise ValueError(f"{what}: the cubic fit needs at least 4 points, got {x.size}")
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        integral = np.polyval(antiderivative, hi) - np.polyval(antiderivative, lo)
    elif method == "pchip":
        from scipy.interpolate import PchipInterpolator

        if x.size < 2:
            raise ValueError(f"{what}: piecewise-cubic interpolation needs at least 2 points")
        order = np.argsort(x, kind="stable")
        x, y = x[order], y[order]
        repeated = x[:-1][np.diff(x) == 0]
        if repeated.size:
            raise ValueError(f"{what}: two points share the same abscissa {repeated[0]}")
        integral = PchipInterpolator(x, y).integrate(lo, hi)
    else:
        raise ValueError(f"unknown BD interpolation {method!r}; use one of {METHODS}")
    return float(integral) / (hi - lo)


def _overlap(a: np.ndarray, b: np.ndarray, axis: str) -> tuple[float, float]:
    lo = max(a.min(), b.min())
    hi = min(a.max(), b.max())
    if not hi > lo:
        raise ValueError(f"the curves do not overlap in {axis}: no Bjøntegaard delta")
    return float(lo), float(hi)


def bd_rate(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-rate of the test curve against the anchor, in percent.

    Args:
      anchor_rate: rates of the anchor's points (bpp), positive.
      anchor_quality: quality of the anchor's points (PSNR in dB), same length.
      test_rate: rates of the test curve's points.
      test_quality: quality of the test curve's points.
      method: "pchip" (JVET CTC, default) or "cubic" (VCEG-M33 polynomial fit).

    Returns:
      100·(10^mean(log10 R_test − log10 R_anchor) − 1) over the common quality range; −10 means
      the test needs 10 % fewer bits at equal quality.

    Raises:
      ValueError: too few points, non-positive rates, or no common quality range.
    """
    lr_a, q_a = _curve(anchor_rate, anchor_quality, "anchor")
    lr_t, q_t = _curve(test_rate, test_quality, "test")
    lo, hi = _overlap(q_a, q_t, "quality")
    diff = _average(q_t, lr_t, lo, hi, method, "test") - _average(
        q_a, lr_a, lo, hi, method, "anchor"
    )
    return float((10.0**diff - 1.0) * 100.0)


def bd_psnr(
    anchor_rate: Sequence[float],
    anchor_quality: Sequence[float],
    test_rate: Sequence[float],
    test_quality: Sequence[float],
    method: str = "pchip",
) -> float:
    """BD-PSNR (or BD of any quality measure): the mean quality gain at equal rate.

    Args:
      anchor_rate: rates of the anchor's points (bpp), positive.
      anchor_quality: quality of the anchor's points (PSNR in dB).
      test_rate: rates of the test curve's points.
      test_quality: quality of the test curve's points.
      method: "pchip" (default) or "cubic".

    Returns:
      mean(Q_test − Q_anchor) over the common log-rate range, in the units of the quality values
      (dB for PSNR); positive means the test curve is better.

    Raises:
      ValueError: too few points, non-positive rates, or no common rate range.
    """
    lr_a, q_a = _curve(anchor_rate, anchor_quality, "anchor")
    lr_t, q_t = _curve(test_rate, test_quality, "test")
    lo, hi = _overlap(lr_a, lr_t, "rate")
    return _average(lr_t, q_t, lo, hi, method, "test") - _average(
        lr_a, q_a, lo, hi, method, "anchor"
    )
