"""ELIC: uneven channel groups × checkerboard spatial context, with residual-bottleneck and
attention transforms.

He, Yang, Peng, Ma, Qin, Wang, "ELIC: Efficient Learned Image Compression with Unevenly
Grouped Space-Channel Contextual Adaptive Coding", CVPR 2022, sec. 3–4 (fig. 5 the transforms,
fig. 4 the space-channel context); CompressAI's `Elic2022Official` as the reference for sizes.

```
g_a: conv5×5/2 → N, RBB×3, conv5×5/2, RBB×3, AB, conv5×5/2, RBB×3, conv5×5/2 → M, AB
g_s: AB, deconv5×5×2 → N, RBB×3, deconv×2, AB, RBB×3, deconv×2, RBB×3, deconv×2 → 3
h_a: conv3×3 → N, ReLU, conv5×5/2, ReLU, conv5×5/2
h_s: deconv5×5×2 → N, ReLU, deconv5×5×2 → 3N/2, ReLU, conv3×3 → 2M           (ψ)
y in groups of 16, 16, 32, 64, M − 128 channels, coded in sequence; group k:
   cond_k = [ψ, cc_k(ŷ_<k)]       (cc_k: three 5×5 convs, channels ramped to 2·g_k; none at k=0)
   ŷ_k by a checkerboard codec: spatial context = 5×5 checkerboard conv → 2·g_k,
   [cond_k, ctx] ─► three 1×1 convs (ramped to 2·g_k) ─► (σ_k, μ_k)
RBB: residual bottleneck block; AB: Cheng's attention module
```
The codec tree is `HyperpriorCodec(side=EntropyBottleneckCodec, latent=ChannelGroupsCodec(
groups, ELICContext, (CheckerboardCodec × 5)))`, all parts of `nlq_jax.latent_codecs`;
training quantizes y with a straight-through rounding around each step's μ (as CompressAI's
ELIC), the rate from y + U(−½, ½).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.latent_codecs import ChannelGroupsCodec, CheckerboardCodec, CheckerboardConv
from nlq_jax.layers.blocks import AttentionBlock, ResidualBottleneckBlock
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import composed, hyperprior
from nlq_jax.models.hyperprior import _conv3x3


def get_default_sizes(quality: int) -> dict[str, int]:
    """The paper's (N, M) at every quality: 192 hidden channels, a 320-channel latent."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 192, "M": 320}


def channel_ramp(in_ch: int, out_ch: int, min_ch: int, num_layers: int) -> list[int]:
    """Output widths of `num_layers` layers going linearly from `in_ch` to `out_ch`, the hidden
    ones at least `min_ch` (CompressAI's `sequential_channel_ramp`)."""
    widths = np.linspace(in_ch, out_ch, num_layers + 1)[1:].round().astype(int).tolist()
    return [max(w, min_ch) for w in widths[:-1]] + [out_ch]


def ramp(in_ch: int, out_ch: int, min_ch: int, kernel: int, name: str) -> nn.Sequential:
    """Three convolutions (k×k, ReLU between) ramping `in_ch` to `out_ch` channels."""
    layers: list = []
    for i, w in enumerate(channel_ramp(in_ch, out_ch, min_ch, 3)):
        layers += [] if i == 0 else [nn.relu]
        layers.append(nn.Conv(w, (kernel, kernel), padding=kernel // 2))
    return nn.Sequential(layers, name=name)


class ELICContext(nn.Module):
    """Group k's conditioning: [ψ, cc_k(ŷ_<k)] (ψ alone for k = 0); no residual prediction.

    Attributes:
      channel_context: cc_k for k = 1 … G−1 (shared with the model).
    """

    channel_context: tuple

    def __call__(self, k: int, psi: jax.Array, done: tuple) -> jax.Array:
        if k == 0:
            return psi
        return jnp.concatenate([psi, self.channel_context[k - 1](jnp.concatenate(done, -1))], -1)

    def refine(self, k: int, psi: jax.Array, done: tuple, y_hat_k: jax.Array) -> jax.Array:
        return y_hat_k


class Model(hyperprior.Model):
    """ELIC; see the module docstring for the data flow.

    Attributes:
      N: channels of the transforms and of z.
      M: channels of the latent y (more than 128: the last group has M − 128).
      groups: the channel groups' sizes; empty: the paper's 16, 16, 32, 64, M − 128 (for
        M < 160, the first four scaled by M / 320, the last the rest).
    """

    N: int = 192
    M: int = 320
    groups: tuple[int, ...] = ()

    hyper_analysis_input = "identity"
    bytes_per_symbol = 128  # the groups' context maps at the latent's size

    def _groups(self) -> tuple[int, ...]:
        groups = tuple(self.groups)
        if not groups:
            first = (16, 16, 32, 64)
            if self.M < 160:
                first = tuple(max(1, round(g * self.M / 320)) for g in first)
            groups = (*first, self.M - sum(first))
        if min(groups) < 1 or sum(groups) != self.M:
            raise ValueError(f"groups {groups} must be positive and add up to M={self.M}")
        return groups

    def transforms(self) -> tuple[nn.Module, nn.Module]:
        N, M, up = self.N, self.M, self.upsampling

        def rbb():
            return [ResidualBottleneckBlock(N) for _ in range(3)]

        g_a = [DownConv(N), *rbb(), DownConv(N), *rbb(), AttentionBlock(N), DownConv(N), *rbb()]
        g_a += [DownConv(M), AttentionBlock(M)]
        g_s = [AttentionBlock(M), UpConv(N, method=up), *rbb(), UpConv(N, method=up)]
        g_s += [AttentionBlock(N), *rbb(), UpConv(N, method=up), *rbb(), UpConv(3, method=up)]
        return nn.Sequential(g_a, name="g_a"), nn.Sequential(g_s, name="g_s")

    def hyper_transforms(self) -> tuple[nn.Module, nn.Module]:
        N, M, up = self.N, self.M, self.upsampling
        h_a = nn.Sequential([_conv3x3(N), nn.relu, DownConv(N), nn.relu, DownConv(N)], name="h_a")
        h_s = nn.Sequential(
            [
                *(UpConv(N, method=up), nn.relu, UpConv(N * 3 // 2, method=up), nn.relu),
                _conv3x3(2 * M),
            ],
            name="h_s",
        )
        return h_a, h_s

    def setup(self):
        N, M, groups = self.N, self.M, self._groups()
        self.channel_context = [
            ramp(sum(groups[:k]), 2 * g, N, 5, f"channel_context_{k}")
            for k, g in enumerate(groups)
            if k > 0
        ]
        self.spatial_context = [
            CheckerboardConv(2 * g, name=f"spatial_context_{k}") for k, g in enumerate(groups)
        ]
        self.param_aggregation = [
            ramp(2 * M + 2 * g * (2 if k else 1), 2 * g, 2 * N, 1, f"param_aggregation_{k}")
            for k, g in enumerate(groups)
        ]
        super().setup()

    @nn.nowrap
    def latent_codec(self) -> nn.Module:
        groups = self._groups()
        codecs = tuple(
            CheckerboardCodec(
                self.spatial_context[k],
                self.param_aggregation[k],
                quantizer="ste",
                scale_rule=self.scale_rule,
                table_precision=self.table_precision,
            )
            for k in range(len(groups))
        )
        return ChannelGroupsCodec(groups, ELICContext(tuple(self.channel_context)), codecs)

    def synthesis_bytes_per_pixel(self) -> float:
        """As cheng2020's: 6 N + 64 (the residual blocks' extra maps; not calibrated on RSS)."""
        return 6.0 * self.N + 64


(build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes) = (
    composed.functions()
)
