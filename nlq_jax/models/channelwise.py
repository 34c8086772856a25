"""Channel-wise autoregressive entropy model: y coded in channel slices, each conditioned on
the hyperprior and on the slices decoded before it, with latent residual prediction.

Minnen, Singh, "Channel-wise autoregressive entropy models for learned image compression",
ICIP 2020, sec. 2 and fig. 2 (tensorflow-compression's `models/ms2020.py` is the authors'
reference): separate hyper-synthesis branches for the means and the scales; the latent split
into `num_slices` slices along channels; slice k's (μ_k, σ_k) from the hyper outputs and the
ŷ of (at most `max_support_slices`) earlier slices; ŷ_k = round(y_k − μ_k) + μ_k, then latent
residual prediction (LRP) adds 0.5·tanh(lrp_k(...)) to reduce the quantization error.

```
x ─► g_a ─► y ─► split into S slices y_k ──────────┐        ŷ = concat(ŷ_k) ─► g_s ─► x̂
            │                                      ▼ for k = 0 … S−1, in sequence
            │   [ψ_μ, ŷ_<k] ─► cc_mean_k  ─► μ_k ─┐
            │   [ψ_σ, ŷ_<k] ─► cc_scale_k ─► σ_k ─┴► Q(y_k around μ_k) ─► ŷ_k  (N(μ_k, σ_k²))
            │   ŷ_k += 0.5·tanh(lrp_k([ψ_μ, ŷ_<k, ŷ_k]))    (latent residual prediction)
            └► h_a ─► z ─► Q(medians) ─► ẑ ─► h_s ─► (ψ_μ, ψ_σ)    (two branches)
                           ẑ coded with a deep factorized prior
ŷ_<k: the first `max_support_slices` finished slices before k (all of them if −1).
h_a: conv3×3 → M, ReLU, conv5×5/2 → (N+M)/2, ReLU, conv5×5/2 → N
h_s (each branch): deconv5×5×2 → N, ReLU, deconv5×5×2 → (N+M)/2, ReLU, conv3×3 → M, ReLU
cc_mean_k, cc_scale_k, lrp_k: conv5×5 → 0.7M, ReLU, conv5×5 → 0.4M, ReLU, conv3×3 → M/S
```
At N = 192, M = 320, S = 10 these are the reference's widths (320, 256, 192; 224, 128, 32).

Training (`training=True`, as the reference): the rate of slice k is that of y_k + U(−½, ½)
under N(μ_k, σ_k²); the ŷ_k fed to later slices and to g_s is rounded around μ_k with a
straight-through gradient. (ẑ is noisy, as in this codebase's other hyperpriors; the reference
rounds it with a straight-through gradient.) Eval (`training=False`) is exactly the codec's
computation, slice by slice.

The codec tree: a `HyperpriorCodec` whose y is a `ChannelGroupsCodec` of `num_slices` equal
groups, each a mean-scale `GaussianConditionalCodec` given (σ_k, μ_k) from `SliceContext`.
Streams: [z, y]; y is one queue stream of `num_slices` chunks.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.latent_codecs import (
    ChannelGroupsCodec,
    EntropyBottleneckCodec,
    GaussianConditionalCodec,
    HyperpriorCodec,
)
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import composed
from nlq_jax.models.factorized import (
    analysis_transform,
    synthesis_bytes_per_pixel,
    synthesis_transform,
)
from nlq_jax.models.hyperprior import _conv3x3

__all__ = [
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
    """The paper's (N, M) at every quality: 192 hidden channels, a 320-channel latent."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 192, "M": 320}


