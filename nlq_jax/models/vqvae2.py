"""VQ-VAE-2: a two-level hierarchy of discrete latents, each entropy coded with its own
categorical prior.

Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2",
NeurIPS 2019, sec. 3.1 (fig. 2a, algorithm 1): the bottom latent is quantized from the encoder
features *and* the decoded top latent, so it encodes what the top level misses; the decoder
reads both. Here the bottom latent has stride 8 (or 4) and the top stride 16, so the top codes
global structure cheaply and the bottom codes detail (the paper: 4 and 8 on 256² images).

```
x ─► g_a ─► h_b ─► g_a_top ─► Q_top ─► e_t ─────────────► top indices ─► prior_top  (stride 16)
             │                          │
             │            g_s_top(e_t) ◄┤ (up to the bottom's stride)
             ▼                          │
     concat(h_b, g_s_top(e_t)) ─► conv1×1 → D ─► Q_bottom ─► e_b ─► bottom indices ─► prior_bottom
                                        │                     │
x̂ ◄─ g_s ◄─ concat(e_b, UpConv(e_t)) ◄─┴─────────────────────┘

g_a: (DownConv5×5/2 → N, ResidualBlock) × log2(bottom_stride)
g_a_top: (DownConv5×5/2, ResidualBlock) to stride 16, [SelfAttention, AttentionBlock], 1×1 → D
g_s_top: conv3×3 → N, [attention], (ResidualBlock, UpConv ×2) back to the bottom's stride
g_s: conv3×3 → N, (ResidualBlock, UpConv ×2) × log2(bottom_stride), the last to RGB
```
Each index array has a categorical prior (bits in the loss and the tables of the range coder).
Streams: [top, bottom]; the decoder decodes both index arrays with their priors' tables and runs
g_s (g_s_top is only needed by the encoder, to quantize the bottom level). With an "rvq"
quantizer both levels code all their stages (prefix files are `nlq`'s feature).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.core import FrozenDict

from nlq_jax import quantizers
from nlq_jax.latent_codecs.categorical import CategoricalIndicesCodec
from nlq_jax.latent_codecs.two_level import TwoLevelCodec
from nlq_jax.layers.blocks import AttentionBlock, ResidualBlock, SelfAttention
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import composed
from nlq_jax.models.nlq import (  # noqa: F401 (fit_priors: this model's, too)
    build_quantizer,
    code_counts,
    fit_priors,
    index_prior,
    synthesis_bytes_per_pixel,
)


def get_default_sizes(quality: int) -> dict:
    """Model sizes for quality 1–8: larger codebooks for higher qualities."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    quantizer = {"name": "vq", "codebook_size": 2 ** (7 + quality)}
    return {"N": 128 if quality <= 4 else 192, "quantizer": quantizer}


# The small model the tests build (tests/conftest.py).
SMALL_SIZES = {"N": 16, "latent_dim": 8, "quantizer": {"name": "vq", "codebook_size": 32}}


