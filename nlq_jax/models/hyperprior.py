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
Streams: [z, y]: a `HyperpriorCodec` whose side information is coded by a deep factorized
prior and whose y by a `GaussianConditionalCodec` (`nlq_jax.latent_codecs`).

Region of interest (`compress(..., roi=MASK, roi_gain=g)`, also for mbt2018-mean): y is
quantized with a finer step where the region is and a coarser one elsewhere, the file the size
of the plain file; an optional third stream "roi" carries the steps and the mask
(`nlq_jax.latent_codecs.gaussian`).
"""

from __future__ import annotations

import flax.linen as nn

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.latent_codecs import EntropyBottleneckCodec, GaussianConditionalCodec, HyperpriorCodec
from nlq_jax.latent_codecs.gaussian import DEFAULT_ROI_GAIN, ROI_HEADER, ROI_STEP_RANGE
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.layers.conv_ops import conv_general_dilated
from nlq_jax.models import composed
from nlq_jax.models.factorized import (
    analysis_transform,
    synthesis_bytes_per_pixel,
    synthesis_transform,
)

__all__ = [
    "DEFAULT_ROI_GAIN",
    "ROI_HEADER",
    "ROI_STEP_RANGE",
    "Model",
    "build_tables",
    "compress",
    "decode_memory",
    "decompress",
    "get_default_sizes",
    "latent_shapes",
    "stream_specs",
]


def get_default_sizes(quality: int) -> dict[str, int]:
    """CompressAI's (N, M) for bmshj2018-hyperprior at quality 1–8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 128, "M": 192} if quality <= 5 else {"N": 192, "M": 320}


def _conv3x3(features: int) -> nn.Conv:
    return nn.Conv(
        features, (3, 3), padding=((1, 1), (1, 1)), conv_general_dilated=conv_general_dilated
    )


class Model(composed.LatentCodecModel):
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
        self.g_a, self.g_s = self.transforms()
        self.h_a, self.h_s = self.hyper_transforms()
        self.entropy_bottleneck = factorized_prior.prior_of(self, self.N)
        self.entropy = HyperpriorCodec(
            h_a=self.h_a,
            h_s=self.h_s,
            side=EntropyBottleneckCodec(self.entropy_bottleneck, key="z"),
            latent=self.latent_codec(),
            analysis_input=self.hyper_analysis_input,
        )

    # What the subclasses change.
    hyper_analysis_input = "abs"  # h_a sees |y|

    def transforms(self) -> tuple[nn.Module, nn.Module]:
        """(g_a, g_s): bmshj2018's GDN transforms."""
        return analysis_transform(self.N, self.M), synthesis_transform(self.N, self.upsampling)

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

    @nn.nowrap
    def latent_codec(self) -> nn.Module:
        """The codec of y given ψ = h_s(ẑ): σ = ψ, μ = 0."""
        return GaussianConditionalCodec(
            param_form="scale",
            scale_rule=self.scale_rule,
            table_precision=self.table_precision,
            roi=True,
        )

    def synthesis_bytes_per_pixel(self) -> float:
        return synthesis_bytes_per_pixel(self.N)


build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes = (
    composed.functions()
)
