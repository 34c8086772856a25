"""cheng2020-anchor and cheng2020-attn: residual transforms with sub-pixel up-sampling (and
attention modules) around mbt2018's joint autoregressive and hyperprior entropy model.

Cheng, Sun, Takeuchi, Katto, "Learned Image Compression with Discretized Gaussian Mixture
Likelihoods and Attention Modules", CVPR 2020, sec. 3 and fig. 2; CompressAI's
`cheng2020-anchor` / `cheng2020-attn` (a single Gaussian in place of the paper's mixture, as
CompressAI). CompressAI's latent has M = N channels (`get_default_sizes`); another M widens
the last layer of g_a and the first of g_s (a residual block with a 1×1 skip).

```
g_a: RBS(3→N, /2), RB, RBS(/2), RB, RBS(/2), RB, conv3×3/2          [attn: AB after the 2nd
g_s: RB, RBU(×2), RB, RBU(×2), RB, RBU(×2), RB, subpel3×3(×2) → 3    RBS and at the end; at the
h_a: conv3×3, LReLU, conv3×3, LReLU, conv3×3/2, LReLU, conv3×3, LReLU, conv3×3/2    start and
h_s: conv3×3, LReLU, subpel(×2), LReLU, conv3×3 → 3N/2, LReLU, subpel(×2), LReLU,   after the
     conv3×3 → 2M                                                                  2nd RBU]
RB: residual block; RBS/RBU: its strided / sub-pixel forms (GDN / IGDN); AB: attention module
```
The entropy model is mbt2018's (`nlq_jax.models.joint`): y coded wavefront by wavefront with a
masked 5×5 context (`AutoregressiveCodec`), z with a deep factorized prior. Only the
transforms are this module's.
"""

from __future__ import annotations

import functools

import flax.linen as nn

from nlq_jax.layers.blocks import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
)
from nlq_jax.layers.conv import UpConv
from nlq_jax.layers.conv_ops import conv_general_dilated
from nlq_jax.models import composed, joint


def get_default_sizes(quality: int) -> dict[str, int]:
    """CompressAI's N (= M) for cheng2020 at quality 1–6 (7–8, beyond its zoo, keep N = 192)."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    n = 128 if quality <= 3 else 192
    return {"N": n, "M": n}


def _conv3x3(features: int, stride: int = 1) -> nn.Conv:
    return nn.Conv(
        features,
        (3, 3),
        strides=(stride, stride),
        padding=1,
        conv_general_dilated=conv_general_dilated,
    )


_subpel = functools.partial(UpConv, method="subpixel")


class Model(joint.Model):
    """cheng2020-anchor (`attention=False`) or cheng2020-attn (`attention=True`).

    Attributes:
      N: channels of the transforms (and of the latent in CompressAI's sizes).
      M: channels of the latent y.
      attention: the attention modules of cheng2020-attn.
    """

    N: int = 192
    M: int = 192
    attention: bool = False

    def transforms(self) -> tuple[nn.Module, nn.Module]:
        N, M, attn = self.N, self.M, self.attention
        g_a = [ResidualBlockWithStride(N), ResidualBlock(N), ResidualBlockWithStride(N)]
        g_a += [AttentionBlock(N)] if attn else []
        g_a += [ResidualBlock(N), ResidualBlockWithStride(N), ResidualBlock(N), _conv3x3(M, 2)]
        g_a += [AttentionBlock(M)] if attn else []
        g_s = [AttentionBlock(M)] if attn else []
        g_s += [ResidualBlock(N), ResidualBlockUpsample(N), ResidualBlock(N)]
        g_s += [ResidualBlockUpsample(N)]
        g_s += [AttentionBlock(N)] if attn else []
        g_s += [ResidualBlock(N), ResidualBlockUpsample(N), ResidualBlock(N), _subpel(3)]
        return nn.Sequential(g_a, name="g_a"), nn.Sequential(g_s, name="g_s")

    def hyper_transforms(self) -> tuple[nn.Module, nn.Module]:
        N, M, act = self.N, self.M, nn.leaky_relu
        h_a = nn.Sequential(
            [
                *(_conv3x3(N), act, _conv3x3(N), act, _conv3x3(N, 2), act),
                *(_conv3x3(N), act, _conv3x3(N, 2)),
            ],
            name="h_a",
        )
        h_s = nn.Sequential(
            [
                *(_conv3x3(N), act, _subpel(N), act, _conv3x3(N * 3 // 2), act),
                *(_subpel(N * 3 // 2), act, _conv3x3(2 * M)),
            ],
            name="h_s",
        )
        return h_a, h_s

    def synthesis_bytes_per_pixel(self) -> float:
        """g_s's N-channel maps at half resolution and the residual blocks' copies: 6 N + 64,
        the GDN transforms' bound (`factorized.synthesis_bytes_per_pixel`, 4 N + 64) widened
        for the residual blocks' extra maps (not calibrated on RSS)."""
        return 6.0 * self.N + 64


(build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes) = (
    composed.functions()
)
