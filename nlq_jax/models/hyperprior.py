"""bmshj2018-hyperprior: a scale hyperprior — side information z predicts the scales of y.

Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior",
ICLR 2018, sec. 3 and fig. 4 (right).

```
x ─► g_a ─► y ─► Q ─► ŷ ──────────────────────────────► g_s ─► x̂
            │              ▲ N(0, σ²) per element (Gaussian conditional, scale table)
            └► |·| ► h_a ─► z ─► Q(medians) ─► ẑ ─► h_s ─► σ
                             ẑ coded with a deep factorized prior
h_a: conv3×3, ReLU, conv5×5/2, ReLU, conv5×5/2      h_s: deconv5×5×2, ReLU, deconv5×5×2,
                                                        ReLU, conv3×3 → M, ReLU
```
Streams: [z, y]. The decoder decodes ẑ, runs h_s, and decodes ŷ with the same table indexes.

Region of interest (`compress(..., roi=MASK)`, also for mbt2018-mean, which shares this
module's coding): y is quantized with a spatially varying step, Δ_in at the latent positions
the region touches and Δ_out = roi_gain·Δ_in elsewhere, ŷ = μ + Δ·round((y − μ)/Δ), each symbol
coded with the table of its scale σ/Δ. Δ_in is chosen so that the file is the size of the file
without the region (the Gaussian model's estimate of y's bits, bisected): the region gets the
bits the rest gives up. A third stream, "roi", carries Δ_in, Δ_out (float32) and the mask at
the latent's resolution (`nlq_jax.models.roi`), so decoding needs nothing but the file. The
trained decoder was never shown Δ ≠ 1; quantizing y more finely or more coarsely still moves
its reconstruction towards or away from the unquantized y's, the idea of spatially adaptive
quality maps (Song, Choi, Kim, Lee, "Variable-Rate Deep Image Compression through
Spatially-Adaptive Feature Transform", ICCV 2021) without their training.
"""

from __future__ import annotations

import struct

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.entropy import gaussian
from nlq_jax.errors import FormatError
from nlq_jax.layers.conv import DownConv, UpConv, conv_general_dilated
from nlq_jax.models import base
from nlq_jax.models import roi as roi_lib
from nlq_jax.models.factorized import (
    analysis_transform,
    synthesis_bytes_per_pixel,
    synthesis_transform,
)


