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
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.entropy import gaussian
from nlq_jax.layers.conv import DownConv, UpConv, conv_general_dilated
from nlq_jax.models import base
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


def stream_specs(model: Model, height: int, width: int) -> list[base.StreamSpec]:
    """What the streams of a (padded) image size must be (see `base.check_streams`): [z, y].

    Shared by the models with a hyperprior and one y stream (mean_scale, joint, checkerboard,
    channelwise)."""
    shapes = latent_shapes(model, height, width)
    return [base.StreamSpec(name, int(np.prod(shapes[name]))) for name in ("z", "y")]


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


def compress(runner: base.Runner, x: np.ndarray) -> list[list[bytes]]:
    """Padded images [B, H, W, 3] → each image's streams [z, y]."""
    y, z = runner.call("analysis", x)
    out = []
    for y1, z1 in zip(y, z):
        z_stream, z_hat = encode_z(runner, z1)
        # The decoder's own computation (one image at a time, the same compiled function), so
        # both sides see identical indexes and means.
        indexes, means = runner.call("hyper_synthesis", z_hat)
        y_stream = runner.coder("y").encode(base.symbols(y1[None], means), indexes)
        out.append([z_stream, y_stream])
    return out


def decompress(runner: base.Runner, streams: list[bytes], height: int, width: int) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped)."""
    shapes = latent_shapes(runner.model, height, width)
    z_hat = decode_z(runner, streams[0], shapes["z"])
    indexes, means = runner.call("hyper_synthesis", z_hat)
    y_sym = runner.coder("y").decode(streams[1], indexes)
    return runner.call("synthesis", base.dequantize(y_sym, means))