class Model(composed.LatentCodecModel):
    """Two-level VQ-VAE-2; see the module docstring for the data flow.

    Attributes:
      N: channels of the transforms.
      latent_dim: D, channels of each quantized latent.
      bottom_stride: 8 or 4, the bottom latent's down-sampling (the top's is 16).
      attention: self-attention and Cheng's attention module at the top latent's resolution.
      upsampling: `UpConv` method of g_s, g_s_top and the top latent's up-sampling.
      quantizer: the quantizer's sub-dict, as `nlq.Model`'s (one quantizer of these options
        per level), e.g. `dict(name="vq", codebook_size=512)`.
      conditional_prior: each level's index group g is conditioned on its group g − 1.
    """

    N: int = 128
    latent_dim: int = 64
    bottom_stride: int = 8
    attention: bool = True
    upsampling: str = "phase"
    quantizer: Mapping[str, Any] = FrozenDict(name="vq", codebook_size=512)
    conditional_prior: bool = False

    stride = 16  # input sizes must be multiples of this (the codec pads)

    def __post_init__(self):
        # Hashable (Flax hashes modules), whatever mapping a config or model.json gave.
        object.__setattr__(self, "quantizer", quantizers.freeze(self.quantizer))
        super().__post_init__()

    def setup(self):
        if self.bottom_stride not in (4, 8):
            raise ValueError(f"bottom_stride must be 4 or 8, got {self.bottom_stride}")
        N, D, up = self.N, self.latent_dim, self.upsampling
        bottom_downs = int(math.log2(self.bottom_stride))
        top_downs = 4 - bottom_downs
        layers: list = []
        for _ in range(bottom_downs):
            layers += [DownConv(N), ResidualBlock(N)]
        self.g_a = nn.Sequential(layers, name="g_a")
        layers = []
        for _ in range(top_downs):
            layers += [DownConv(N), ResidualBlock(N)]
        if self.attention:
            layers += [SelfAttention(N), AttentionBlock(N)]
        self.g_a_top = nn.Sequential([*layers, nn.Conv(D, (1, 1))], name="g_a_top")
        layers = [nn.Conv(N, (3, 3), padding=1)]
        if self.attention:
            layers += [SelfAttention(N), AttentionBlock(N)]
        for _ in range(top_downs):
            layers += [ResidualBlock(N), UpConv(N, method=up)]
        self.g_s_top = nn.Sequential(layers, name="g_s_top")
        self.bottom_projection = nn.Conv(D, (1, 1))
        self.upsample_top = nn.Sequential(
            [UpConv(D, method=up) for _ in range(top_downs)], name="upsample_top"
        )
        layers = [nn.Conv(N, (3, 3), padding=1)]
        for i in range(bottom_downs):
            layers += [ResidualBlock(N), UpConv(N if i < bottom_downs - 1 else 3, method=up)]
        self.g_s = nn.Sequential(layers, name="g_s")
        self.quantizer_top = build_quantizer(self)
        self.quantizer_bottom = build_quantizer(self)
        self.prior_top = index_prior(self, name="prior_top")
        self.prior_bottom = index_prior(self, name="prior_bottom")
        # Both levels' indices coded as they are (an RVQ's stages in one stream each: prefix
        # files are `nlq`'s feature).
        self.entropy = TwoLevelCodec(
            top_analysis=self.g_a_top,
            top_synthesis=self.g_s_top,
            merge=self.bottom_projection,
            top=CategoricalIndicesCodec(
                self.quantizer_top, self.prior_top, key="top", progressive=False
            ),
            bottom=CategoricalIndicesCodec(
                self.quantizer_bottom, self.prior_bottom, key="bottom", progressive=False
            ),
        )

    def synthesis(self, y_hat: tuple[jax.Array, jax.Array]) -> jax.Array:
        """(ẑ_t, ẑ_b) → x̂: g_s of [ẑ_b, the top up-sampled]."""
        z_q_top, z_q_bottom = y_hat
        return self.g_s(jnp.concatenate([z_q_bottom, self.upsample_top(z_q_top)], axis=-1))

    # Conveniences on the indices (the codecs' own pieces, from an image).
    def indices(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """x → (top indices [B, H/16, W/16, G], bottom indices [B, H/s, W/s, G]) (eval)."""
        h_b = self.g_a(x)
        top = self.entropy.top.indices(self.g_a_top(h_b))
        z_b = self.entropy.analysis_bottom(h_b, self.entropy.top.dequantize(top))
        return top, self.entropy.bottom.indices(z_b)

    def index_counts(self, x: jax.Array) -> dict[str, list[jax.Array]]:
        """Code counts of both levels' eval-mode indices (see `nlq.fit_priors`)."""
        top, bottom = self.indices(x)
        return {
            "prior_top": code_counts(self.quantizer_top.num_codes, self.conditional_prior, top),
            "prior_bottom": code_counts(
                self.quantizer_bottom.num_codes, self.conditional_prior, bottom
            ),
        }

    def synthesis_bytes_per_pixel(self) -> float:
        """g_s: residual blocks and up-sampling like `nlq`'s, no attention (g_s_top only runs
        in the encoder)."""
        return synthesis_bytes_per_pixel(self.N)


(build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes) = (
    composed.functions()
)