def get_default_sizes(quality: int) -> dict[str, int]:
    """CompressAI's (N, M) for bmshj2018-hyperprior at quality 1–8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 128, "M": 192} if quality <= 5 else {"N": 192, "M": 320}


def _conv3x3(features: int) -> nn.Conv:
    return nn.Conv(
        features, (3, 3), padding=((1, 1), (1, 1)), conv_general_dilated=conv_general_dilated
    )


class Model(nn.Module):
    """Scale-hyperprior model; see the module docstring for the data flow.

    Attributes:
      N: channels of the hidden layers and of z.
      M: channels of the latent y.
      upsampling: `UpConv` method of g_s and h_s.
      prior_filters: hidden widths of the deep factorized prior ((3, 3, 3, 3) for models
        imported from CompressAI).
      prior_medians: "bisection" (the prior's medians) or "stored" (CompressAI's learned
        medians, for imported models) as its quantization offsets.
      scale_rule: how a predicted σ picks its coding table, `gaussian.scale_indexes`'s rule:
        "nearest" (ours) or "next_larger" (CompressAI's, for files the size of its strings).
        Only the files change, not the model's eval-mode bits.
      table_precision: bits of the Gaussian tables' probabilities (24; CompressAI's 16 for
        imported models coded as CompressAI codes them).
    """

    N: int = 128
    M: int = 192
    upsampling: str = "phase"
    prior_filters: tuple[int, ...] = (3, 3, 3)
    prior_medians: str = "bisection"
    scale_rule: str = "nearest"
    table_precision: int = 24

    stride = 64  # input sizes must be multiples of this (the codec pads)

    def setup(self):
        self.g_a = analysis_transform(self.N, self.M)
        self.g_s = synthesis_transform(self.N, self.upsampling)
        self.h_a, self.h_s = self.hyper_transforms()
        self.entropy_bottleneck = factorized_prior.prior_of(self, self.N)
        self.gaussian_conditional = gaussian.GaussianConditional()

    def hyper_transforms(self) -> tuple[nn.Module, nn.Module]:
        N, M, up = self.N, self.M, self.upsampling
        h_a = nn.Sequential([_conv3x3(N), nn.relu, DownConv(N), nn.relu, DownConv(N)], name="h_a")
        h_s = nn.Sequential(
            [
                UpConv(N, method=up),
                nn.relu,
                UpConv(N, method=up),
                nn.relu,
                _conv3x3(M),
                nn.relu,
            ],
            name="h_s",
        )
        return h_a, h_s

    def hyper_analysis_input(self, y: jax.Array) -> jax.Array:
        return jnp.abs(y)

    def gaussian_params(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(scales, means) of y from ẑ; the scale hyperprior has zero means."""
        scales = self.h_s(z_hat)
        return scales, jnp.zeros_like(scales)

    def __call__(self, x: jax.Array, *, training: bool) -> dict:
        """x: float [B, H, W, 3] in [0, 1] → {"x_hat", "bits": {"y", "z"}, "aux"}."""
        y = self.g_a(x)
        z = self.h_a(self.hyper_analysis_input(y))
        z_hat, z_bits = self.entropy_bottleneck(z, training=training)
        scales, means = self.gaussian_params(z_hat)
        y_hat, y_bits = self.gaussian_conditional(y, scales, means, training=training)
        return {"x_hat": self.g_s(y_hat), "bits": {"y": y_bits, "z": z_bits}, "aux": {}}

    # The bitstream path's pieces (see `compress`/`decompress`).
    def analysis(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = self.g_a(x)
        return y, self.h_a(self.hyper_analysis_input(y))

    def hyper_synthesis(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        """ẑ → (table indexes, means) of y."""
        scales, means = self.gaussian_params(z_hat)
        return gaussian.scale_indexes(scales, rule=self.scale_rule), means

    def hyper_synthesis_steps(
        self, z_hat: jax.Array, steps: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """ẑ and y's quantization steps → (table indexes of σ/Δ, means, scales) of y (the
        region-of-interest coding; the encoder and the decoder call it with the same inputs)."""
        scales, means = self.gaussian_params(z_hat)
        return gaussian.scale_indexes(scales / steps, rule=self.scale_rule), means, scales

    def synthesis(self, y_hat: jax.Array) -> jax.Array:
        return self.g_s(y_hat)


def build_tables(model: Model, params: dict) -> dict:
    """Coding tables (a pure function of the parameters): z's factorized prior and y's
    Gaussian scale table."""
    prior = factorized_prior.prior_of(model, model.N)
    z_tables, z_medians = factorized_prior.build_tables(prior, params["entropy_bottleneck"])
    y_tables = gaussian.build_tables(precision=model.table_precision)
    return {"z": z_tables, "z_medians": z_medians, "y": y_tables}


def latent_shapes(model: Model, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the coded latents for a (padded) image size."""
    return {
        "y": (1, height // 16, width // 16, model.M),
        "z": (1, height // 64, width // 64, model.N),
    }


def zy_stream_specs(model: Model, height: int, width: int) -> list[base.StreamSpec]:
    """What the streams of a (padded) image size must be (see `base.check_streams`): [z, y].

    Shared by the models with a hyperprior and one y stream (joint, checkerboard,
    channelwise)."""
    shapes = latent_shapes(model, height, width)
    return [base.StreamSpec(name, int(np.prod(shapes[name]))) for name in ("z", "y")]


def stream_specs(model: Model, height: int, width: int) -> list[base.StreamSpec]:
    """[z, y] and, optionally, the region-of-interest map "roi" (this module's coding)."""
    positions = (height // 16) * (width // 16)
    roi = base.StreamSpec(
        "roi", ROI_HEADER.size + roi_lib.packed_bytes_bound(positions), optional=True, raw=True
    )
    return [*zy_stream_specs(model, height, width), roi]


def decode_memory(model: Model, height: int, width: int, bytes_per_symbol: int = 64) -> int:
    """Upper bound on the bytes `decompress` allocates for a (padded) image size: g_s's (see
    `factorized.synthesis_bytes_per_pixel`) and the latents' (h_s works at the latent's size).
    """
    specs = stream_specs(model, height, width)
    return base.synthesis_memory(
        height,
        width,
        synthesis_bytes_per_pixel(model.N),
        base.coding_bytes(specs, bytes_per_symbol),
    )


def encode_z(runner: base.Runner, z: np.ndarray) -> tuple[bytes, np.ndarray]:
    """One image's side information z [h, w, N] → (its stream under the factorized prior, ẑ
    [1, h, w, N] as the decoder will have it). Shared by the models with a hyperprior."""
    medians = runner.tables["z_medians"]
    z_sym = base.symbols(z[None], medians)
    stream = runner.coder("z").encode(z_sym, base.channel_indexes(z_sym.shape))
    return stream, base.dequantize(z_sym, medians)


def decode_z(runner: base.Runner, stream: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `encode_z`: ẑ of `shape` [1, h, w, N]."""
    z_sym = runner.coder("z").decode(stream, base.channel_indexes(shape))
    return base.dequantize(z_sym, runner.tables["z_medians"])


# The region-of-interest stream's header: Δ_in and Δ_out, float32; the packed mask follows.
ROI_HEADER = struct.Struct("<ff")
# Quantization steps a region-of-interest file may use (a finer step than 1/64 or a coarser one
# than 64 is useless to a decoder trained at 1, and such a file is refused as corrupted).
ROI_STEP_RANGE = (1.0 / 64, 64.0)
DEFAULT_ROI_GAIN = 4.0


def compress(
    runner: base.Runner,
    x: np.ndarray,
    roi: np.ndarray | None = None,
    roi_gain: float = DEFAULT_ROI_GAIN,
) -> list[list[bytes]]:
    """Padded images [B, H, W, 3] → each image's streams [z, y] (and "roi" with a region).

    Args:
      runner: the model bound to its variables and tables.
      x: the padded images.
      roi: a region of interest, a mask [H, W] (or one per image, [B, H, W]) padded like the
        images; nonzero pixels are the region. None: the plain file.
      roi_gain: with `roi`, the ratio Δ_out / Δ_in of the quantization steps outside and inside
        the region (> 1 spends the bits on the region); the steps are scaled together so the
        file is about the size of the plain file (see the module docstring).
    """
    y, z = runner.call("analysis", x)
    if roi is not None:
        roi = np.broadcast_to(np.asarray(roi), (len(x), *x.shape[1:3]))
        if not roi_gain >= 1.0:
            raise ValueError(f"roi_gain must be at least 1, got {roi_gain}")
    out = []
    for i, (y1, z1) in enumerate(zip(y, z)):
        z_stream, z_hat = encode_z(runner, z1)
        if roi is None:
            # The decoder's own computation (one image at a time, the same compiled function),
            # so both sides see identical indexes and means.
            indexes, means = runner.call("hyper_synthesis", z_hat)
            y_stream = runner.coder("y").encode(base.symbols(y1[None], means), indexes)
            out.append([z_stream, y_stream])
            continue
        mask = roi_lib.latent_mask(roi[i], x.shape[1] // y.shape[1])
        out.append([z_stream, *_encode_roi(runner, y1[None], z_hat, mask, roi_gain)])
    return out


def decompress(runner: base.Runner, streams: list[bytes], height: int, width: int) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped)."""
    shapes = latent_shapes(runner.model, height, width)
    z_hat = decode_z(runner, streams[0], shapes["z"])
    if len(streams) < 3:
        indexes, means = runner.call("hyper_synthesis", z_hat)
        y_sym = runner.coder("y").decode(streams[1], indexes)
        return runner.call("synthesis", base.dequantize(y_sym, means))
    data = streams[2]
    if len(data) <= ROI_HEADER.size:
        raise FormatError("corrupted region-of-interest stream")
    step_in, step_out = ROI_HEADER.unpack_from(data)
    lo, hi = ROI_STEP_RANGE
    if not (lo <= step_in <= hi and lo <= step_out <= hi):
        raise FormatError("corrupted region-of-interest stream (quantization steps)")
    mask = roi_lib.unpack_mask(data[ROI_HEADER.size :], shapes["y"][1:3])
    steps = _step_map(mask, step_in, step_out)
    indexes, means, _ = runner.call("hyper_synthesis_steps", z_hat, steps)
    y_sym = runner.coder("y").decode(streams[1], indexes)
    y_hat = np.asarray(y_sym, np.float32) * steps + np.asarray(means, np.float32)
    return runner.call("synthesis", y_hat)


def _encode_roi(runner, y, z_hat, mask, gain: float) -> list[bytes]:
    """[y stream, roi stream] of one image [1, h, w, M] with a region `mask` [h, w]: Δ_in set
    so the two streams are the size of the plain y stream (the estimate's error corrected with
    the real stream's size, twice)."""
    # Steps of 1: the plain file's indexes (σ/1 is σ exactly), means and scales, in one pass.
    indexes, means, scales = runner.call("hyper_synthesis_steps", z_hat, np.ones((1, 1, 1, 1)))
    plain = 8 * len(runner.coder("y").encode(base.symbols(y, means), indexes))
    packed = roi_lib.pack_mask(mask)
    # The plain stream's bits, less what the map and its stream length cost.
    target = plain - 8 * (ROI_HEADER.size + len(packed) + 4)
    aim = target
    for _ in range(3):
        step_in = _step_for_bits(y, means, scales, mask, gain, aim)
        steps = _step_map(mask, step_in, step_in * gain)
        indexes, means_s, _ = runner.call("hyper_synthesis_steps", z_hat, steps)
        y_stream = runner.coder("y").encode(_step_symbols(y, means_s, steps), indexes)
        aim -= 8 * len(y_stream) - target
    return [y_stream, ROI_HEADER.pack(step_in, step_in * gain) + packed]


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
