"""Two levels of latents where the coarse one shapes the fine one's analysis (VQ-VAE-2: Razavi,
van den Oord, Vinyals, NeurIPS 2019, sec. 3.1).

```
y ─► top_analysis ─► z_t ─► top codec ─► ẑ_t ─► top_synthesis ─┐
└──────────────────────────────────────────────────────────────┴► merge([y, ·]) ─► z_b
                                                      z_b ─► bottom codec ─► ẑ_b
ŷ = (ẑ_t, ẑ_b)
```
Unlike a hyperprior, the top level conditions the *analysis* of the bottom one, not its
probabilities: the decoder decodes both levels independently (top_synthesis runs only in the
encoder) and the model's synthesis reads the pair. Streams: the top codec's, then the bottom's.
Bits: both codecs'; aux: "loss" and "fixed_bits" summed over the levels, every other entry the
mean of the two, and each level's own entries prefixed "<key>/".
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from nlq_jax.latent_codecs.base import LatentCodec


def merge_aux(levels: dict[str, dict]) -> dict:
    """The levels' aux dicts as one (see the module docstring)."""
    aux: dict = {"loss": 0.0, "fixed_bits": 0.0}
    for level, level_aux in levels.items():
        aux["loss"] = aux["loss"] + level_aux.get("loss", 0.0)
        aux["fixed_bits"] = aux["fixed_bits"] + level_aux.get("fixed_bits", 0.0)
        for key, value in level_aux.items():
            if key == "loss":
                continue
            aux[f"{level}/{key}"] = value
            if key != "fixed_bits":
                aux[key] = aux.get(key, 0.0) + value / len(levels)
    return aux


class TwoLevelCodec(LatentCodec):
    """y coded as a top latent and a bottom latent analysed with the decoded top's help.

    Attributes:
      top_analysis: y → z_t.
      top_synthesis: ẑ_t → features at y's resolution (the encoder's only).
      merge: [y, top_synthesis(ẑ_t)] → z_b.
      top, bottom: the two levels' codecs (e.g. `CategoricalIndicesCodec`s keyed "top" and
        "bottom").
    """

    top_analysis: nn.Module
    top_synthesis: nn.Module
    merge: nn.Module
    top: LatentCodec
    bottom: LatentCodec

    def _bottom_input(self, y: jax.Array, z_hat_top: jax.Array) -> jax.Array:
        return self.merge(jnp.concatenate([y, self.top_synthesis(z_hat_top)], axis=-1))

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        z_hat_t, bits_t, aux_t = self.top(self.top_analysis(y), training=training)
        z_hat_b, bits_b, aux_b = self.bottom(self._bottom_input(y, z_hat_t), training=training)
        aux = merge_aux({self.top.key: aux_t, self.bottom.key: aux_b})
        return (z_hat_t, z_hat_b), {**bits_t, **bits_b}, aux

    def latents(self, y: jax.Array) -> dict[str, jax.Array]:
        z_t = self.top_analysis(y)
        return {**self.top.latents(z_t), **self.bottom.latents(self._bottom_input(y, z_t))}

    # The bitstream path's jitted pieces.
    def analysis_top(self, y: jax.Array) -> jax.Array:
        return self.top_analysis(y)

    def analysis_bottom(self, y: jax.Array, z_hat_top: jax.Array) -> jax.Array:
        return self._bottom_input(y, z_hat_top)

    @nn.nowrap
    def stream_specs(self, shapes):
        return [*self.top.stream_specs(shapes), *self.bottom.stream_specs(shapes)]

    @nn.nowrap
    def tables(self) -> dict:
        return {**self.top.tables(), **self.bottom.tables()}

    @nn.nowrap
    def compress(self, ctx, y, cond=None, **options):
        if options:
            raise ValueError(f"{type(self).__name__} has no coding options {sorted(options)}")
        top_streams, z_hat_t = self.top.compress(ctx.child("top"), ctx.call("analysis_top", y))
        z_b = ctx.call("analysis_bottom", y, z_hat_t)
        bottom_streams, z_hat_b = self.bottom.compress(ctx.child("bottom"), z_b)
        return [*top_streams, *bottom_streams], (z_hat_t, z_hat_b)

    @nn.nowrap
    def decompress(self, ctx, streams, shapes, cond=None):
        n = len(self.top.stream_specs(shapes))
        z_hat_t = self.top.decompress(ctx.child("top"), streams[:n], shapes)
        z_hat_b = self.bottom.decompress(ctx.child("bottom"), streams[n:], shapes)
        return z_hat_t, z_hat_b
