"""Tests of GDN/IGDN against numpy formulas and of the non-negative reparameterization."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.layers.gdn import GDN, lower_bound, nonnegative_init, nonnegative_value

PEDESTAL = 2.0**-36


def numpy_gdn(x, beta, gamma, inverse):
    """y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2), or times the sqrt if inverse."""
    x = np.asarray(x, np.float64)
    norm = np.sqrt(beta + np.tensordot(x**2, np.asarray(gamma, np.float64).T, axes=1))
    return x * norm if inverse else x / norm


def numpy_effective(param, minimum):
    """CompressAI's NonNegativeParametrizer.forward, in float64."""
    bound = np.sqrt(minimum + PEDESTAL)
    return np.maximum(np.asarray(param, np.float64), bound) ** 2 - PEDESTAL


def random_params(rng, channels):
    """Stored parameters of a random positive beta and a random non-negative gamma."""
    beta = rng.uniform(0.5, 2.0, size=channels)
    gamma = rng.uniform(0.0, 0.3, size=(channels, channels))
    gamma[rng.uniform(size=gamma.shape) < 0.3] = 0.0  # some entries exactly at the bound
    return {
        "beta": nonnegative_init(jnp.asarray(beta, jnp.float32)),
        "gamma": nonnegative_init(jnp.asarray(gamma, jnp.float32)),
    }


@pytest.mark.parametrize("inverse", [False, True])
def test_init_is_beta_one_gamma_scaled_identity(inverse):
    x = jax.random.normal(jax.random.key(0), (2, 5, 7, 6))
    variables = GDN(inverse=inverse).init(jax.random.key(1), x)
    params = variables["params"]
    np.testing.assert_allclose(numpy_effective(params["beta"], 1e-6), np.ones(6), rtol=1e-6)
    np.testing.assert_allclose(
        numpy_effective(params["gamma"], 0.0), 0.1 * np.eye(6), rtol=1e-6, atol=1e-9
    )
    y = GDN(inverse=inverse).apply(variables, x)
    expected = numpy_gdn(x, np.ones(6), 0.1 * np.eye(6), inverse)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("inverse", [False, True])
@pytest.mark.parametrize("shape", [(2, 4, 5, 3), (1, 3, 8), (7, 16)])
def test_matches_numpy_formula_with_random_params(inverse, shape):
    rng = np.random.default_rng(0)
    params = random_params(rng, shape[-1])
    x = rng.normal(size=shape).astype(np.float32) * 3
    y = GDN(inverse=inverse).apply({"params": params}, jnp.asarray(x))
    expected = numpy_gdn(
        x,
        numpy_effective(params["beta"], 1e-6),
        numpy_effective(params["gamma"], 0.0),
        inverse,
    )
    assert y.shape == x.shape
    np.testing.assert_allclose(y, expected, rtol=2e-5, atol=1e-6)


def test_gamma_row_normalizes_output_channel():
    # gamma[i, j] weighs input channel j in the norm of output channel i (CompressAI layout).
    gamma = np.zeros((2, 2))
    gamma[0, 1] = 3.0
    params = {
        "beta": nonnegative_init(jnp.ones(2)),
        "gamma": nonnegative_init(jnp.asarray(gamma, jnp.float32)),
    }
    x = jnp.asarray([[1.0, 2.0]])
    y = GDN().apply({"params": params}, x)
    np.testing.assert_allclose(y, [[1.0 / np.sqrt(1 + 3 * 4), 2.0]], rtol=1e-6)


def test_effective_params_nonnegative_after_large_negative_updates():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 5))
    gdn = GDN(beta_min=1e-6)
    params = gdn.init(jax.random.key(1), x)["params"]
    # Large negative steps, as a diverging optimizer would take.
    params = jax.tree.map(lambda p: p - 1e3, params)
    beta = nonnegative_value(params["beta"], 1e-6)
    gamma = nonnegative_value(params["gamma"], 0.0)
    assert np.all(np.asarray(gamma) >= 0.0)
    assert np.all(np.asarray(beta) > 0.0)
    np.testing.assert_allclose(beta, 1e-6, rtol=1e-3)
    y = gdn.apply({"params": params}, x)
    # With gamma = 0 and beta = beta_min, GDN is x / sqrt(beta_min).
    np.testing.assert_allclose(y, np.asarray(x) / np.sqrt(np.asarray(beta)[0]), rtol=1e-4)
    assert np.all(np.isfinite(y))


def test_gradient_at_bound_lets_parameter_recover():
    bound = 0.5
    x = jnp.asarray([-1.0, 0.2, 0.7])

    def push_up(v):  # descent on this increases v
        return -jnp.sum(lower_bound(v, bound))

    def push_down(v):  # descent on this decreases v
        return jnp.sum(lower_bound(v, bound))

    np.testing.assert_array_equal(jax.grad(push_up)(x), [-1.0, -1.0, -1.0])
    np.testing.assert_array_equal(jax.grad(push_down)(x), [0.0, 0.0, 1.0])


def test_nonnegative_value_inverts_init():
    v = jnp.asarray([0.0, 1e-6, 0.1, 1.0, 37.0])
    np.testing.assert_allclose(nonnegative_value(nonnegative_init(v)), v, rtol=1e-6, atol=1e-9)


def test_igdn_is_not_identity_after_gdn():
    # IGDN is one fixed-point step of the inverse, not the exact inverse (for gamma != 0).
    x = jax.random.normal(jax.random.key(0), (1, 3, 3, 4)) * 5
    variables = GDN().init(jax.random.key(1), x)
    roundtrip = GDN(inverse=True).apply(variables, GDN().apply(variables, x))
    assert not np.allclose(roundtrip, x, rtol=1e-3)


def test_jit_and_grad_are_finite():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    gdn = GDN()
    variables = gdn.init(jax.random.key(1), x)

    @jax.jit
    def loss(variables, x):
        return jnp.sum(gdn.apply(variables, x) ** 2)

    grads = jax.grad(loss, argnums=(0, 1))(variables, x)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
