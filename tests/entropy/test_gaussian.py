"""The Gaussian conditional: likelihoods, scale snapping, and its rate bound."""

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from nlq_jax.entropy import gaussian
from nlq_jax.latent_codecs import GaussianConditionalCodec


def test_likelihood_matches_scipy():
    v = np.linspace(-20, 20, 81)
    s = np.array([0.11, 0.5, 1.0, 3.0, 40.0])[:, None]
    expected = ndtr((v + 0.5) / s) - ndtr((v - 0.5) / s)
    got = gaussian.gaussian_likelihood(jnp.asarray(v), jnp.asarray(s))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-12)


def test_scale_indexes_pick_the_nearest_table_scale_in_log_space():
    table = gaussian.scale_table()
    scales = np.exp(np.random.default_rng(0).uniform(np.log(0.01), np.log(1000), 5000))
    idx = np.asarray(gaussian.scale_indexes(jnp.asarray(scales, jnp.float32)))
    expected = np.abs(np.log(scales[:, None]) - np.log(table[None, :].astype(np.float64)))
    np.testing.assert_array_equal(idx, expected.argmin(axis=1))


def test_scale_table_is_log_spaced_from_011_to_256():
    t = gaussian.scale_table()
    assert t.shape == (64,)
    np.testing.assert_allclose([t[0], t[-1]], [0.11, 256.0], rtol=1e-6)
    np.testing.assert_allclose(np.diff(np.log(t)), np.log(256 / 0.11) / 63, rtol=1e-4)


def test_eval_quantizes_around_the_mean_and_counts_information():
    rng = np.random.default_rng(1)
    y = jnp.asarray(rng.normal(size=(2, 4, 4, 3)) * 5, jnp.float32)
    means = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    scales = jnp.asarray(rng.uniform(0.05, 8, size=y.shape), jnp.float32)
    m = GaussianConditionalCodec(param_form="pair")
    y_hat, bits = m.apply({}, y, (scales, means), training=False)
    bits = bits["y"]
    expected_hat = np.round(np.asarray(y) - np.asarray(means)) + np.asarray(means)
    np.testing.assert_allclose(y_hat, expected_hat, atol=1e-5)
    s = np.maximum(np.asarray(scales, np.float64), 0.11)
    v = np.asarray(y_hat - means, np.float64)
    p = np.maximum(ndtr((v + 0.5) / s) - ndtr((v - 0.5) / s), 1e-9)
    np.testing.assert_allclose(bits, -np.log2(p).reshape(2, -1).sum(1), rtol=1e-4)


def test_training_rate_is_differentiable_in_the_scales():
    y = jnp.ones((1, 2, 2, 3)) * 0.7
    m = GaussianConditionalCodec(param_form="scale")

    def rate(s):
        out = m.apply({}, y, s, training=True, rngs={"noise": jax.random.PRNGKey(0)})
        return out[1]["y"].sum()

    g = jax.grad(rate)(jnp.full(y.shape, 2.0))
    assert np.isfinite(g).all() and np.abs(g).sum() > 0
