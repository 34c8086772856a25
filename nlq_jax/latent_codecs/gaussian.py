"""A latent coded with a Gaussian conditional: N(μ, σ²) per element, its σ snapped to a fixed
table of scales (Ballé et al. 2018; Minnen et al. 2018's mean-scale form).

What conditions it (`cond`) gives (σ, μ) by `param_form`: "scale" (cond is σ, μ = 0: the scale
hyperprior), "mean_scale" (cond is [σ | μ] along channels: mbt2018-mean's h_s), or "pair" (cond
is the tuple (σ, μ): a channel group's parameters).

Region of interest (`compress(..., roi=MASK, roi_gain=g)`, this codec at the root of y only):
y is quantized with a spatially varying step, Δ_in at the latent positions the region touches
and Δ_out = g·Δ_in elsewhere, ŷ = μ + Δ·round((y − μ)/Δ), each symbol coded with the table of
its scale σ/Δ. Δ_in is chosen so that the file is the size of the file without the region (the
Gaussian model's estimate of y's bits, bisected, then corrected twice by the real stream's
size): the region gets the bits the rest gives up. A second, optional raw stream "roi" carries
Δ_in, Δ_out (float32) and the mask at the latent's resolution (`nlq_jax.latent_codecs.roi`), so
decoding needs nothing but the file. The trained decoder was never shown Δ ≠ 1; quantizing y
more finely or more coarsely still moves its reconstruction towards or away from the
unquantized y's, the idea of spatially adaptive quality maps (Song, Choi, Kim, Lee,
"Variable-Rate Deep Image Compression through Spatially-Adaptive Feature Transform", ICCV 2021)
without their training.
"""

from __future__ import annotations

import struct
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from nlq_jax.entropy import coder as range_coder
from nlq_jax.entropy import gaussian
from nlq_jax.errors import FormatError
from nlq_jax.latent_codecs import bitstream
from nlq_jax.latent_codecs import roi as roi_lib
from nlq_jax.latent_codecs.base import Context, StreamCodec
from nlq_jax.quantizers.scalar import quantize

PARAM_FORMS = ("scale", "mean_scale", "pair")
# The region-of-interest stream's header: Δ_in and Δ_out, float32; the packed mask follows.
ROI_HEADER = struct.Struct("<ff")
# Quantization steps a region-of-interest file may use (a finer step than 1/64 or a coarser one
# than 64 is useless to a decoder trained at 1, and such a file is refused as corrupted).
ROI_STEP_RANGE = (1.0 / 64, 64.0)
DEFAULT_ROI_GAIN = 4.0


def gaussian_params(cond: Any, form: str) -> tuple[jax.Array, jax.Array]:
    """(σ, μ) from what conditions a Gaussian codec (see the module docstring)."""
    if form == "scale":
        return cond, jnp.zeros_like(cond)
    if form == "mean_scale":
        half = cond.shape[-1] // 2
        return cond[..., :half], cond[..., half:]
    if form == "pair":
        return cond
    raise ValueError(f"unknown param_form {form!r}; use one of {', '.join(PARAM_FORMS)}")


def rate_and_value(
    module: nn.Module,
    y: jax.Array,
    scales: jax.Array,
    means: jax.Array,
    quantizer: str,
    *,
    training: bool,
) -> tuple[jax.Array, jax.Array]:
    """(ŷ, bits [B]) of y under N(μ, σ²): eval rounds around μ; training takes the rate of
    y + U(−½, ½) and ŷ = y + the same noise ("noise") or round(y − μ) + μ with a
    straight-through gradient ("ste")."""
    if not training:
        y_hat = quantize(y, "round", offset=means)
        return y_hat, gaussian.gaussian_bits(y_hat - means, scales)
    noisy = quantize(y, "noise", rng=module.make_rng("noise"))
    bits = gaussian.gaussian_bits(noisy - means, scales)
    if quantizer == "noise":
        return noisy, bits
    if quantizer == "ste":
        return quantize(y, "ste", offset=means), bits
    raise ValueError(f"unknown quantizer {quantizer!r}; use 'noise' or 'ste'")


