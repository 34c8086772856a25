"""Integer coding tables: valid CDFs that follow the float pmf they were made from."""

import numpy as np
from scipy.special import ndtr

from nlq_jax.entropy.gaussian import scale_table
from nlq_jax.entropy.tables import PRECISION, gaussian_tables, quantize_pmf


def test_quantized_pmf_is_a_valid_integer_cdf():
    rng = np.random.default_rng(0)
    pmf = rng.dirichlet(np.ones(40), size=10) * 0.99
    pmf[3, :20] = 0.0  # zero-probability bins must still be codable
    lengths = rng.integers(3, 42, size=10)
    cdf = quantize_pmf(pmf, lengths)
    for t, n in enumerate(lengths):
        counts = np.diff(cdf[t, : n + 1])
        assert counts.min() >= 1 and counts.sum() == 1 << PRECISION
        assert (cdf[t, n:] == 1 << PRECISION).all()


def test_quantized_pmf_costs_almost_nothing_over_the_float_pmf():
    p = np.array([[0.5, 0.25, 0.125, 0.0625, 0.0625 - 1e-6]])
    counts = np.diff(quantize_pmf(p, [6])[0])
    q = counts / counts.sum()
    kl = np.sum(p[0] * np.log2(p[0] / q[:5]))
    assert kl < 1e-5


def test_gaussian_tables_follow_the_discretized_gaussian():
    scales = scale_table()
    tables = gaussian_tables(scales)
    assert tables.num_tables == 64
    for t in (0, 20, 63):
        s = float(scales[t])
        counts = tables.pmf(t)
        k = tables.offset[t] + np.arange(tables.length[t] - 1)
        expected = ndtr((k + 0.5) / s) - ndtr((k - 0.5) / s)
        got = counts[:-1] / float(1 << PRECISION)
        # Within 2 counts, plus the one count per bin reserved out of the total.
        np.testing.assert_allclose(got, expected, rtol=len(k) * 2.0**-PRECISION, atol=2.0**-23)
        # The support holds all but a negligible tail, left to the escape bin.
        assert counts[-1] / float(1 << PRECISION) < 1e-6
    np.testing.assert_array_equal(tables.offset, -(tables.length - 2) // 2)
