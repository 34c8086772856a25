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

Streams: [z, y]; y is one queue stream of `num_slices` chunks, slice k's symbols round(y_k − μ_k)
coded with the table indexes of σ_k from `slice_step` (one jitted step per slice).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy import coder, gaussian
from nlq_jax.entropy import factorized as factorized_prior
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import base, hyperprior
from nlq_jax.models.factorized import analysis_transform, synthesis_transform
from nlq_jax.models.hyperprior import _conv3x3, build_tables, latent_shapes
from nlq_jax.models.hyperprior import zy_stream_specs as stream_specs
from nlq_jax.quantizers.scalar import quantize

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


class Model(nn.Module):
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

    def _support(self, y_hat_slices: tuple[jax.Array, ...]) -> list[jax.Array]:
        if self.max_support_slices < 0:
            return list(y_hat_slices)
        return list(y_hat_slices[: self.max_support_slices])

    def slice_params(
        self, psi_means: jax.Array, psi_scales: jax.Array, y_hat_slices: tuple[jax.Array, ...]
    ) -> tuple[jax.Array, jax.Array]:
        """(scales, means) of slice k = len(y_hat_slices), given the finished earlier slices."""
        k = len(y_hat_slices)
        support = self._support(y_hat_slices)
        means = self.cc_mean[k](jnp.concatenate([psi_means, *support], axis=-1))
        scales = self.cc_scale[k](jnp.concatenate([psi_scales, *support], axis=-1))
        return scales, means

    def slice_lrp(
        self, psi_means: jax.Array, y_hat_slices: tuple[jax.Array, ...], y_hat_k: jax.Array
    ) -> jax.Array:
        """Slice k's quantized values plus its latent residual prediction."""
        k = len(y_hat_slices)
        support = self._support(y_hat_slices)
        lrp = self.lrp[k](jnp.concatenate([psi_means, *support, y_hat_k], axis=-1))
        return y_hat_k + 0.5 * jnp.tanh(lrp)

    def __call__(self, x: jax.Array, *, training: bool) -> dict:
        """x: float [B, H, W, 3] in [0, 1] → {"x_hat", "bits": {"y", "z"}, "aux"}."""
        y = self.g_a(x)
        z = self.h_a(y)
        z_hat, z_bits = self.entropy_bottleneck(z, training=training)
        psi_means, psi_scales = self.h_s(z_hat)
        if training:
            noise = jax.random.uniform(self.make_rng("noise"), y.shape, y.dtype, -0.5, 0.5)
        d = self.M // self.num_slices
        y_hat_slices: tuple[jax.Array, ...] = ()
        y_bits = jnp.zeros(y.shape[:1], jnp.float32)
        for k in range(self.num_slices):
            y_k = y[..., k * d : (k + 1) * d]
            scales, means = self.slice_params(psi_means, psi_scales, y_hat_slices)
            if training:
                y_tilde = y_k + noise[..., k * d : (k + 1) * d]
                y_bits += gaussian.gaussian_bits(y_tilde - means, scales)
                y_hat_k = quantize(y_k, "ste", offset=means)
            else:
                y_hat_k = quantize(y_k, "round", offset=means)
                y_bits += gaussian.gaussian_bits(y_hat_k - means, scales)
            y_hat_slices += (self.slice_lrp(psi_means, y_hat_slices, y_hat_k),)
        x_hat = self.g_s(jnp.concatenate(y_hat_slices, axis=-1))
        return {"x_hat": x_hat, "bits": {"y": y_bits, "z": z_bits}, "aux": {}}

    # The bitstream path's pieces (see `compress`/`decompress`).
    def analysis(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        y = self.g_a(x)
        return y, self.h_a(y)

    def hyper_synthesis(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        """ẑ → (ψ_μ, ψ_σ)."""
        return self.h_s(z_hat)

    def slice_step(
        self,
        psi_means: jax.Array,
        psi_scales: jax.Array,
        y_hat_slices: tuple[jax.Array, ...],
        y_hat_last: jax.Array | None,
    ) -> tuple[jax.Array | None, jax.Array, jax.Array]:
        """One decoding step: finishes the previous slice and predicts the next one.

        Args:
          psi_means, psi_scales: the hyper-synthesis outputs.
          y_hat_slices: the finished slices 0 … k−2 (with LRP).
          y_hat_last: slice k−1's dequantized symbols (before LRP), None for k = 0.

        Returns:
          (slice k−1 finished or None, slice k's table indexes, slice k's means).
        """
        finished = None
        if y_hat_last is not None:
            finished = self.slice_lrp(psi_means, y_hat_slices, y_hat_last)
            y_hat_slices = (*y_hat_slices, finished)
        scales, means = self.slice_params(psi_means, psi_scales, y_hat_slices)
        return finished, gaussian.scale_indexes(scales), means

    def slice_synthesis(
        self, psi_means: jax.Array, y_hat_slices: tuple[jax.Array, ...], y_hat_last: jax.Array
    ) -> jax.Array:
        """Finishes the last slice and runs g_s on all of them."""
        last = self.slice_lrp(psi_means, y_hat_slices, y_hat_last)
        return self.g_s(jnp.concatenate([*y_hat_slices, last], axis=-1))


def decode_memory(model: Model, height: int, width: int) -> int:
    """Upper bound on the bytes `decompress` allocates for a (padded) image size: the
    hyperprior's, with more per latent symbol for the slice transforms (0.7 M channels at the
    latent's size, and the concatenated support of every slice)."""
    return hyperprior.decode_memory(model, height, width, bytes_per_symbol=128)


def _code_slices(runner: base.Runner, psi: tuple[np.ndarray, np.ndarray], code_slice):
    """Runs the slice steps in order; `code_slice(k, indexes, means)` codes slice k and returns
    its dequantized symbols. Returns (finished slices 0 … S−2, slice S−1 before LRP)."""
    done: tuple[np.ndarray, ...] = ()
    last = None
    for k in range(runner.model.num_slices):
        finished, indexes, means = runner.call("slice_step", *psi, done, last)
        if finished is not None:
            done += (finished,)
        last = code_slice(k, indexes, means)
    return done, last


def compress(runner: base.Runner, x: np.ndarray) -> list[list[bytes]]:
    """Padded images [B, H, W, 3] → each image's streams [z, y]."""
    d = runner.model.M // runner.model.num_slices
    y, z = runner.call("analysis", x)
    out = []
    for y1, z1 in zip(y, z):
        z_stream, z_hat = hyperprior.encode_z(runner, z1)
        # Every step runs the decoder's own computation (one image at a time, the same compiled
        # functions, the same inputs), so both sides see identical indexes and means.
        psi = runner.call("hyper_synthesis", z_hat)
        encoder = coder.new_encoder()

        def code_slice(k, indexes, means, y1=y1, encoder=encoder):
            sym = base.symbols(y1[None, ..., k * d : (k + 1) * d], means)
            runner.coder("y").encode_chunk(encoder, sym, indexes)
            return base.dequantize(sym, means)

        _code_slices(runner, psi, code_slice)
        out.append([z_stream, coder.finish(encoder)])
    return out


def decompress(runner: base.Runner, streams: list[bytes], height: int, width: int) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped)."""
    shapes = latent_shapes(runner.model, height, width)
    z_hat = hyperprior.decode_z(runner, streams[0], shapes["z"])
    psi = runner.call("hyper_synthesis", z_hat)
    decoder = coder.new_decoder(streams[1])

    def code_slice(k, indexes, means):
        return base.dequantize(runner.coder("y").decode_chunk(decoder, indexes), means)

    done, last = _code_slices(runner, psi, code_slice)
    return runner.call("slice_synthesis", psi[0], done, last)
