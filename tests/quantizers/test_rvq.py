"""Residual VQ: every prefix of the stages decodes, each stage lowers the error, quantizer
dropout happens only in training, and the gradient is straight through."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.quantizers.codebook import STATE
from nlq_jax.quantizers.rvq import ResidualVQ

KEY = jax.random.PRNGKey(0)
Z = jnp.asarray(np.random.default_rng(0).normal(size=(6, 4, 4, 4)), jnp.float32)
RVQ = ResidualVQ(3, 8, 4, restart_dead=False)


@functools.partial(jax.jit, static_argnums=0)
def train_step(module, variables, z, key=KEY):
    (z_q, indices, aux), state = module.apply(variables, z, training=True, rng=key, mutable=[STATE])
    return z_q, indices, aux, {**variables, **state}


@functools.partial(jax.jit, static_argnums=(0, 3))
def evaluate(module, variables, z, num_stages=None):
    return module.apply(variables, z, training=False, num_stages=num_stages)


def decode(module, variables, indices, num_stages=None):
    return module.apply(variables, indices, num_stages, method="decode")  # eager, as a decoder


@functools.cache
def fitted() -> dict:
    """RVQ's variables after k-means initialisation and a few EMA steps on Z."""
    variables = jax.jit(functools.partial(RVQ.init, training=True))({"params": KEY}, Z)
    for i in range(3):
        variables = train_step(RVQ, variables, Z, jax.random.PRNGKey(i))[-1]
    return variables


def test_each_stage_lowers_the_error_and_every_prefix_decodes():
    variables = fitted()
    assert sorted(variables[STATE]) == ["stages_0", "stages_1", "stages_2"]
    assert all(int(s["initialized"]) == 1 for s in variables[STATE].values())
    errors = []
    for n in (1, 2, 3):
        z_q, indices, aux = evaluate(RVQ, variables, Z, n)
        assert indices.shape == (*Z.shape[:-1], 3)
        np.testing.assert_array_equal(indices[..., n:], 0)
        np.testing.assert_array_equal(z_q, decode(RVQ, variables, indices, n))
        # A decoder given only the first n columns reconstructs the same.
        np.testing.assert_array_equal(z_q, decode(RVQ, variables, indices[..., :n], n))
        errors.append(float(jnp.mean((z_q - Z) ** 2)))
    assert errors[0] > errors[1] > errors[2]
    # Prefix n of the full code is the n-stage code.
    _, full, _ = evaluate(RVQ, variables, Z, 3)
    np.testing.assert_array_equal(full[..., :2], evaluate(RVQ, variables, Z, 2)[1][..., :2])


def test_quantizer_dropout_only_in_training():
    variables = fitted()
    z_q_eval, indices, _ = evaluate(RVQ, variables, Z, 3)
    np.testing.assert_array_equal(z_q_eval, decode(RVQ, variables, indices))
    prefixes = [np.asarray(decode(RVQ, variables, indices, n)) for n in (1, 2, 3)]
    z_q_train, train_indices, _, _ = train_step(RVQ, variables, Z, jax.random.PRNGKey(7))
    np.testing.assert_array_equal(train_indices, indices)  # dropout masks the sum only
    used = []
    for b in range(Z.shape[0]):
        n = [i for i, p in enumerate(prefixes) if np.allclose(z_q_train[b], p[b], atol=1e-6)]
        assert n, f"example {b} is not a prefix sum"
        used.append(n[0] + 1)
    assert len(set(used)) > 1  # the examples drew different prefixes


def test_gradients_are_straight_through():
    rvq = ResidualVQ(3, 8, 4, kmeans_init=False, restart_dead=False)
    variables = jax.jit(functools.partial(rvq.init, training=True))({"params": KEY}, Z)
    w = jnp.asarray(np.random.default_rng(1).normal(size=Z.shape), jnp.float32)
    grad = jax.grad(lambda z: jnp.sum(w * train_step(rvq, variables, z)[0]))(Z)
    np.testing.assert_array_equal(grad, w)


def test_commitment_stages_or_total():
    """ "stages": β·Σ_s ‖r_s − q_s‖² (the residual after each stage); "total": β·‖z − Σ_s q_s‖²
    (only what the whole code misses). Expected values from the decoded prefixes, in numpy."""
    variables = fitted()
    prefixes = [np.asarray(evaluate(RVQ, variables, Z, n)[0], np.float64) for n in (1, 2, 3)]
    z = np.asarray(Z, np.float64)
    beta = 0.25
    expected = {
        "stages": beta * sum(np.mean((z - p) ** 2) for p in prefixes),
        "total": beta * np.mean((z - prefixes[-1]) ** 2),
    }
    for commitment, value in expected.items():
        rvq = ResidualVQ(
            3, 8, 4, beta=beta, restart_dead=False, dropout=False, commitment=commitment
        )

        def loss(z, rvq=rvq):
            return train_step(rvq, variables, z)[2]["loss"]

        np.testing.assert_allclose(float(loss(Z)), value, rtol=1e-5)
        if commitment == "total":  # d/dz β·mean((z − sg(z_q))²)
            grad = 2 * beta * (z - prefixes[-1]) / z.size
            np.testing.assert_allclose(jax.grad(loss)(Z), grad, rtol=1e-4, atol=1e-9)
