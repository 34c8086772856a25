"""Product VQ: one codebook per slice of the vector, straight-through gradients."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.quantizers.codebook import STATE
from nlq_jax.quantizers.pq import ProductVQ

KEY = jax.random.PRNGKey(0)
Z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 6)), jnp.float32)
PQ = ProductVQ(3, 8, 6, kmeans_init=False, restart_dead=False)


@functools.cache
def variables() -> dict:
    return PQ.init({"params": KEY}, Z, training=True)


def test_gradients_are_straight_through():
    v = variables()
    w = jnp.asarray(np.random.default_rng(1).normal(size=Z.shape), jnp.float32)

    def f(z):
        z_q = PQ.apply(v, z, training=True, rng=KEY, mutable=[STATE])[0][0]
        return jnp.sum(w * z_q)

    grad = jax.jit(jax.grad(f))(Z)
    np.testing.assert_array_equal(grad, w)


def test_each_group_is_quantized_by_its_own_codebook():
    v = variables()
    z_q, indices, _ = PQ.apply(v, Z, training=False)
    assert indices.shape == (2, 4, 4, 3) and PQ.num_codes == (8, 8, 8)
    np.testing.assert_array_equal(z_q, PQ.apply(v, indices, method="decode"))
    # Reference: nearest code of each 2-d slice in its group's codebook.
    for g in range(3):
        codebook = np.asarray(v[STATE][f"codebooks_{g}"]["codebook"])
        part = np.asarray(Z[..., 2 * g : 2 * g + 2]).reshape(-1, 2)
        nearest = np.argmin(((part[:, None] - codebook[None]) ** 2).sum(-1), axis=1)
        np.testing.assert_array_equal(indices[..., g].reshape(-1), nearest)
        np.testing.assert_array_equal(z_q[..., 2 * g : 2 * g + 2].reshape(-1, 2), codebook[nearest])
    # Changing group 1's index changes only group 1's slice.
    other = PQ.apply(v, indices.at[..., 1].set((indices[..., 1] + 1) % 8), method="decode")
    changed = np.any(np.asarray(other != z_q), axis=(0, 1, 2))
    np.testing.assert_array_equal(changed, [False, False, True, True, False, False])


def test_groups_must_divide_the_vector():
    with pytest.raises(ValueError, match="divide"):
        ProductVQ(4, 8).init({"params": KEY}, Z, training=False)
