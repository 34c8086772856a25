"""Shared fixtures: small models of each architecture, random and briefly trained."""

from __future__ import annotations

import functools
import os
import tempfile

# Tests see one CPU device unless a test sets its own flags in a subprocess.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session, shared with the subprocesses the tests
# start (trainer runs, CLI calls), which compile the same functions again.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="nlq-test-jax-cache-"))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
import pytest  # noqa: E402

from nlq_jax import losses, models  # noqa: E402
from nlq_jax.codec.api import Codec  # noqa: E402
from nlq_jax.data import samples  # noqa: E402

MODEL_NAMES = ("factorized", "hyperprior", "mean_scale")
SMALL = {"N": 32, "M": 48}
# Models whose small size needs more than (N, M): channelwise's slices must divide M.
SMALL_EXTRA = {"channelwise": {"num_slices": 4, "max_support_slices": 2}}


def small_sizes(name: str) -> dict:
    """The small constructor arguments the tests use for model `name`."""
    return {**SMALL, **SMALL_EXTRA.get(name, {})}


@pytest.fixture(autouse=True)
def _private_model_index(tmp_path_factory, monkeypatch):
    """Keep `Codec.load`'s hash → export index out of the user's home."""
    monkeypatch.setenv("NLQ_HOME", str(tmp_path_factory.getbasetemp() / "nlq_home"))


def key(seed: int) -> jax.Array:
    """A PRNG key whose random bits compile fast: XLA compiles threefry slowly (~50 s for the
    many initializers of channelwise on one core), its "rbg" generator in seconds."""
    return jax.random.key(seed, impl="rbg")


def init_params(name: str, seed: int = 0, **sizes) -> dict:
    model = models.get_model(name, **(sizes or small_sizes(name)))
    x = np.zeros((1, model.stride, model.stride, 3), np.float32)
    init = jax.jit(functools.partial(model.init, training=True))
    return init({"params": key(seed), "noise": key(seed + 1)}, x)["params"]


def train_briefly(
    name: str, steps: int, lmbda: float = 0.01, seed: int = 0, lr: float = 1e-3, **sizes
) -> dict:
    """A few Adam steps of the rate-distortion loss on 64² crops of the sample photographs.

    (At lr 3e-3 the GDN models diverge within 150 steps; 1e-3 reaches about 15 dB.)
    """
    sizes = sizes or small_sizes(name)
    model = models.get_model(name, **sizes)
    params = init_params(name, seed, **sizes)
    photos = [p for p in samples.sample_images().values()]
    rng = np.random.default_rng(seed)
    opt = optax.adam(lr)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, noise_key):
        def loss_fn(p):
            out = model.apply({"params": p}, x, training=True, rngs={"noise": noise_key})
            return losses.rate_distortion_loss(x, out, lmbda)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    for i in range(steps):
        batch = []
        for _ in range(4):
            p = photos[rng.integers(len(photos))]
            r, c = rng.integers(p.shape[0] - 64), rng.integers(p.shape[1] - 64)
            batch.append(p[r : r + 64, c : c + 64])
        x = np.stack(batch).astype(np.float32) / 255.0
        params, opt_state, _ = step(params, opt_state, x, key(seed * 100_003 + i))
    return params


@functools.cache
def small_codec(name: str, trained: bool) -> Codec:
    """A small model of each architecture (cached for the session)."""
    params = train_briefly(name, steps=150) if trained else init_params(name)
    label = f"{name}-{'trained' if trained else 'random'}"
    return Codec(name, small_sizes(name), params, label=label)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 768×512 natural photograph (uint8 [512, 768, 3])."""
    return np.array(samples.photo_768x512())
