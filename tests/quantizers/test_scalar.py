"""The scalar quantizer's modes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.quantizers.scalar import quantize

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 7, 3)) * 4, jnp.float32)
OFFSET = jnp.asarray([0.3, -0.25, 0.0])


def test_round_centres_the_grid_on_the_offset():
    expected = np.round(np.asarray(X) - np.asarray(OFFSET)) + np.asarray(OFFSET)
    np.testing.assert_allclose(quantize(X, "round", OFFSET), expected, atol=1e-6)


def test_symbols_and_dequantize_invert_each_other():
    sym = quantize(X, "symbols", OFFSET)
    assert sym.dtype == jnp.int32
    np.testing.assert_array_equal(quantize(sym, "dequantize", OFFSET), quantize(X, "round", OFFSET))


def test_noise_is_uniform_within_half_a_bin():
    y = quantize(jnp.zeros((100_000,)), "noise", rng=jax.random.PRNGKey(0))
    assert float(jnp.abs(y).max()) <= 0.5
    assert abs(float(y.mean())) < 0.01 and abs(float(y.var()) - 1 / 12) < 0.002


def test_gradients_are_straight_through():
    grad = jax.grad(lambda x: jnp.sum(quantize(x, "ste", OFFSET) * 3.0))(X)
    np.testing.assert_array_equal(grad, np.full(X.shape, 3.0, np.float32))
    np.testing.assert_array_equal(quantize(X, "ste", OFFSET), quantize(X, "round", OFFSET))


def test_noise_without_key_and_unknown_mode_are_errors():
    with pytest.raises(ValueError, match="rng"):
        quantize(X, "noise")
    with pytest.raises(ValueError, match="unknown"):
        quantize(X, "floor")
