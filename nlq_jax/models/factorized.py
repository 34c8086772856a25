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

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.latent_codecs import EntropyBottleneckCodec
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.layers.gdn import GDN
from nlq_jax.models import composed


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


class Model(composed.LatentCodecModel):
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
        self.entropy = EntropyBottleneckCodec(self.entropy_bottleneck, key="y")

    def synthesis_bytes_per_pixel(self) -> float:
        return synthesis_bytes_per_pixel(self.N)


def synthesis_bytes_per_pixel(N: int) -> float:
    """Peak bytes per output pixel of g_s (`synthesis_transform`), an upper bound.

    g_s's largest feature maps are its N-channel float32 maps at half resolution, N bytes per
    output pixel each. A decode's measured peak RSS grows by 3.4 N + 43 bytes per pixel
    (`benchmarks/fuzz_decoder.py --calibrate`: factorized, hyperprior, mean_scale, joint,
    checkerboard, channelwise at N = 32 and 128, 256² to 1024²); 4 N + 64 keeps a margin of
    25–35 %.
    """
    return 4.0 * N + 64


build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes = (
    composed.functions()
)
