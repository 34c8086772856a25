"""Learned scalar quantization: the per-channel grid, its indices, and the gradients."""

import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.quantizers.learned_scalar import LearnedScalarQuantizer

KEY = jax.random.PRNGKey(0)
LEVELS = (4, 5, 2)
Z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)) * 2, jnp.float32)
SCALE = np.array([0.5, 1.5, 0.8], np.float32)
OFFSET = np.array([0.1, -0.3, 0.0], np.float32)
QUANTIZER = LearnedScalarQuantizer(levels=LEVELS)
PARAMS = {"params": {"log_scale": jnp.log(SCALE), "offset": jnp.asarray(OFFSET)}}


def test_values_lie_on_each_channels_grid():
    assert QUANTIZER.num_codes == LEVELS
    assert LearnedScalarQuantizer(3, levels=7).num_codes == (7, 7, 7)
    variables = QUANTIZER.init({"params": KEY}, Z, training=False)
    assert variables["params"]["log_scale"].shape == (3,)
    z_q, indices, aux = QUANTIZER.apply(PARAMS, Z, training=False)
    # Reference: q = o + s·clip(round((z − o)/s), ±(L − 1)/2) with the half-offset grid for
    # even L, i.e. i = clip(round((z − o)/s + (L − 1)/2), 0, L − 1).
    levels = np.array(LEVELS)
    centre = (levels - 1) / 2
    i = np.clip(np.round((np.asarray(Z) - OFFSET) / SCALE + centre), 0, levels - 1)
    np.testing.assert_array_equal(indices, i.astype(np.int32))
    np.testing.assert_allclose(z_q, OFFSET + SCALE * (i - centre), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(z_q, QUANTIZER.apply(PARAMS, indices, method="decode"))
    assert 0 < float(aux["usage"]) <= 1 and float(aux["loss"]) == 0.0


def test_gradients_are_straight_through_and_train_the_grid():
    w = jnp.asarray(np.random.default_rng(1).normal(size=Z.shape), jnp.float32)

    def loss(params, z):
        z_q = QUANTIZER.apply({"params": params}, z, training=True)[0]
        return jnp.sum(w * z_q)

    z_q = QUANTIZER.apply(PARAMS, Z, training=True)[0]
    np.testing.assert_array_equal(z_q, QUANTIZER.apply(PARAMS, Z, training=False)[0])
    grad_params, grad_z = jax.grad(loss, argnums=(0, 1))(PARAMS["params"], Z)
    np.testing.assert_array_equal(grad_z, w)
    assert np.all(np.asarray(grad_params["offset"]) != 0)
    assert np.all(np.asarray(grad_params["log_scale"]) != 0)