class GaussianConditionalCodec(StreamCodec):
    """y ~ N(μ, σ²) with (σ, μ) from `cond`; one stream `key` (and optionally "roi").

    Attributes:
      param_form: how `cond` gives (σ, μ): "scale", "mean_scale" or "pair".
      quantizer: training's ŷ, "noise" (y + U(−½, ½)) or "ste" (rounded, straight-through).
      scale_rule: how σ picks its table (`gaussian.scale_indexes`): "nearest" or
        "next_larger" (CompressAI's).
      table_precision: bits of the tables' probabilities (24; CompressAI's 16).
      key: the latent's, stream's and table's name.
      roi: whether `compress` offers region-of-interest coding (the root codec of y only: its
        file has the optional "roi" stream).
    """

    param_form: str = "scale"
    quantizer: str = "noise"
    scale_rule: str = "nearest"
    table_precision: int = 24
    key: str = "y"
    roi: bool = False

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        scales, means = gaussian_params(cond, self.param_form)
        if training and self.quantizer == "noise":
            # As `gaussian.GaussianConditional` (whose noise the trained models drew).
            y_hat = quantize(y, "noise", rng=self.make_rng("noise"))
            bits = gaussian.gaussian_bits(y_hat - means, scales)
            return y_hat, {self.key: bits}
        y_hat, bits = rate_and_value(self, y, scales, means, self.quantizer, training=training)
        return y_hat, {self.key: bits}

    # The bitstream path's jitted pieces (the encoder and the decoder call them alike).
    prepares = True

    def coding_params(self, cond: Any) -> tuple[jax.Array, jax.Array]:
        """cond → (table indexes, means)."""
        scales, means = gaussian_params(cond, self.param_form)
        return gaussian.scale_indexes(scales, rule=self.scale_rule), means

    def prepare(self, cond: Any) -> tuple[jax.Array, jax.Array]:
        """What coding needs of cond: (table indexes, means) (see `StreamCodec`)."""
        return self.coding_params(cond)

    def coding_params_steps(self, cond: Any, steps: jax.Array):
        """cond and quantization steps Δ → (table indexes of σ/Δ, means, scales)."""
        scales, means = gaussian_params(cond, self.param_form)
        return gaussian.scale_indexes(scales / steps, rule=self.scale_rule), means, scales

    @nn.nowrap
    def tables(self) -> dict:
        return {self.key: gaussian.build_tables(precision=self.table_precision)}

    @nn.nowrap
    def encode_into(self, ctx: Context, encoder, y, cond=None, prepared=None) -> np.ndarray:
        indexes, means = ctx.call("coding_params", cond) if prepared is None else prepared
        sym = bitstream.symbols(y, means)
        ctx.coder(self.key).encode_chunk(encoder, sym, indexes)
        return bitstream.dequantize(sym, means)

    @nn.nowrap
    def decode_from(self, ctx: Context, decoder, shape, cond=None, prepared=None):
        indexes, means = ctx.call("coding_params", cond) if prepared is None else prepared
        return bitstream.dequantize(ctx.coder(self.key).decode_chunk(decoder, indexes), means)

    # Region of interest.
    @nn.nowrap
    def supports(self, option: str) -> bool:
        return self.roi and option in ("roi", "roi_gain")

    @nn.nowrap
    def stream_specs(self, shapes):
        specs = super().stream_specs(shapes)
        if self.roi:
            positions = int(np.prod(shapes[self.key][1:-1]))
            size = ROI_HEADER.size + roi_lib.packed_bytes_bound(positions)
            specs.append(bitstream.StreamSpec("roi", size, optional=True, raw=True))
        return specs

    @nn.nowrap
    def compress(self, ctx, y, cond=None, *, roi=None, roi_gain=DEFAULT_ROI_GAIN, **options):
        if roi is None:
            return super().compress(ctx, y, cond, **options)
        if not self.roi:
            raise ValueError("this codec has no region-of-interest coding")
        if not roi_gain >= 1.0:
            raise ValueError(f"roi_gain must be at least 1, got {roi_gain}")
        return self._encode_roi(ctx, y, cond, roi, roi_gain)

    @nn.nowrap
    def decompress(self, ctx, streams, shapes, cond=None):
        if len(streams) < 2:
            return super().decompress(ctx, streams, shapes, cond)
        data = streams[1]
        if len(data) <= ROI_HEADER.size:
            raise FormatError("corrupted region-of-interest stream")
        step_in, step_out = ROI_HEADER.unpack_from(data)
        lo, hi = ROI_STEP_RANGE
        if not (lo <= step_in <= hi and lo <= step_out <= hi):
            raise FormatError("corrupted region-of-interest stream (quantization steps)")
        mask = roi_lib.unpack_mask(data[ROI_HEADER.size :], shapes[self.key][1:3])
        steps = _step_map(mask, step_in, step_out)
        indexes, means, _ = ctx.call("coding_params_steps", cond, steps)
        y_sym = ctx.coder(self.key).decode(streams[0], indexes)
        return np.asarray(y_sym, np.float32) * steps + np.asarray(means, np.float32)

    @nn.nowrap
    def _encode_roi(self, ctx, y, cond, mask, gain: float):
        """([y stream, roi stream], ŷ) of one image with a region `mask` [h, w]: Δ_in set so
        the two streams are the size of the plain y stream."""
        coder = ctx.coder(self.key)
        # Steps of 1: the plain file's indexes (σ/1 is σ exactly), means and scales.
        indexes, means, scales = ctx.call("coding_params_steps", cond, np.ones((1, 1, 1, 1)))
        plain = 8 * len(coder.encode(bitstream.symbols(y, means), indexes))
        packed = roi_lib.pack_mask(mask)
        # The plain stream's bits, less what the map and its stream length cost.
        target = plain - 8 * (ROI_HEADER.size + len(packed) + 4)
        aim = target
        for _ in range(3):
            step_in = _step_for_bits(y, means, scales, mask, gain, aim)
            steps = _step_map(mask, step_in, step_in * gain)
            indexes, means_s, _ = ctx.call("coding_params_steps", cond, steps)
            sym = _step_symbols(y, means_s, steps)
            encoder = range_coder.new_encoder()
            coder.encode_chunk(encoder, sym, indexes)
            y_stream = range_coder.finish(encoder)
            aim -= 8 * len(y_stream) - target
        y_hat = np.asarray(sym, np.float32) * steps + np.asarray(means_s, np.float32)
        return [y_stream, ROI_HEADER.pack(step_in, step_in * gain) + packed], y_hat


