"""A spatial autoregressive context: each position's (σ, μ) from what conditions the latent and
a causal (mask "A") convolution of the positions decoded before it (Minnen, Ballé, Toderici,
"Joint autoregressive and hierarchical priors for learned image compression", NeurIPS 2018).

Coding decodes the latent in wavefronts (`nlq_jax.entropy.context.wavefront_schedule`): one
jitted `lax.fori_loop` over about 3·h + w steps computes each wavefront's (σ, μ) from the
decoded ŷ, and a host callback inside the loop range-decodes its symbols — never a Python loop
over positions. The encoder runs the *same* compiled loop, its callback computing and encoding
round(y − μ) instead, so both sides see bit-identical μ and table indexes. The eval-mode forward
runs this loop too (symbols computed in the loop), so its ŷ and bits are the codec's.

Training uses additive noise, and the context sees the noisy ỹ (all positions at once); the
rate term is computed on a second, independent noise sample y + u₂, as in CompressAI's mbt2018.

One stream, one chunk per wavefront (regular symbols, then that chunk's escapes).
"""

from __future__ import annotations

import threading
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from nlq_jax.entropy import coder as range_coder
from nlq_jax.entropy import gaussian
from nlq_jax.entropy.context import causal_taps, wavefront_schedule
from nlq_jax.errors import FormatError
from nlq_jax.latent_codecs import bitstream
from nlq_jax.latent_codecs.base import Context, StreamCodec
from nlq_jax.quantizers.scalar import quantize


