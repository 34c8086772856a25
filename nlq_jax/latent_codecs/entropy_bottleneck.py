"""A latent coded with a deep factorized prior: one table per channel, quantized around the
prior's medians (Ballé et al. 2018's "factorized prior"; the hyperprior's side information).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import numpy as np

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.latent_codecs import bitstream
from nlq_jax.latent_codecs.base import Context, StreamCodec


class EntropyBottleneckCodec(StreamCodec):
    """`prior` (a `DeepFactorized`, possibly shared with the model) codes the latent `key`.

    Tables: `key` (one table per channel) and `key + "_medians"` (the quantization offsets).

    Attributes:
      prior: the deep factorized prior.
      key: the latent's and its stream's name ("y" for bmshj2018-factorized, "z" for the
        hyperprior's side information).
    """

    prior: nn.Module
    key: str = "y"

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        y_hat, bits = self.prior(y, training=training)
        return y_hat, {self.key: bits}

    @nn.nowrap
    def tables(self) -> dict:
        prior = self.prior.clone(parent=None)  # unbound: `build_tables` applies it
        tables, medians = factorized_prior.build_tables(prior, self.prior.variables["params"])
        return {self.key: tables, self.key + "_medians": medians}

    @nn.nowrap
    def encode_into(self, ctx: Context, encoder, y, cond=None, prepared=None) -> np.ndarray:
        medians = ctx.tables[self.key + "_medians"]
        sym = bitstream.symbols(y, medians)
        ctx.coder(self.key).encode_chunk(encoder, sym, bitstream.channel_indexes(sym.shape))
        return bitstream.dequantize(sym, medians)

    @nn.nowrap
    def decode_from(self, ctx: Context, decoder, shape, cond=None, prepared=None):
        sym = ctx.coder(self.key).decode_chunk(decoder, bitstream.channel_indexes(shape))
        return bitstream.dequantize(sym, ctx.tables[self.key + "_medians"])
