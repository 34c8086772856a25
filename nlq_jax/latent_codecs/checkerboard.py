"""A two-step spatial context: anchors (i + j even) from what conditions the latent alone, then
the non-anchors from a checkerboard-masked convolution of the decoded anchors (He, Zheng, Sun,
Wang, Qin, "Checkerboard Context Model for Efficient Learned Image Compression", CVPR 2021,
sec. 3, fig. 3 and 4). Both steps share one entropy-parameters network, [cond, ctx] → (σ, μ),
so decoding takes two parallel steps instead of one per position.

Training: ŷ = y + U(−½, ½) everywhere ("noise", the paper's and CompressAI's mbt-style
training: one pass, because the anchors' context is zero), or ŷ rounded around each step's μ
with a straight-through gradient ("ste", in two passes as the decoder, ELIC's). Eval is the
codec's computation: the anchor step gives (σ_a, μ_a) from cond alone, ŷ_a = round(y − μ_a) +
μ_a; the context step sees ŷ with the non-anchors zeroed and gives (σ_n, μ_n).

One stream of two chunks (anchors, then non-anchors, each in raster order); it can share its
range coder with siblings (`encode_into`), as the groups of ELIC do.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy import gaussian
from nlq_jax.latent_codecs import bitstream
from nlq_jax.latent_codecs.base import Context, StreamCodec
from nlq_jax.quantizers.scalar import quantize


def anchor_mask(height: int, width: int) -> np.ndarray:
    """bool [height, width]: True at the anchors, the positions with i + j even."""
    i, j = np.indices((height, width))
    return (i + j) % 2 == 0


def checkerboard_kernel_mask(kernel_size: int) -> np.ndarray:
    """float32 [k, k, 1, 1]: 1 at the taps with odd offset parity, which are anchors when the
    centre is a non-anchor (CompressAI's `CheckerboardMaskedConv2d`)."""
    i, j = np.indices((kernel_size, kernel_size))
    return ((i + j) % 2 == 1).astype(np.float32)[:, :, None, None]


class CheckerboardConv(nn.Module):
    """A k×k "same" convolution whose kernel is zero at even offsets (the checkerboard mask).

    At a non-anchor it sees only anchors; its output at the anchors is never used.

    Attributes:
      features: output channels.
      kernel_size: k (odd; the paper's 5).
    """

    features: int
    kernel_size: int = 5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, h, w, C] → [B, h, w, features]."""
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        y = jax.lax.conv_general_dilated(
            x,
            kernel * checkerboard_kernel_mask(k),
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + bias


def positions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat raster indices of the anchors and of the non-anchors (the order of `y[mask]`)."""
    anchors = anchor_mask(height, width).ravel()
    return np.flatnonzero(anchors), np.flatnonzero(~anchors)