class AutoregressiveCodec(StreamCodec):
    """y given `cond` (ψ) and a causal context, decoded wavefront by wavefront.

    Attributes:
      context_prediction: the masked convolution (`nlq_jax.entropy.context.MaskedConv`, its
        `tap_matrix` used in the loop).
      entropy_parameters: [cond, ctx] → [σ | μ], pointwise.
      scale_rule: how σ picks its table (`gaussian.scale_indexes`).
      table_precision: bits of the Gaussian tables' probabilities.
      key: the latent's, stream's and table's name.
    """

    context_prediction: nn.Module
    entropy_parameters: nn.Module
    scale_rule: str = "nearest"
    table_precision: int = 24
    key: str = "y"

    def _split(self, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        half = params.shape[-1] // 2
        return params[..., :half], params[..., half:]

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        if training:
            y_hat = quantize(y, "noise", rng=self.make_rng("noise"))
            ctx = self.context_prediction(y_hat)
            scales, means = self._split(self.entropy_parameters(jnp.concatenate([cond, ctx], -1)))
            # As CompressAI's mbt2018: the rate is that of a second noisy sample y + u₂ (its
            # GaussianConditional draws its own noise), not of the ỹ the context and g_s see.
            y_tilde = quantize(y, "noise", rng=self.make_rng("noise"))
            return y_hat, {self.key: gaussian.gaussian_bits(y_tilde - means, scales)}
        y_hat, scales, means = self.sequential(cond, y)
        return y_hat, {self.key: gaussian.gaussian_bits(y_hat - means, scales)}

    def sequential(self, cond: jax.Array, y: jax.Array | None = None):
        """ŷ, σ, μ [B, h, w, M] computed wavefront by wavefront, as the decoder does.

        With `y`, each wavefront's symbols are round(y − μ) (the eval forward); without, they
        come from the active coding session's callback (batch 1: the encoder and decoder).
        """
        if y is None or cond.shape[0] == 1:
            # One image unbatched: the same computation for the forward, encoder and decoder.
            one = self._loop(cond[0], None if y is None else y[0])
            return jax.tree_util.tree_map(lambda a: a[None], one)
        return jax.vmap(self._loop)(cond, y)

    def _loop(self, cond: jax.Array, y: jax.Array | None):
        h, w = cond.shape[0], cond.shape[1]
        M = self.context_prediction.in_features
        positions, _ = wavefront_schedule(h, w)
        steps, P = positions.shape
        junk = h * w  # invalid (padding) entries of a wavefront read and write this row
        pos = jnp.asarray(np.where(positions < 0, junk, positions))
        # ŷ lives in a zero-padded grid (2 rows above, 2 columns each side, 1 junk row below)
        # so every tap of every position is a valid flat index.
        wp = w + 4
        padded = np.where(positions < 0, 0, (positions // w + 2) * wp + positions % w + 2)
        padded = np.where(positions < 0, (h + 2) * wp + 2, padded)
        taps = causal_taps(5)
        tap_index = jnp.asarray(padded[:, :, None] + (taps[:, 0] * wp + taps[:, 1])[None, None])
        padded = jnp.asarray(padded)

        w_ctx, b_ctx = self.context_prediction.tap_matrix()
        cond_flat = jnp.concatenate(
            [cond.reshape(h * w, -1), jnp.zeros((1, cond.shape[-1]), cond.dtype)], 0
        )
        y_flat = None if y is None else jnp.concatenate([y.reshape(h * w, M), jnp.zeros((1, M))])

        def body(t, carry):
            grid, scales_out, means_out = carry
            neighbours = grid[tap_index[t]].reshape(P, -1)  # [P, taps·M]
            ctx = neighbours @ w_ctx + b_ctx
            params = self.entropy_parameters(jnp.concatenate([cond_flat[pos[t]], ctx], -1))
            scales, means = self._split(params)
            indexes = gaussian.scale_indexes(scales, rule=self.scale_rule)
            if y_flat is None:
                sym = io_callback(
                    _session_step,
                    jax.ShapeDtypeStruct((P, M), jnp.int32),
                    t,
                    indexes,
                    means,
                    ordered=True,
                )
            else:
                sym = quantize(y_flat[pos[t]], "symbols", offset=means)
            y_hat = quantize(sym, "dequantize", offset=means)
            grid = grid.at[padded[t]].set(y_hat)
            return grid, scales_out.at[pos[t]].set(scales), means_out.at[pos[t]].set(means)

        grid = jnp.zeros(((h + 3) * wp, M))
        flat = jnp.zeros((h * w + 1, M))
        grid, scales, means = jax.lax.fori_loop(0, steps, body, (grid, flat, flat))
        grid = grid.reshape(h + 3, wp, M)[2 : h + 2, 2 : w + 2]
        return grid, scales[:junk].reshape(h, w, M), means[:junk].reshape(h, w, M)

    def decode_latent(self, cond: jax.Array) -> jax.Array:
        """ŷ [1, h, w, M] from the active session's symbols (the coder's callback)."""
        return self.sequential(cond)[0]

    @nn.nowrap
    def tables(self) -> dict:
        return {self.key: gaussian.build_tables(precision=self.table_precision)}

    @nn.nowrap
    def compress(self, ctx: Context, y, cond=None, **options):
        if options:
            raise ValueError(f"{type(self).__name__} has no coding options {sorted(options)}")
        session = _Session(ctx.coder(self.key), y.shape[1], y.shape[2], y=y[0])
        y_hat = session.run(ctx, cond)
        return [range_coder.finish(session.encoder)], y_hat

    @nn.nowrap
    def decompress(self, ctx: Context, streams, shapes, cond=None):
        h, w = shapes[self.key][1:3]
        y_hat = _Session(ctx.coder(self.key), h, w, data=streams[0]).run(ctx, cond)
        if not np.isfinite(y_hat).all():
            raise FormatError("corrupted stream (the decoded latent is not finite)")
        return y_hat


# The coding session the loop's callback talks to. XLA may run the callback on any of its
# threads, so this is a process-wide slot, held under a lock for the whole loop.
_LOCK = threading.Lock()
_ACTIVE: dict[str, _Session | None] = {"session": None}


class _Session:
    """Feeds a wavefront's symbols to the loop: computed and encoded (encoder), or decoded."""

    def __init__(self, coder: range_coder.TableCoder, h: int, w: int, y=None, data=None):
        self.coder = coder
        self.positions, self.counts = wavefront_schedule(h, w)
        self.y = None if y is None else np.asarray(y, np.float32).reshape(h * w, -1)
        self.encoder = range_coder.new_encoder() if y is not None else None
        self.decoder = None if data is None else range_coder.new_decoder(data)
        self.error: Exception | None = None

    def step(self, t, indexes, means) -> np.ndarray:
        t = int(t)
        n = int(self.counts[t])
        sym = np.zeros(indexes.shape, np.int32)
        if self.error is not None:
            return sym
        try:
            if self.encoder is not None:
                sym[:n] = bitstream.symbols(self.y[self.positions[t, :n]], means[:n])
                self.coder.encode_chunk(self.encoder, sym[:n], indexes[:n])
            else:
                sym[:n] = self.coder.decode_chunk(self.decoder, indexes[:n])
        except Exception as e:  # noqa: BLE001 (re-raised by `run` after the loop)
            self.error = e
        return sym

    def run(self, ctx: Context, cond: np.ndarray) -> np.ndarray:
        with _LOCK:
            _ACTIVE["session"] = self
            try:
                y_hat = ctx.call("decode_latent", cond)
            finally:
                _ACTIVE["session"] = None
        if self.error is not None:
            raise self.error
        return y_hat


def _session_step(t, indexes, means):
    session = _ACTIVE["session"]
    if session is None:
        raise RuntimeError("the context model's coding loop ran outside a coding session")
    return session.step(t, np.asarray(indexes), np.asarray(means))
