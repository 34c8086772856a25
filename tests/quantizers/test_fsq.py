"""Finite scalar quantization: the implicit codebook, its index bijection, and the gradient."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.quantizers.fsq import FSQ


def grid(levels):
    """Reference: every code of the implicit codebook, channel 0 fastest, normalised as in
    Mentzer et al. 2024 (integer levels, half-offset for even L, divided by L // 2)."""
    axes = []
    for n in levels:
        lo = -(n // 2) if n % 2 == 0 else -(n - 1) // 2
        axes.append(np.arange(lo, lo + n) / (n // 2))
    return np.array([c[::-1] for c in itertools.product(*axes[::-1])], np.float32)


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (2, 3, 4)])
def test_indices_and_codes_are_a_bijection(levels):
    fsq = FSQ(levels)
    total = int(np.prod(levels))
    assert fsq.num_codes == (total,)
    indices = jnp.arange(total, dtype=jnp.int32)[:, None]
    codes = fsq.apply({}, indices, method="indices_to_codes")
    np.testing.assert_array_equal(codes, grid(levels))
    np.testing.assert_array_equal(fsq.apply({}, codes, method="codes_to_indices"), indices)

    # The forward pass reaches every code: z chosen so that the bounded value lies inside
    # each code's rounding bin.
    half = np.array([n // 2 for n in levels], np.float64)
    rounded = grid(levels) * half
    offset = np.array([0.5 if n % 2 == 0 else 0.0 for n in levels])
    half_l = (np.array(levels) - 1) * (1 - 1e-3) / 2
    target = rounded - 0.25 * np.sign(rounded + offset)
    z = np.arctanh((target + offset) / half_l) - np.tan(offset / half_l)
    z_q, got, aux = fsq.apply({}, jnp.asarray(z, jnp.float32), training=False)
    np.testing.assert_array_equal(got, indices)
    np.testing.assert_array_equal(z_q, codes)
    assert float(aux["usage"]) == 1.0
    np.testing.assert_allclose(float(aux["perplexity"]), total, rtol=1e-4)


def test_gradient_is_straight_through_the_rounding_of_the_bound():
    levels = (8, 5, 2)
    fsq = FSQ(levels)
    z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3)) * 2, jnp.float32)
    w = jnp.asarray(np.random.default_rng(1).normal(size=z.shape), jnp.float32)
    z_q, indices, _ = fsq.apply({}, z, training=True)
    np.testing.assert_array_equal(z_q, fsq.apply({}, indices, method="decode"))
    assert np.isfinite(np.asarray(z_q)).all()
    grad = jax.jit(jax.grad(lambda z: jnp.sum(w * fsq.apply({}, z, training=True)[0])))(z)
    # Reference: d/dz [tanh(z + s)·h − o] / (L // 2), computed in numpy.
    lv = np.array(levels, np.float64)
    half_l = (lv - 1) * (1 - 1e-3) / 2
    shift = np.tan(np.where(lv % 2 == 0, 0.5, 0.0) / half_l)
    expected = np.asarray(w) * (1 - np.tanh(np.asarray(z) + shift) ** 2) * half_l / (lv // 2)
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-7)