def _step_map(mask: np.ndarray, step_in: float, step_out: float) -> np.ndarray:
    """float32 [1, h, w, 1] quantization steps: `step_in` where `mask`, else `step_out`."""
    steps = np.where(mask, np.float32(step_in), np.float32(step_out)).astype(np.float32)
    return steps[None, :, :, None]


def _step_symbols(y: np.ndarray, means: np.ndarray, steps: np.ndarray | float) -> np.ndarray:
    """round((y − μ) / Δ) in float32 (half to even), as int32."""
    y, means = np.asarray(y, np.float32), np.asarray(means, np.float32)
    return np.round((y - means) / np.asarray(steps, np.float32)).astype(np.int32)


def _estimated_bits(y, means, scales, steps) -> float:
    """The Gaussian model's bits for y's symbols at quantization steps Δ: −log2 of the mass of
    each symbol's bin under N(0, (σ/Δ)²) (σ floored at the scale table's smallest entry)."""
    k = np.abs(_step_symbols(y, means, steps)).astype(np.float64)
    s = np.maximum(np.asarray(scales, np.float64), gaussian.SCALE_MIN) / np.asarray(steps)
    p = special.ndtr((0.5 - k) / s) - special.ndtr((-0.5 - k) / s)
    return float(-np.log2(np.maximum(p, 2.0**-24)).sum())


def _step_for_bits(y, means, scales, mask, gain: float, target: float) -> float:
    """The Δ_in (Δ_out = gain·Δ_in) whose estimated bits are closest to `target`, by bisection
    in log Δ over `ROI_STEP_RANGE` (the bits fall as Δ grows)."""
    lo, hi = np.log2(ROI_STEP_RANGE[0]), np.log2(ROI_STEP_RANGE[1] / gain)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        bits = _estimated_bits(y, means, scales, _step_map(mask, 2.0**mid, 2.0**mid * gain))
        lo, hi = (mid, hi) if bits > target else (lo, mid)
    return float(np.float32(2.0 ** (0.5 * (lo + hi))))
