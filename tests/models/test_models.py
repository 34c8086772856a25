"""Every model keeps the contract: outputs, part names, default sizes."""

import jax
import numpy as np
import pytest

from nlq_jax import models

NAMES = ("factorized", "hyperprior", "mean_scale")


@pytest.mark.parametrize("name", NAMES)
def test_forward_returns_x_hat_and_bits_per_latent(name):
    model = models.get_model(name, N=16, M=24)
    x = np.random.default_rng(0).uniform(size=(2, 64, 128, 3)).astype(np.float32)
    rngs = {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}
    variables = model.init(rngs, x, training=True)
    assert {"g_a", "g_s"} <= set(variables["params"])
    if name != "factorized":
        assert {"h_a", "h_s"} <= set(variables["params"])
    for training in (True, False):
        out = model.apply(variables, x, training=training, rngs={"noise": jax.random.PRNGKey(2)})
        assert out["x_hat"].shape == x.shape
        expected = {"y"} if name == "factorized" else {"y", "z"}
        assert set(out["bits"]) == expected
        for b in out["bits"].values():
            assert b.shape == (2,) and np.isfinite(b).all() and (np.asarray(b) > 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_default_sizes_follow_compressai(name):
    sizes = [models.get_module(name).get_default_sizes(q) for q in range(1, 9)]
    high_from = 5 if name == "mean_scale" else 6
    for q, s in enumerate(sizes, start=1):
        assert s == ({"N": 192, "M": 320} if q >= high_from else {"N": 128, "M": 192})
    with pytest.raises(ValueError):
        models.get_module(name).get_default_sizes(9)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="known models"):
        models.get_model("nope")
