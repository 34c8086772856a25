"""bmshj2018-factorized: GDN transforms with a deep factorized prior on the latent.

Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior",
ICLR 2018 — the "factorized prior" baseline (sec. 4, fig. 4 left; the transforms of Ballé,
Laparra, Simoncelli, "End-to-end optimized image compression", ICLR 2017, with N filters).

```
x ─► g_a ─► y ─► Q(around medians) ─► ŷ ─► g_s ─► x̂
     (conv5×5/2, GDN) ×3, conv5×5/2 → M      (deconv5×5/2, IGDN) ×3, deconv5×5/2 → 3
                   ŷ coded with a per-channel deep factorized prior (one table per channel)
```
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.layers.gdn import GDN
from nlq_jax.models import base


def get_default_sizes(quality: int) -> dict[str, int]:
    """CompressAI's (N, M) for bmshj2018-factorized at quality 1–8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 128, "M": 192} if quality <= 5 else {"N": 192, "M": 320}


def analysis_transform(N: int, M: int) -> nn.Sequential:
    """g_a: three (conv 5×5 /2, GDN) stages and a final conv 5×5 /2 to M channels."""
    return nn.Sequential(
        [DownConv(N), GDN(), DownConv(N), GDN(), DownConv(N), GDN(), DownConv(M)], name="g_a"
    )


def synthesis_transform(N: int, upsampling: str) -> nn.Sequential:
    """g_s: three (deconv 5×5 ×2, IGDN) stages and a final deconv 5×5 ×2 to RGB."""
    return nn.Sequential(
        [
            UpConv(N, method=upsampling),
            GDN(inverse=True),
            UpConv(N, method=upsampling),
            GDN(inverse=True),
            UpConv(N, method=upsampling),
            GDN(inverse=True),
            UpConv(3, method=upsampling),
        ],
        name="g_s",
    )


class Model(nn.Module):
    """Factorized-prior model; see the module docstring for the data flow.

    Attributes:
      N: channels of the hidden layers.
      M: channels of the latent y.
      upsampling: `UpConv` method of g_s ("phase" computes the paper's transposed convs fast).
      prior_filters: hidden widths of the deep factorized prior ((3, 3, 3, 3) for models
        imported from CompressAI).
      prior_medians: "bisection" (the prior's medians) or "stored" (CompressAI's learned
        medians, for imported models) as its quantization offsets.
    """

    N: int = 128
    M: int = 192
    upsampling: str = "phase"
    prior_filters: tuple[int, ...] = (3, 3, 3)
    prior_medians: str = "bisection"

    stride = 16  # input sizes must be multiples of this (the codec pads)

    def setup(self):
        self.g_a = analysis_transform(self.N, self.M)
        self.g_s = synthesis_transform(self.N, self.upsampling)
        self.entropy_bottleneck = factorized_prior.prior_of(self, self.M)

    def __call__(self, x: jax.Array, *, training: bool) -> dict:
        """x: float [B, H, W, 3] in [0, 1] → {"x_hat", "bits": {"y"}, "aux"}."""
        y = self.g_a(x)
        y_hat, y_bits = self.entropy_bottleneck(y, training=training)
        return {"x_hat": self.g_s(y_hat), "bits": {"y": y_bits}, "aux": {}}

    def analysis(self, x: jax.Array) -> jax.Array:
        return self.g_a(x)

    def synthesis(self, y_hat: jax.Array) -> jax.Array:
        return self.g_s(y_hat)


def build_tables(model: Model, params: dict) -> dict:
    """Coding tables of the factorized model (a pure function of its parameters)."""
    prior = factorized_prior.prior_of(model, model.M)
    tables, medians = factorized_prior.build_tables(prior, params["entropy_bottleneck"])
    return {"y": tables, "y_medians": medians}


def latent_shapes(model: Model, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the coded latents for a (padded) image size."""
    return {"y": (1, height // 16, width // 16, model.M)}


def stream_specs(model: Model, height: int, width: int) -> list[base.StreamSpec]:
    """What the streams of a (padded) image size must be (see `base.check_streams`): [y]."""
    return [base.StreamSpec("y", int(np.prod(latent_shapes(model, height, width)["y"])))]


def synthesis_bytes_per_pixel(N: int) -> float:
    """Peak bytes per output pixel of g_s (`synthesis_transform`), an upper bound.

    g_s's largest feature maps are its N-channel float32 maps at half resolution, N bytes per
    output pixel each. A decode's measured peak RSS grows by 3.4 N + 43 bytes per pixel
    (`benchmarks/fuzz_decoder.py --calibrate`: factorized, hyperprior, mean_scale, joint,
    checkerboard, channelwise at N = 32 and 128, 256² to 1024²); 4 N + 64 keeps a margin of
    25–35 %.
    """
    return 4.0 * N + 64


def decode_memory(model: Model, height: int, width: int) -> int:
    """Upper bound on the bytes `decompress` allocates for a (padded) image size."""
    specs = stream_specs(model, height, width)
    return base.synthesis_memory(
        height, width, synthesis_bytes_per_pixel(model.N), base.coding_bytes(specs)
    )


def compress(runner: base.Runner, x: np.ndarray) -> list[list[bytes]]:
    """Padded images [B, H, W, 3] → each image's streams ([y])."""
    t = runner.tables
    y = runner.call("analysis", x)
    out = []
    for y1 in y:
        sym = base.symbols(y1[None], t["y_medians"])
        out.append([runner.coder("y").encode(sym, base.channel_indexes(sym.shape))])
    return out


def decompress(runner: base.Runner, streams: list[bytes], height: int, width: int) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped)."""
    t = runner.tables
    shape = latent_shapes(runner.model, height, width)["y"]
    sym = runner.coder("y").decode(streams[0], base.channel_indexes(shape))
    return runner.call("synthesis", base.dequantize(sym, t["y_medians"]))
