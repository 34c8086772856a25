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


@pytest.fixture(autouse=True)
def _private_model_index(tmp_path_factory, monkeypatch):
    """Keep `Codec.load`'s hash → export index out of the user's home."""
    monkeypatch.setenv("NLQ_HOME", str(tmp_path_factory.getbasetemp() / "nlq_home"))


def init_params(name: str, seed: int = 0, **sizes) -> dict:
    model = models.get_model(name, **(sizes or SMALL))
    x = np.zeros((1, model.stride, model.stride, 3), np.float32)
    rngs = {"params": jax.random.PRNGKey(seed), "noise": jax.random.PRNGKey(seed + 1)}
    return model.init(rngs, x, training=True)["params"]


def train_briefly(name: str, steps: int, lmbda: float = 0.01, seed: int = 0) -> dict:
    """A few Adam steps of the rate-distortion loss on 64² crops of the sample photographs."""
    model = models.get_model(name, **SMALL)
    params = init_params(name, seed)
    photos = [p for p in samples.sample_images().values()]
    rng = np.random.default_rng(seed)
    opt = optax.adam(3e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, x, key):
        def loss_fn(p):
            out = model.apply({"params": p}, x, training=True, rngs={"noise": key})
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
        params, opt_state, _ = step(params, opt_state, x, jax.random.PRNGKey(i))
    return params


@functools.cache
def small_codec(name: str, trained: bool) -> Codec:
    """A small model of each architecture (cached for the session)."""
    params = train_briefly(name, steps=150) if trained else init_params(name)
    return Codec(name, SMALL, params, label=f"{name}-{'trained' if trained else 'random'}")


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 768×512 natural photograph (uint8 [512, 768, 3])."""
    return np.array(samples.photo_768x512())
