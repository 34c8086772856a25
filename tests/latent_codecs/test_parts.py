"""The latent codecs as parts: trees built without any network decode exactly, and the
training-mode options behave as documented."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.latent_codecs import (
    ChannelGroupsCodec,
    CheckerboardCodec,
    CheckerboardConv,
    EntropyBottleneckCodec,
    GaussianConditionalCodec,
    HyperpriorCodec,
    bitstream,
)
from nlq_jax.latent_codecs.checkerboard import anchor_mask
from nlq_jax.models import composed


class GroupContext(nn.Module):
    """Group 0's (σ, μ) = (2, 0); group k's features: a 1×1 conv of the groups before it."""

    groups: tuple[int, ...]

    @nn.compact
    def __call__(self, k: int, cond, done: tuple):
        g = self.groups[k]
        if not done:
            return jnp.full((*cond.shape[:-1], g), 2.0), jnp.zeros((*cond.shape[:-1], g))
        return nn.Conv(2 * g, (1, 1), name=f"cc_{k}")(jnp.concatenate(done, -1))

    def refine(self, k: int, cond, done: tuple, y_hat_k):
        return y_hat_k


class Identity(nn.Module):
    """A stand-in transform: the latent is the input, scaled."""

    scale: float = 20.0

    def __call__(self, x):
        return x * self.scale


class PartsModel(composed.LatentCodecModel):
    """No transforms to speak of: y = 20·x, a hyperprior of identity-like h_a/h_s around
    channel groups of uneven sizes, each a Gaussian (group 0) or a checkerboard (the others)."""

    groups: tuple[int, ...] = (1, 2, 5)
    stride = 4
    channels = 8

    def setup(self):
        C = sum(self.groups)
        self.g_a, self.g_s = Identity(20.0), Identity(1 / 20.0)
        self.h_a = nn.Conv(4, (3, 3), strides=(2, 2), padding=1)
        self.h_s = nn.ConvTranspose(2 * C, (2, 2), strides=(2, 2))
        self.prior = factorized_prior.DeepFactorized(4)
        codecs = [GaussianConditionalCodec(param_form="pair")]
        codecs += [
            CheckerboardCodec(CheckerboardConv(2 * g), nn.Dense(2 * g), quantizer="ste")
            for g in self.groups[1:]
        ]
        self.entropy = HyperpriorCodec(
            h_a=self.h_a,
            h_s=self.h_s,
            side=EntropyBottleneckCodec(self.prior, key="z"),
            latent=ChannelGroupsCodec(self.groups, GroupContext(self.groups), tuple(codecs)),
        )

    def synthesis_bytes_per_pixel(self) -> float:
        return 64.0


def test_a_tree_of_parts_codes_exactly():
    model = PartsModel()
    x = np.random.default_rng(0).uniform(size=(1, 12, 16, 8)).astype(np.float32)
    variables = model.init({"params": jax.random.PRNGKey(0)}, x, training=False)
    tables = composed.build_tables(model, variables["params"])
    runner = bitstream.Runner(model, variables, tables)
    [streams] = composed.compress(runner, x)
    specs = composed.stream_specs(model, 12, 16)
    assert [s.name for s in specs] == ["z", "y"]
    bitstream.check_streams(specs, streams)
    decoded = composed.decompress(runner, streams, 12, 16)
    out = model.apply(variables, x, training=False)
    np.testing.assert_array_equal(decoded, np.asarray(out["x_hat"]))
    assert composed.latent_shapes(model, 12, 16) == {"y": (1, 12, 16, 8), "z": (1, 6, 8, 4)}
    # The streams hold about the information the forward counts: no less, and at most a few
    # per cent more (untrained: σ snapped to the scale table, z's rare symbols escaped from
    # the factorized tables, a few words of flush).
    information = float(out["bits"]["y"][0] + out["bits"]["z"][0])
    assert information - 1 <= 8 * sum(map(len, streams)) <= 1.05 * information + 2 * 64


def test_groups_must_add_up_to_the_channels():
    model = PartsModel(groups=(1, 2, 4))
    with pytest.raises(ValueError, match="do not add up"):
        model.init(jax.random.PRNGKey(0), np.zeros((1, 8, 8, 8), np.float32), training=False)


def test_checkerboard_ste_training_rounds_each_step_around_its_mean():
    """ "ste": ŷ is round(y − μ) + μ with each step's μ (anchors from cond alone, non-anchors
    from the anchors' context), and the gradient passes straight through the rounding (to y,
    and to μ: an anchor's y also moves the non-anchors' means)."""
    codec = CheckerboardCodec(CheckerboardConv(4), nn.Dense(4), quantizer="ste")
    rng = np.random.default_rng(1)
    y = jnp.asarray(rng.normal(size=(1, 6, 6, 2)) * 3, jnp.float32)
    cond = jnp.asarray(rng.normal(size=(1, 6, 6, 3)), jnp.float32)
    variables = codec.init({"params": jax.random.PRNGKey(0)}, y, cond, training=False)
    rngs = {"noise": jax.random.PRNGKey(1)}
    y_hat, bits = codec.apply(variables, y, cond, training=True, rngs=rngs)
    eval_hat, _ = codec.apply(variables, y, cond, training=False)
    # Training's ŷ is the eval (the decoder's) ŷ, and the rate is of y + U(−½, ½): finite.
    np.testing.assert_allclose(y_hat, eval_hat, atol=1e-5)
    assert np.isfinite(bits["y"]).all() and float(bits["y"][0]) > 0
    anchors = anchor_mask(6, 6)[None, :, :, None]

    def total(y, where):
        y_hat = codec.apply(variables, y, cond, training=True, rngs=rngs)[0]
        return jnp.where(where, y_hat, 0.0).sum()

    np.testing.assert_allclose(jax.grad(total)(y, anchors), np.broadcast_to(anchors, y.shape))
    non_anchors = jax.grad(total)(y, ~anchors)
    np.testing.assert_allclose(np.asarray(non_anchors)[~np.broadcast_to(anchors, y.shape)], 1.0)