def _conv(features: int, k: int) -> nn.Conv:
    return nn.Conv(features, (k, k), padding=((k // 2, k // 2), (k // 2, k // 2)))


def slice_transform(M: int, slice_depth: int, name: str) -> nn.Sequential:
    """cc_mean_k / cc_scale_k / lrp_k: conv5×5 → 0.7M, ReLU, conv5×5 → 0.4M, ReLU, conv3×3."""
    return nn.Sequential(
        [_conv(M * 7 // 10, 5), nn.relu, _conv(M * 2 // 5, 5), nn.relu, _conv(slice_depth, 3)],
        name=name,
    )


class HyperSynthesis(nn.Module):
    """h_s: two branches of the same shape, ẑ → (ψ_μ, ψ_σ)."""

    N: int
    M: int
    upsampling: str = "phase"

    def setup(self):
        def branch(name):
            mid = (self.N + self.M) // 2
            up = self.upsampling
            return nn.Sequential(
                [
                    UpConv(self.N, method=up),
                    nn.relu,
                    UpConv(mid, method=up),
                    nn.relu,
                    _conv3x3(self.M),
                    nn.relu,
                ],
                name=name,
            )

        self.means = branch("means")
        self.scales = branch("scales")

    def __call__(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self.means(z_hat), self.scales(z_hat)


class SliceContext(nn.Module):
    """Slice k's (σ_k, μ_k) from (ψ_μ, ψ_σ) and the finished earlier slices, and its latent
    residual prediction (the channel-groups context of `ChannelGroupsCodec`).

    Attributes:
      cc_mean, cc_scale, lrp: one transform per slice (shared with the model).
      max_support_slices: slices each slice conditions on (the first ones; −1: all before it).
    """

    cc_mean: tuple
    cc_scale: tuple
    lrp: tuple
    max_support_slices: int = 5

    def _support(self, done: tuple) -> list:
        return list(done) if self.max_support_slices < 0 else list(done[: self.max_support_slices])

    def __call__(self, k: int, psi: tuple, done: tuple) -> tuple[jax.Array, jax.Array]:
        """(scales, means) of slice k = len(done)."""
        psi_means, psi_scales = psi
        support = self._support(done)
        means = self.cc_mean[k](jnp.concatenate([psi_means, *support], axis=-1))
        scales = self.cc_scale[k](jnp.concatenate([psi_scales, *support], axis=-1))
        return scales, means

    def refine(self, k: int, psi: tuple, done: tuple, y_hat_k: jax.Array) -> jax.Array:
        """Slice k's quantized values plus its latent residual prediction."""
        support = self._support(done)
        lrp = self.lrp[k](jnp.concatenate([psi[0], *support, y_hat_k], axis=-1))
        return y_hat_k + 0.5 * jnp.tanh(lrp)


class Model(composed.LatentCodecModel):
    """Channel-wise autoregressive model; see the module docstring for the data flow.

    Attributes:
      N: channels of the hidden layers and of z.
      M: channels of the latent y.
      num_slices: S, the number of channel slices coded in sequence (must divide M).
      max_support_slices: slices each slice conditions on (the first ones; −1: all before it).
      upsampling: `UpConv` method of g_s and h_s.
      prior_filters: hidden widths of the deep factorized prior ((3, 3, 3, 3) for models
        imported from CompressAI).
      prior_medians: "bisection" (the prior's medians) or "stored" (CompressAI's learned
        medians, for imported models) as its quantization offsets.
      table_precision: bits of the Gaussian tables' probabilities (see `hyperprior.Model`).
    """

    N: int = 192
    M: int = 320
    num_slices: int = 10
    max_support_slices: int = 5
    upsampling: str = "phase"
    prior_filters: tuple[int, ...] = (3, 3, 3)
    prior_medians: str = "bisection"
    table_precision: int = 24

    stride = 64  # input sizes must be multiples of this (the codec pads)

    def setup(self):
        if self.num_slices < 1 or self.M % self.num_slices:
            raise ValueError(f"num_slices={self.num_slices} must divide M={self.M}")
        N, M, S = self.N, self.M, self.num_slices
        self.g_a = analysis_transform(N, M)
        self.g_s = synthesis_transform(N, self.upsampling)
        self.h_a = nn.Sequential(
            [_conv3x3(M), nn.relu, DownConv((N + M) // 2), nn.relu, DownConv(N)], name="h_a"
        )
        self.h_s = HyperSynthesis(N, M, self.upsampling)
        self.entropy_bottleneck = factorized_prior.prior_of(self, N)
        d = M // S
        self.cc_mean = [slice_transform(M, d, f"cc_mean_{k}") for k in range(S)]
        self.cc_scale = [slice_transform(M, d, f"cc_scale_{k}") for k in range(S)]
        self.lrp = [slice_transform(M, d, f"lrp_{k}") for k in range(S)]
        context = SliceContext(
            tuple(self.cc_mean), tuple(self.cc_scale), tuple(self.lrp), self.max_support_slices
        )
        slices = tuple(
            GaussianConditionalCodec(
                param_form="pair", quantizer="ste", table_precision=self.table_precision
            )
            for _ in range(S)
        )
        self.entropy = HyperpriorCodec(
            h_a=self.h_a,
            h_s=self.h_s,
            side=EntropyBottleneckCodec(self.entropy_bottleneck, key="z"),
            latent=ChannelGroupsCodec((d,) * S, context, slices),
        )

    # The slice transforms (0.7 M channels at the latent's size) and every slice's support.
    bytes_per_symbol = 128

    def synthesis_bytes_per_pixel(self) -> float:
        return synthesis_bytes_per_pixel(self.N)


build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes = (
    composed.functions()
)
