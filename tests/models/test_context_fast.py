"""Context models decoded in a few parallel steps: checkerboard (He et al. 2021) and channelwise
(Minnen & Singh 2020): their forward, masks and configs. (Their bitstreams' exactness:
`tests/models/test_exactness.py`.)"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import key, small_codec, small_sizes

from nlq_jax import models
from nlq_jax.latent_codecs import checkerboard

ROOT = Path(__file__).resolve().parents[2]
NAMES = ("checkerboard", "channelwise")  # small sizes: conftest.small_sizes
IMAGE_SIZES = [(67, 131), (130, 70)]


@pytest.mark.parametrize("name", NAMES)
def test_forward_returns_x_hat_and_bits_of_y_and_z(name):
    model = models.get_model(name, **small_sizes(name))
    variables = {"params": small_codec(name, trained=False).params}
    assert {"g_a", "g_s", "h_a", "h_s", "entropy_bottleneck"} <= set(variables["params"])
    x = np.random.default_rng(0).uniform(size=(2, 64, 128, 3)).astype(np.float32)
    apply = jax.jit(model.apply, static_argnames="training")
    for training in (True, False):
        out = apply(variables, x, training=training, rngs={"noise": key(2)})
        assert out["x_hat"].shape == x.shape
        assert set(out["bits"]) == {"y", "z"}
        for b in out["bits"].values():
            assert b.shape == (2,) and np.isfinite(b).all() and (np.asarray(b) > 0).all()


def test_non_anchor_context_sees_only_anchors():
    conv = checkerboard.CheckerboardConv(3)
    x = np.random.default_rng(0).normal(size=(1, 8, 10, 2)).astype(np.float32)
    variables = conv.init(jax.random.PRNGKey(0), x)
    anchors = checkerboard.anchor_mask(8, 10)
    assert anchors[0, 0] and not anchors[0, 1] and anchors.sum() == 40
    changed = np.where(anchors[None, :, :, None], x, x + 1.0)  # every non-anchor moves
    before = np.asarray(conv.apply(variables, x))[0][~anchors]
    after = np.asarray(conv.apply(variables, changed))[0][~anchors]
    np.testing.assert_array_equal(after, before)
    moved = np.where(anchors[None, :, :, None], x + 1.0, x)  # now the anchors move
    assert not np.allclose(np.asarray(conv.apply(variables, moved))[0][~anchors], before)


def test_slices_must_divide_the_latent():
    model = models.get_model("channelwise", N=16, M=24, num_slices=5)
    with pytest.raises(ValueError, match="must divide"):
        model.init(jax.random.PRNGKey(0), np.zeros((1, 64, 64, 3), np.float32), training=False)


def test_default_sizes_and_configs():
    for q in range(1, 9):
        sizes = models.get_module("checkerboard").get_default_sizes(q)
        assert sizes == {"N": 192, "M": 192 if q <= 4 else 320}
        assert models.get_module("channelwise").get_default_sizes(q) == {"N": 192, "M": 320}
    for name in NAMES:
        spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for arg in ("quality=1", "quality=8,msssim", "runlocal"):
            c = module.get_config(arg)
            assert c.model.name == name
            if name == "channelwise":
                assert c.model.M % c.model.num_slices == 0, arg
