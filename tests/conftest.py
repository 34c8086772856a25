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
# Models whose small size needs more than (N, M) (a model module may also say it, `SMALL_SIZES`).
SMALL_EXTRA = {
    "channelwise": {"num_slices": 4, "max_support_slices": 2},  # slices must divide M
    "cheng2020_anchor": {"M": 32},  # M = N
    "cheng2020_attn": {"M": 32},
    "elic": {"groups": (8, 8, 16, 16)},  # the paper's groups need M > 128
}


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto`: a worker per CPU core, at most 4 (each one holds its own compiled models and
    small cached codecs, up to a few GB); NLQ_TEST_WORKERS overrides it."""
    if os.environ.get("NLQ_TEST_WORKERS"):
        return int(os.environ["NLQ_TEST_WORKERS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, 4))


def small_sizes(name: str) -> dict:
    """The small constructor arguments the tests use for model `name`."""
    module = models.get_module(name)
    if hasattr(module, "SMALL_SIZES"):
        return dict(module.SMALL_SIZES)
    return {**SMALL, **SMALL_EXTRA.get(name, {})}


def is_discrete(name: str) -> bool:
    """Whether model `name` has a discrete latent (codebook state, index priors)."""
    return hasattr(models.get_module(name), "fit_priors")


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


def discrete_variables(name: str, seed: int = 0) -> dict:
    """Random weights of a discrete model and its quantizer state after one training call
    (k-means initialised codebooks)."""
    model = models.get_model(name, **small_sizes(name))
    x = np.random.default_rng(seed).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    rngs = {k: jax.random.PRNGKey(seed + i) for i, k in enumerate(("params", "noise", "quantizer"))}
    variables = dict(model.init(rngs, x, training=True))
    rngs = {k: jax.random.fold_in(v, 1) for k, v in rngs.items()}
    _, state = model.apply(variables, x, training=True, rngs=rngs, mutable=["quantizer_state"])
    return {**variables, **state}


@functools.cache
def small_codec(name: str, trained: bool) -> Codec:
    """A small model of each architecture (cached for the session). Discrete models are not
    trained here (`tests/test_discrete_training.py` trains one): `trained` gives the random
    one."""
    label = f"{name}-{'trained' if trained else 'random'}"
    if is_discrete(name):
        variables = discrete_variables(name)
        params = variables.pop("params")
        return Codec(name, small_sizes(name), params, model_state=variables, label=label)
    params = train_briefly(name, steps=150) if trained else init_params(name)
    return Codec(name, small_sizes(name), params, label=label)


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A 768×512 natural photograph (uint8 [512, 768, 3])."""
    return np.array(samples.photo_768x512())
