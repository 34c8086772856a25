"""Vector quantization: straight-through and rotation-trick gradients, the EMA codebook,
k-means++ initialisation, dead-code restarts, and the contract every quantizer shares."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.quantizers import get_quantizer
from nlq_jax.quantizers.codebook import STATE, ema_update
from nlq_jax.quantizers.vq import VectorQuantizer

KEY = jax.random.PRNGKey(0)


def clustered(seed=0, clusters=4, dim=4, shape=(2, 4, 4), spread=0.05, scale=5.0):
    """Vectors near `clusters` centres: (z float32 [*shape, dim], centres [clusters, dim])."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)) * scale
    z = centres[rng.integers(clusters, size=shape)] + spread * rng.normal(size=(*shape, dim))
    return jnp.asarray(z, jnp.float32), centres


@functools.partial(jax.jit, static_argnums=0)
def train_step(module, variables, z, key=KEY):
    """One training call (jitted): (z_q, indices, aux, variables with the new state)."""
    (z_q, indices, aux), state = module.apply(variables, z, training=True, rng=key, mutable=[STATE])
    return z_q, indices, aux, {**variables, **state}


def fitted(module, z):
    variables = jax.jit(functools.partial(module.init, training=True))({"params": KEY}, z)
    return train_step(module, variables, z)[-1]


@pytest.mark.parametrize("ema", [True, False])
def test_gradients_are_straight_through(ema):
    z, _ = clustered()
    vq = VectorQuantizer(8, 4, ema=ema, kmeans_init=False, restart_dead=False)
    variables = fitted(vq, z)
    w = jnp.asarray(np.random.default_rng(1).normal(size=z.shape), jnp.float32)

    def f(z):
        return jnp.sum(w * train_step(vq, variables, z)[0])

    np.testing.assert_array_equal(jax.grad(f)(z), w)
    # Forward: exactly the codes (the eval output).
    z_q, indices, _, _ = train_step(vq, variables, z)
    np.testing.assert_array_equal(z_q, vq.apply(variables, indices, method="decode"))


def test_rotation_trick_keeps_the_value_and_rotates_the_gradient():
    z, _ = clustered(spread=1.0)
    vq = VectorQuantizer(8, 4, gradient="rotation", kmeans_init=False, restart_dead=False)
    variables = fitted(vq, z)
    w = jnp.asarray(np.random.default_rng(1).normal(size=z.shape), jnp.float32)
    z_q, indices, _, _ = train_step(vq, variables, z)
    q = np.asarray(vq.apply(variables, indices, method="decode"), np.float64)
    np.testing.assert_array_equal(z_q, q)

    grad = np.asarray(jax.grad(lambda z: jnp.sum(w * train_step(vq, variables, z)[0]))(z))
    assert np.isfinite(grad).all() and not np.allclose(grad, w, atol=1e-3)
    # Independent reference (Fifty et al., the rotation trick): λR maps z onto q; the
    # gradient is (λR)ᵀ w.
    zf, qf, wf = (np.asarray(a, np.float64).reshape(-1, 4) for a in (z, q, w))
    for zi, qi, wi, gi in zip(zf, qf, wf, grad.reshape(-1, 4)):
        e, qh = zi / np.linalg.norm(zi), qi / np.linalg.norm(qi)
        r = (e + qh) / np.linalg.norm(e + qh)
        rot = np.eye(4) - 2 * np.outer(r, r) + 2 * np.outer(qh, e)
        lam = np.linalg.norm(qi) / np.linalg.norm(zi)
        np.testing.assert_allclose(lam * rot @ zi, qi, atol=1e-9)
        np.testing.assert_allclose(gi, lam * rot.T @ wi, rtol=1e-4, atol=1e-4)


def test_ema_update_matches_numpy():
    rng = np.random.default_rng(0)
    k, d, n, decay, eps = 5, 3, 40, 0.9, 1e-3
    size = rng.uniform(0.0, 3.0, k)
    size[2] = 0.0
    embed_sum = rng.normal(size=(k, d))
    z = rng.normal(size=(n, d))
    onehot = np.eye(k)[rng.integers(0, k - 1, n)]  # the last code gets no vector
    new = ema_update(
        {"cluster_size": jnp.asarray(size, jnp.float32), "embed_sum": jnp.asarray(embed_sum)},
        jnp.asarray(z, jnp.float32),
        jnp.asarray(onehot, jnp.float32),
        decay,
        eps,
    )
    # Reference: van den Oord et al. 2017, appendix A.1, with Laplace smoothing.
    ref_size = np.array([decay * size[j] + (1 - decay) * onehot[:, j].sum() for j in range(k)])
    ref_sum = np.stack(
        [decay * embed_sum[j] + (1 - decay) * z[onehot[:, j] == 1].sum(0) for j in range(k)]
    )
    total = ref_size.sum()
    smoothed = (ref_size + eps) / (total + k * eps) * total
    np.testing.assert_allclose(new["cluster_size"], ref_size, rtol=1e-6)
    np.testing.assert_allclose(new["embed_sum"], ref_sum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new["codebook"], ref_sum / smoothed[:, None], rtol=1e-5, atol=1e-6)


def test_kmeans_init_puts_the_codes_on_the_clusters():
    z, centres = clustered(clusters=4)
    vq = VectorQuantizer(4, 4)  # as the "vq" contract test below: one compilation for both
    variables = vq.init({"params": KEY}, z, training=True)
    assert int(variables[STATE]["initialized"]) == 0  # init does not fit k-means
    _, _, aux, variables = train_step(vq, variables, z)
    state = variables[STATE]
    assert int(state["initialized"]) == 1
    codes = np.asarray(state["codebook"])
    dist = np.linalg.norm(codes[:, None] - centres[None], axis=-1)
    assert dist.min(axis=1).max() < 0.1  # every code is on a cluster
    assert dist.min(axis=0).max() < 0.1  # every cluster has a code
    assert float(aux["usage"]) == 1.0 and float(aux["dead_codes"]) == 0.0
    # A second call does not re-initialise.
    codes2 = np.asarray(train_step(vq, variables, z + 1.0)[-1][STATE]["codebook"])
    assert not np.allclose(codes2, codes + 1.0, atol=0.1)


