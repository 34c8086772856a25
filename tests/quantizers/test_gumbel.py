"""Gumbel-softmax quantization: one-hot forward in training, argmax in eval, the schedule."""

import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.quantizers.gumbel import GumbelQuantizer, temperature_schedule

KEY = jax.random.PRNGKey(0)
Z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 4, 3)), jnp.float32)
GQ = GumbelQuantizer(6, 3)
VARIABLES = GQ.init({"params": KEY}, Z, training=False)


def test_eval_takes_the_most_likely_code():
    z_q, indices, aux = GQ.apply(VARIABLES, Z, training=False)
    params = VARIABLES["params"]
    logits = np.asarray(Z) @ np.asarray(params["logits"]["kernel"]) + params["logits"]["bias"]
    np.testing.assert_array_equal(indices[..., 0], np.argmax(logits, axis=-1))
    np.testing.assert_array_equal(z_q, GQ.apply(VARIABLES, indices, method="decode"))
    assert float(aux["loss"]) >= 0.0  # a KL divergence


def test_hard_training_sample_is_a_code_and_gradients_flow():
    def loss(params, z):
        z_q, indices, aux = GQ.apply({"params": params}, z, training=True, rng=KEY, temperature=0.5)
        return jnp.sum(z_q**2) + aux["loss"], (z_q, indices)

    grads, (z_q, indices) = jax.jit(jax.grad(loss, has_aux=True))(VARIABLES["params"], Z)
    codebook = np.asarray(VARIABLES["params"]["codebook"])
    np.testing.assert_allclose(z_q, codebook[np.asarray(indices[..., 0])], rtol=1e-6, atol=1e-6)
    for g in jax.tree_util.tree_leaves(grads):
        assert np.isfinite(np.asarray(g)).all() and np.any(np.asarray(g) != 0)


def test_temperature_schedule_anneals_exponentially():
    sched = [float(temperature_schedule(s, 1.0, 0.0625, 100)) for s in (0, 50, 100, 1000)]
    np.testing.assert_allclose(sched, [1.0, 0.25, 0.0625, 0.0625], rtol=1e-6)
    # A traced step works inside jit.
    assert float(jax.jit(temperature_schedule)(jnp.asarray(50), 1.0, 0.0625, 100)) == 0.25


def test_scheduled_temperature_follows_the_count_of_training_calls():
    gq = GumbelQuantizer(6, 3, hard=False, temperature=1.0, temperature_end=0.25,
                         temperature_decay_steps=4)  # fmt: skip
    variables = gq.init({"params": KEY}, Z, training=False)
    assert int(variables["quantizer_state"]["calls"]) == 0
    fixed = GumbelQuantizer(6, 3, hard=False)
    for n in range(6):
        (z_q, _, _), state = gq.apply(
            variables, Z, training=True, rng=KEY, mutable=["quantizer_state"]
        )
        tau = float(temperature_schedule(n, 1.0, 0.25, 4))
        expected, _, _ = fixed.apply(
            {"params": variables["params"]}, Z, training=True, rng=KEY, temperature=tau
        )
        np.testing.assert_allclose(z_q, expected, rtol=1e-5, atol=1e-6)
        variables = {**variables, **state}
        assert int(variables["quantizer_state"]["calls"]) == n + 1
    # Eval neither reads the schedule nor advances it.
    gq.apply(variables, Z, training=False)
    assert tau == 0.25