def _flatten(x: jax.Array) -> jax.Array:
    """[B, h, w, C] → [B, h·w, C]."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


class CheckerboardCodec(StreamCodec):
    """y given `cond` (e.g. ψ = h_s(ẑ)) in two checkerboard steps.

    Attributes:
      context_prediction: the masked convolution of ŷ (a `CheckerboardConv`).
      entropy_parameters: [cond, ctx] → [σ | μ], pointwise.
      quantizer: training's ŷ, "noise" or "ste" (see the module docstring).
      scale_rule: how σ picks its table (`gaussian.scale_indexes`).
      table_precision: bits of the Gaussian tables' probabilities.
      key: the latent's, stream's and table's name.
    """

    context_prediction: nn.Module
    entropy_parameters: nn.Module
    quantizer: str = "noise"
    scale_rule: str = "nearest"
    table_precision: int = 24
    key: str = "y"

    def _params(self, ctx: jax.Array, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(scales, means) from the context features and cond, at any positions."""
        params = self.entropy_parameters(jnp.concatenate([cond, ctx], axis=-1))
        half = params.shape[-1] // 2
        return params[..., :half], params[..., half:]

    def _ctx_zeros(self, cond: jax.Array) -> jax.Array:
        return jnp.zeros((*cond.shape[:-1], self.context_prediction.features), cond.dtype)

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        anchors = jnp.asarray(anchor_mask(*y.shape[1:3]))[None, :, :, None]
        if training and self.quantizer == "noise":
            y_hat = quantize(y, "noise", rng=self.make_rng("noise"))
            ctx = jnp.where(anchors, 0.0, self.context_prediction(y_hat))
            scales, means = self._params(ctx, cond)
            return y_hat, {self.key: gaussian.gaussian_bits(y_hat - means, scales)}
        if training:  # "ste": the decoder's two passes, on the whole grid
            scales_a, means_a = self._params(self._ctx_zeros(cond), cond)
            y_hat_a = jnp.where(anchors, quantize(y, "ste", offset=means_a), 0.0)
            ctx = self.context_prediction(y_hat_a)
            scales_n, means_n = self._params(ctx, cond)
            scales = jnp.where(anchors, scales_a, scales_n)
            means = jnp.where(anchors, means_a, means_n)
            y_hat = jnp.where(anchors, y_hat_a, quantize(y, "ste", offset=means_n))
            noisy = quantize(y, "noise", rng=self.make_rng("noise"))
            return y_hat, {self.key: gaussian.gaussian_bits(noisy - means, scales)}
        # The decoder's two steps, on the values it holds at each, through the same functions.
        a, n = positions(*y.shape[1:3])
        y_flat = _flatten(y)
        scales_a, means_a = self._anchor_step_params(cond)
        y_hat_a = quantize(y_flat[:, a], "round", offset=means_a)
        y_hat_flat = jnp.zeros_like(y_flat).at[:, a].set(y_hat_a)
        scales_n, means_n = self._context_step_params(cond, y_hat_flat.reshape(y.shape))
        y_hat_n = quantize(y_flat[:, n], "round", offset=means_n)
        y_hat = y_hat_flat.at[:, n].set(y_hat_n).reshape(y.shape)
        y_bits = gaussian.gaussian_bits(y_hat_a - means_a, scales_a)
        y_bits += gaussian.gaussian_bits(y_hat_n - means_n, scales_n)
        return y_hat, {self.key: y_bits}

    def _anchor_step_params(self, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        """cond [B, h, w, C] → the anchors' (scales, means) [B, n_anchors, M], raster order."""
        a, _ = positions(*cond.shape[1:3])
        cond_a = _flatten(cond)[:, a]
        return self._params(self._ctx_zeros(cond_a), cond_a)

    def _context_step_params(self, cond: jax.Array, y_hat_anchors: jax.Array):
        """(cond, ŷ with the non-anchors zeroed) → the non-anchors' (scales, means)."""
        _, n = positions(*cond.shape[1:3])
        ctx = _flatten(self.context_prediction(y_hat_anchors))[:, n]
        return self._params(ctx, _flatten(cond)[:, n])

    # The bitstream path's jitted pieces: each step's parameters only where it codes.
    def anchor_step(self, cond: jax.Array) -> tuple[jax.Array, jax.Array]:
        """cond → the anchors' (table indexes, means), both [B, n_anchors, M]."""
        scales, means = self._anchor_step_params(cond)
        return gaussian.scale_indexes(scales, rule=self.scale_rule), means

    def context_step(self, cond: jax.Array, y_hat_anchors: jax.Array):
        """(cond, ŷ with the non-anchors zeroed) → the non-anchors' (table indexes, means)."""
        scales, means = self._context_step_params(cond, y_hat_anchors)
        return gaussian.scale_indexes(scales, rule=self.scale_rule), means

    @nn.nowrap
    def tables(self) -> dict:
        return {self.key: gaussian.build_tables(precision=self.table_precision)}

    @nn.nowrap
    def encode_into(self, ctx: Context, encoder, y, cond=None, prepared=None) -> np.ndarray:
        a, n = positions(*y.shape[1:3])
        coder = ctx.coder(self.key)
        y_flat = y.reshape(-1, y.shape[-1])
        y_hat = np.zeros(y.shape, np.float32)
        flat = y_hat.reshape(-1, y.shape[-1])  # a view: writes land in y_hat
        indexes, means = ctx.call("anchor_step", cond)
        sym = bitstream.symbols(y_flat[a], means[0])
        coder.encode_chunk(encoder, sym, indexes[0])
        flat[a] = bitstream.dequantize(sym, means[0])
        indexes, means = ctx.call("context_step", cond, y_hat)
        sym = bitstream.symbols(y_flat[n], means[0])
        coder.encode_chunk(encoder, sym, indexes[0])
        flat[n] = bitstream.dequantize(sym, means[0])
        return y_hat

    @nn.nowrap
    def decode_from(self, ctx: Context, decoder, shape, cond=None, prepared=None):
        a, n = positions(*shape[1:3])
        coder = ctx.coder(self.key)
        y_hat = np.zeros(shape, np.float32)
        flat = y_hat.reshape(-1, shape[-1])  # a view: writes land in y_hat
        indexes, means = ctx.call("anchor_step", cond)
        flat[a] = bitstream.dequantize(coder.decode_chunk(decoder, indexes[0]), means[0])
        indexes, means = ctx.call("context_step", cond, y_hat)
        flat[n] = bitstream.dequantize(coder.decode_chunk(decoder, indexes[0]), means[0])
        return y_hat
