"""The deep factorized prior: a valid density, its medians and tails, and its tables."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.entropy import factorized

C = 5


@pytest.fixture(scope="module")
def prior_and_params():
    prior = factorized.DeepFactorized(C)
    x = jnp.zeros((1, 2, 2, C))
    params = prior.init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x, training=True
    )["params"]
    # Move away from the symmetric init so medians and tails are not trivially 0.
    params = jax.tree_util.tree_map(
        lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params
    )
    return prior, params


def _cdf(prior, params, x):
    return jax.nn.sigmoid(prior.apply({"params": params}, x, method="logits_cdf"))


def test_cdf_is_monotone_and_spans_zero_to_one(prior_and_params):
    prior, params = prior_and_params
    grid = jnp.broadcast_to(jnp.linspace(-200, 200, 4001), (C, 4001))
    cdf = np.asarray(_cdf(prior, params, grid))
    assert (np.diff(cdf, axis=1) >= 0).all()
    assert cdf[:, 0].max() < 1e-3 and cdf[:, -1].min() > 1 - 1e-3


def test_bin_probabilities_sum_to_one(prior_and_params):
    prior, params = prior_and_params
    grid = jnp.broadcast_to(jnp.arange(-300.0, 301.0), (C, 601))
    p = prior.apply({"params": params}, grid, method="likelihood")
    np.testing.assert_allclose(np.asarray(p).sum(axis=1), 1.0, atol=1e-4)


def test_medians_and_tails_are_found_by_bisection(prior_and_params):
    prior, params = prior_and_params
    levels = (1e-4, 0.5, 1 - 1e-4)
    q = prior.apply({"params": params}, levels, method="quantiles")
    cdf = np.asarray(_cdf(prior, params, q))
    np.testing.assert_allclose(cdf, np.broadcast_to(levels, (C, 3)), rtol=1e-3, atol=1e-6)


def test_eval_bits_are_the_information_of_the_rounded_latent(prior_and_params):
    prior, params = prior_and_params
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 4, C)) * 3
    x_hat, bits = prior.apply({"params": params}, x, training=False)
    med = np.asarray(prior.apply({"params": params}, method="medians"))
    np.testing.assert_allclose(x_hat, np.round(np.asarray(x) - med) + med, atol=1e-5)
    v = jnp.moveaxis(x_hat, -1, 0).reshape(C, -1)
    p = np.asarray(_cdf(prior, params, v + 0.5) - _cdf(prior, params, v - 0.5), np.float64)
    expected = -np.log2(np.maximum(p, 1e-9)).reshape(C, 2, -1).sum(axis=(0, 2))
    np.testing.assert_allclose(bits, expected, rtol=1e-3)


def test_training_bits_are_differentiable(prior_and_params):
    prior, params = prior_and_params
    x = jax.random.normal(jax.random.PRNGKey(4), (2, 3, 4, C))

    def rate(p):
        _, bits = prior.apply(
            {"params": p}, x, training=True, rngs={"noise": jax.random.PRNGKey(5)}
        )
        return bits.sum()

    grads = jax.grad(rate)(params)
    norms = [float(jnp.abs(g).sum()) for g in jax.tree_util.tree_leaves(grads)]
    assert all(np.isfinite(norms)) and sum(norms) > 0


def test_tables_match_the_density(prior_and_params):
    prior, params = prior_and_params
    tables, medians = factorized.build_tables(prior, params)
    assert tables.num_tables == C
    for c in range(C):
        counts = tables.pmf(c)
        k = tables.offset[c] + np.arange(tables.length[c] - 1)
        v = jnp.zeros((C, k.size)).at[c].set(k + medians[c])
        p = np.asarray(prior.apply({"params": params}, v, method="likelihood"))[c]
        bound = len(k) * 2.0**-24  # one count per bin is reserved out of the total
        np.testing.assert_allclose(counts[:-1] / 2.0**24, p, rtol=bound, atol=2.0**-23 + 1e-6)


def _numpy_logits(params, x):
    """f(x) of the density network in float64 numpy, independent of the module."""
    h = np.asarray(x, np.float64)[:, None, :]
    k = 0
    while f"matrix{k}" in params:
        m = np.logaddexp(0.0, np.asarray(params[f"matrix{k}"], np.float64))  # softplus
        h = np.einsum("cij,cjn->cin", m, h) + np.asarray(params[f"bias{k}"], np.float64)
        if f"factor{k}" in params:
            h = h + np.tanh(np.asarray(params[f"factor{k}"], np.float64)) * np.tanh(h)
        k += 1
    return h[:, 0, :]


def _numpy_quantile(params, level):
    target = np.log(level) - np.log1p(-level)
    lo, hi = np.full((C, 1), -1e4), np.full((C, 1), 1e4)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        below = _numpy_logits(params, mid) < target
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)[:, 0]


@pytest.mark.parametrize("filters", [(3, 3, 3), (3, 3, 3, 3)])
def test_tables_span_exactly_the_tails(filters):
    """The tables cover [tail_mass/2, 1 − tail_mass/2] of each density and no more: at the
    default tail mass 1e-9, 1 − 5e-10 must not round to 1 (which made every table reach the
    +8191 clamp)."""
    prior = factorized.DeepFactorized(C, filters=filters)
    params = prior.init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)},
        jnp.zeros((1, 2, 2, C)),
        training=True,
    )["params"]
    params = jax.tree_util.tree_map(
        lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params
    )
    params = jax.tree_util.tree_map(np.asarray, params)
    tables, medians = factorized.build_tables(prior, params)
    t = prior.tail_mass
    lo = np.floor(_numpy_quantile(params, t / 2) - medians)
    hi = np.ceil(_numpy_quantile(params, 1 - t / 2) - medians)
    np.testing.assert_array_equal(tables.offset, np.minimum(lo, -1))
    np.testing.assert_array_equal(tables.offset + tables.length - 2, np.maximum(hi, 1))
    assert tables.length.max() < 1000  # a few hundred entries, not the 8192-entry clamp


def test_stored_medians_are_the_quantization_offsets():
    prior = factorized.DeepFactorized(C, filters=(3, 3, 3, 3), stored_medians=True)
    params = prior.init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)},
        jnp.zeros((1, 2, 2, C)),
        training=True,
    )["params"]
    params = dict(params, medians=jnp.linspace(-0.4, 0.3, C))
    x = jax.random.normal(jax.random.PRNGKey(3), (2, 3, 4, C)) * 3
    x_hat, _ = prior.apply({"params": params}, x, training=False)
    med = np.asarray(params["medians"])
    np.testing.assert_allclose(x_hat, np.round(np.asarray(x) - med) + med, atol=1e-5)
    _, table_medians = factorized.build_tables(prior, params)
    np.testing.assert_array_equal(table_medians, med.astype(np.float32))
