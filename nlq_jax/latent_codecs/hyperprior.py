"""Side information: a latent z = h_a(y) coded by one codec, whose decoded ẑ predicts, through
h_s, what conditions the codec of y (Ballé et al. 2018's hyperprior; Minnen et al. 2018's
mean-scale hyperprior and the context models built on it).

```
y ─► f ─► h_a ─► z ─► side codec ─► ẑ ─► h_s ─► ψ
└──────────────────────────────► latent codec(y | ψ) ─► ŷ
```
Streams: the side codec's, then the latent codec's. Bits: both codecs' {key: bits}.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nlq_jax.latent_codecs.base import LatentCodec

ANALYSIS_INPUTS = ("abs", "identity")


class HyperpriorCodec(LatentCodec):
    """y coded by `latent` conditioned on ψ = h_s(ẑ), z = h_a(f(y)) coded by `side`.

    Attributes:
      h_a, h_s: the hyper-analysis and hyper-synthesis transforms.
      side: the codec of z (e.g. an `EntropyBottleneckCodec` with key "z").
      latent: the codec of y given ψ (Gaussian, checkerboard, channel groups, wavefront...).
      analysis_input: f, "abs" (|y|, the scale hyperprior) or "identity".
    """

    h_a: nn.Module
    h_s: nn.Module
    side: LatentCodec
    latent: LatentCodec
    analysis_input: str = "identity"

    def _input(self, y: jax.Array) -> jax.Array:
        if self.analysis_input == "abs":
            return jnp.abs(y)
        if self.analysis_input == "identity":
            return y
        raise ValueError(f"analysis_input must be one of {ANALYSIS_INPUTS}")

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        z = self.h_a(self._input(y))
        z_hat, z_bits = self.side(z, training=training)
        y_hat, y_bits = self.latent(y, self.h_s(z_hat), training=training)
        return y_hat, {**y_bits, **z_bits}

    def latents(self, y: jax.Array) -> dict[str, jax.Array]:
        return {**self.latent.latents(y), **self.side.latents(self.h_a(self._input(y)))}

    # The bitstream path's jitted pieces.
    def hyper_analysis(self, y: jax.Array) -> jax.Array:
        return self.h_a(self._input(y))

    def hyper_synthesis(self, z_hat: jax.Array) -> Any:
        return self.h_s(z_hat)

    @nn.nowrap
    def stream_specs(self, shapes):
        return [*self.side.stream_specs(shapes), *self.latent.stream_specs(shapes)]

    @nn.nowrap
    def tables(self) -> dict:
        return {**self.side.tables(), **self.latent.tables()}

    @nn.nowrap
    def supports(self, option: str) -> bool:
        return self.latent.supports(option)

    @nn.nowrap
    def compress(self, ctx, y, cond=None, **options):
        z = ctx.call("hyper_analysis", y)
        z_streams, z_hat = self.side.compress(ctx.child("side"), z)
        psi = ctx.call("hyper_synthesis", z_hat)
        y_streams, y_hat = self.latent.compress(ctx.child("latent"), y, psi, **options)
        return [*z_streams, *y_streams], y_hat

    @nn.nowrap
    def decompress(self, ctx, streams, shapes, cond=None):
        n = len(self.side.stream_specs(shapes))
        z_hat = self.side.decompress(ctx.child("side"), streams[:n], shapes)
        psi = ctx.call("hyper_synthesis", z_hat)
        return self.latent.decompress(ctx.child("latent"), streams[n:], shapes, psi)