def test_kmeans_init_with_fewer_vectors_than_codes():
    z, _ = clustered(shape=(1, 3))
    vq = VectorQuantizer(4, 4)
    state = fitted(vq, z)[STATE]
    assert int(state["initialized"]) == 1
    codes = np.asarray(state["codebook"])
    # Sampled with replacement: every code is one of the 3 vectors.
    dist = np.linalg.norm(codes[:, None] - np.asarray(z).reshape(1, -1, 4), axis=-1)
    assert dist.min(axis=1).max() < 1e-3


@pytest.mark.parametrize("restart", [True, False])
def test_dead_codes_are_restarted_from_the_batch(restart):
    z, centres = clustered(clusters=2)
    vq = VectorQuantizer(8, 4, kmeans_init=False, restart_dead=restart, dead_threshold=1.0)
    variables = vq.init({"params": KEY}, z, training=True)
    codes = np.concatenate([centres, 100.0 + np.arange(24.0).reshape(6, 4)]).astype(np.float32)
    size = np.array([50.0, 50.0] + [0.5] * 6, np.float32)
    variables = {
        STATE: {
            "codebook": jnp.asarray(codes),
            "cluster_size": jnp.asarray(size),
            "embed_sum": jnp.asarray(codes * size[:, None]),
            "initialized": jnp.asarray(1, jnp.int32),
        }
    }
    _, _, aux, variables = train_step(vq, variables, z)
    assert float(aux["dead_codes"]) == 6.0
    new = np.asarray(variables[STATE]["codebook"])
    batch = np.asarray(z).reshape(-1, 4)
    if restart:
        dist = np.linalg.norm(new[2:, None] - batch[None], axis=-1).min(axis=1)
        np.testing.assert_array_equal(dist, 0.0)  # each is a batch vector
        assert len({tuple(c) for c in new[2:]}) == 6  # distinct ones
        np.testing.assert_array_equal(variables[STATE]["cluster_size"][2:], 1.0)
    else:
        np.testing.assert_allclose(new[2:], codes[2:], rtol=1e-3)


def test_eval_does_not_need_a_mutable_state_and_cosine_codes_are_unit():
    z, _ = clustered()
    vq = VectorQuantizer(8, 4, distance="cosine", kmeans_init=False, restart_dead=False)
    variables = fitted(vq, z)
    z_q, indices, aux = vq.apply(variables, z, training=False)
    np.testing.assert_allclose(np.linalg.norm(z_q, axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(z_q, vq.apply(variables, indices, method="decode"))
    # A training call without a mutable collection quantizes but updates nothing.
    z_q_train = vq.apply(variables, z, training=True, rng=KEY)[0]
    np.testing.assert_allclose(z_q_train, z_q, atol=1e-6)


# One contract for every quantizer (names as in the registry).
# k-means and restarts of rvq and pvq are those of vq, tested with "vq" (and test_rvq.py).
CHEAP = {"kmeans_init": False, "restart_dead": False}
CONFIGS = {
    "vq": {"codebook_size": 4, "dim": 4},
    "vq-grad-rot": {"codebook_size": 8, "dim": 4, "ema": False, "gradient": "rotation"},
    "rvq": {"num_stages": 3, "codebook_size": 8, "commitment_cost": 0.5, **CHEAP},
    "pvq": {"groups": 2, "codebook_size": 8, "dim": 4, **CHEAP},
    "fsq": {"levels": (4, 3, 3, 2)},
    "fsq-projected": {"levels": (3, 2)},  # D = 4: learned projections 4 → 2 → 4
    "scalar": {"levels": (4, 3, 5, 2)},
    "gumbel": {"codebook_size": 8, "temperature": 0.5},
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_every_quantizer_decodes_its_eval_output_exactly(config):
    name = config.split("-")[0]
    quantizer = get_quantizer(name, **CONFIGS[config])
    z = clustered(clusters=6)[0]
    variables = jax.jit(functools.partial(quantizer.init, training=True))({"params": KEY}, z)
    # The train call's state (if any) feeds the eval call.
    z_q_train, _, _, variables = train_step(quantizer, variables, z)
    assert z_q_train.shape == z.shape and np.isfinite(z_q_train).all()
    z_q, indices, aux = jax.jit(lambda v, z: quantizer.apply(v, z, training=False))(variables, z)
    decoded = jax.jit(lambda v, i: quantizer.apply(v, i, method="decode"))(variables, indices)
    np.testing.assert_array_equal(z_q, decoded)
    np.testing.assert_array_equal(z_q, quantizer.apply(variables, indices, method="decode"))
    num_codes = quantizer.num_codes
    assert indices.dtype == jnp.int32 and indices.shape == (*z.shape[:-1], len(num_codes))
    assert (np.asarray(indices) >= 0).all() and (np.asarray(indices) < np.array(num_codes)).all()
    for key in ("loss", "usage", "perplexity", "dead_codes"):
        assert aux[key].shape == () and aux[key].dtype == jnp.float32, key
        assert np.isfinite(float(aux[key]))
    assert 0.0 < float(aux["usage"]) <= 1.0


def test_registry_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown quantizer"):
        get_quantizer("lattice")
    assert get_quantizer("vq", codebook_size=4, ema_decay=0.9).decay == 0.9
