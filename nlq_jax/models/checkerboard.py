"""Checkerboard context: a mean-scale hyperprior with a two-step spatial context model.

He, Zheng, Sun, Wang, Qin, "Checkerboard Context Model for Efficient Learned Image Compression",
CVPR 2021, sec. 3 (fig. 3 and 4): the latent grid is split into anchors (i + j even) and
non-anchors (i + j odd). Anchors are coded with the hyperprior alone (their context is zero);
non-anchors with a 5×5 convolution masked to the checkerboard, which only sees anchors. Both
steps share the entropy-parameters network of Minnen, Ballé, Toderici, "Joint autoregressive
and hierarchical priors for learned image compression", NeurIPS 2018, sec. 3 (1×1 convs), so
decoding takes two parallel steps instead of one per latent position.

```
x ─► g_a ─► y ─► Q(around μ) ─► ŷ ──────────────────────────────────────────────► g_s ─► x̂
            │                    │ anchors only                 ▲ N(μ, σ²) per element
            │                    └► ctx: 5×5 checkerboard conv ─┤ (anchors: ctx = 0)
            └► h_a ─► z ─► Q(medians) ─► ẑ ─► h_s ─► ψ ─────────┴► entropy parameters ─► (σ, μ)
                           ẑ coded with a deep factorized prior      [ψ, ctx] 4M → 10M/3 →
                                                                      8M/3 → 2M (1×1, LReLU)
h_a, h_s: mbt2018's (as `mean_scale`); g_a, g_s: bmshj2018's GDN transforms.
```

Training (`training=True`, as the paper and CompressAI): ŷ = y + U(−½, ½) everywhere; the
context of the non-anchors comes from the noisy anchors, and one pass of the (pointwise)
entropy-parameters network gives both steps' parameters, because the anchors' context is zero.

Eval (`training=False`) is exactly the codec's computation: the anchor step gives (σ_a, μ_a)
from ψ alone and ŷ_a = round(y − μ_a) + μ_a; the context step sees ŷ_a with the non-anchors
zeroed (what the decoder holds), gives (σ_n, μ_n) and ŷ_n = round(y − μ_n) + μ_n.

Streams: [z, y]; y is one queue stream of two chunks, the anchors and then the non-anchors, each
coded with the table indexes of its step (`anchor_step`, then `context_step`: ψ = h_s(ẑ) is
computed once, and each step's entropy parameters only at the positions it codes).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy import coder, gaussian
from nlq_jax.entropy.context import entropy_parameters
from nlq_jax.models import base, hyperprior, mean_scale
from nlq_jax.models.hyperprior import build_tables, decode_memory, latent_shapes
from nlq_jax.models.hyperprior import zy_stream_specs as stream_specs
from nlq_jax.models.joint import get_default_sizes  # mbt2018's (N, M), the paper's base
from nlq_jax.quantizers.scalar import quantize

__all__ = [
    "CheckerboardConv",
    "Model",
    "anchor_mask",
    "build_tables",
    "compress",
    "decode_memory",
    "decompress",
    "get_default_sizes",
    "latent_shapes",
    "stream_specs",
]


def anchor_mask(height: int, width: int) -> np.ndarray:
    """bool [height, width]: True at the anchors, the positions with i + j even."""
    i, j = np.indices((height, width))
    return (i + j) % 2 == 0


def checkerboard_kernel_mask(kernel_size: int) -> np.ndarray:
    """float32 [k, k, 1, 1]: 1 at the taps with odd offset parity, which are anchors when the
    centre is a non-anchor (CompressAI's `CheckerboardMaskedConv2d`)."""
    i, j = np.indices((kernel_size, kernel_size))
    return ((i + j) % 2 == 1).astype(np.float32)[:, :, None, None]


class CheckerboardConv(nn.Module):
    """A k×k "same" convolution whose kernel is zero at even offsets (the checkerboard mask).

    At a non-anchor it sees only anchors; its output at the anchors is never used.

    Attributes:
      features: output channels.
      kernel_size: k (odd; the paper's 5).
    """

    features: int
    kernel_size: int = 5

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, h, w, C] → [B, h, w, features]."""
        k = self.kernel_size
        shape = (k, k, x.shape[-1], self.features)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        y = jax.lax.conv_general_dilated(
            x,
            kernel * checkerboard_kernel_mask(k),
            (1, 1),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        return y + bias


class Model(mean_scale.Model):
    """Checkerboard-context model; see the module docstring for the data flow.

    Attributes:
      N: channels of the hidden layers and of z.
      M: channels of the latent y.
      upsampling: `UpConv` method of g_s and h_s.
    """

    N: int = 192
    M: int = 192
    upsampling: str = "phase"

    stride = 64  # input sizes must be multiples of this (the codec pads)

    def setup(self):
        super().setup()
        self.context_prediction = CheckerboardConv(2 * self.M)
        self.entropy_parameters = entropy_parameters(self.M)

    def _params(self, ctx: jax.Array, hyper: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(scales, means) from the context features and ψ = h_s(ẑ), at any positions."""
        params = self.entropy_parameters(jnp.concatenate([hyper, ctx], axis=-1))
        return params[..., : self.M], params[..., self.M :]

    def _anchor_params(self, hyper: jax.Array) -> tuple[jax.Array, jax.Array]:
        return self._params(jnp.zeros_like(hyper), hyper)

    def gaussian_params(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(scales, means) of y from ẑ alone (context = 0): the anchors' parameters."""
        return self._anchor_params(self.h_s(z_hat))

    def __call__(self, x: jax.Array, *, training: bool) -> dict:
        """x: float [B, H, W, 3] in [0, 1] → {"x_hat", "bits": {"y", "z"}, "aux"}."""
        y = self.g_a(x)
        z = self.h_a(self.hyper_analysis_input(y))
        z_hat, z_bits = self.entropy_bottleneck(z, training=training)
        hyper = self.h_s(z_hat)
        if training:
            anchors = jnp.asarray(anchor_mask(*y.shape[1:3]))[None, :, :, None]
            y_hat = quantize(y, "noise", rng=self.make_rng("noise"))
            ctx = jnp.where(anchors, 0.0, self.context_prediction(y_hat))
            scales, means = self._params(ctx, hyper)
            y_bits = gaussian.gaussian_bits(y_hat - means, scales)
            return {"x_hat": self.g_s(y_hat), "bits": {"y": y_bits, "z": z_bits}, "aux": {}}
        # The decoder's two steps, on the values it holds at each, through the same functions.
        a, n = _positions(*y.shape[1:3])
        y_flat = _flatten(y)
        scales_a, means_a = self._anchor_step_params(hyper)
        y_hat_a = quantize(y_flat[:, a], "round", offset=means_a)
        y_hat_flat = jnp.zeros_like(y_flat).at[:, a].set(y_hat_a)
        scales_n, means_n = self._context_step_params(hyper, y_hat_flat.reshape(y.shape))
        y_hat_n = quantize(y_flat[:, n], "round", offset=means_n)
        y_hat = y_hat_flat.at[:, n].set(y_hat_n).reshape(y.shape)
        y_bits = gaussian.gaussian_bits(y_hat_a - means_a, scales_a)
        y_bits += gaussian.gaussian_bits(y_hat_n - means_n, scales_n)
        return {"x_hat": self.g_s(y_hat), "bits": {"y": y_bits, "z": z_bits}, "aux": {}}

    def _anchor_step_params(self, hyper: jax.Array) -> tuple[jax.Array, jax.Array]:
        """ψ [B, h, w, 2M] → the anchors' (scales, means) [B, n_anchors, M], in raster order."""
        a, _ = _positions(*hyper.shape[1:3])
        return self._anchor_params(_flatten(hyper)[:, a])

    def _context_step_params(
        self, hyper: jax.Array, y_hat_anchors: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(ψ, ŷ with the non-anchors zeroed) → the non-anchors' (scales, means)."""
        _, n = _positions(*hyper.shape[1:3])
        ctx = _flatten(self.context_prediction(y_hat_anchors))[:, n]
        return self._params(ctx, _flatten(hyper)[:, n])

    # The bitstream path's pieces (see `compress`/`decompress`): ψ = h_s(ẑ) is computed once,
    # and each step's entropy parameters only where that step codes.
    def anchor_step(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """ẑ → (ψ, the anchors' table indexes, their means), both [B, n_anchors, M]."""
        hyper = self.h_s(z_hat)
        scales, means = self._anchor_step_params(hyper)
        return hyper, gaussian.scale_indexes(scales, rule=self.scale_rule), means

    def context_step(self, hyper: jax.Array, y_hat_anchors: jax.Array) -> tuple[jax.Array, ...]:
        """(ψ, ŷ with the non-anchors zeroed) → the non-anchors' (table indexes, means)."""
        scales, means = self._context_step_params(hyper, y_hat_anchors)
        return gaussian.scale_indexes(scales, rule=self.scale_rule), means


def _positions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat raster indices of the anchors and of the non-anchors (the order of `y[mask]`)."""
    anchors = anchor_mask(height, width).ravel()
    return np.flatnonzero(anchors), np.flatnonzero(~anchors)


def _flatten(x: jax.Array) -> jax.Array:
    """[B, h, w, C] → [B, h·w, C]."""
    return x.reshape(x.shape[0], -1, x.shape[-1])


def compress(runner: base.Runner, x: np.ndarray) -> list[list[bytes]]:
    """Padded images [B, H, W, 3] → each image's streams [z, y]."""
    y, z = runner.call("analysis", x)
    a, n = _positions(*y.shape[1:3])
    out = []
    for y1, z1 in zip(y, z):
        z_stream, z_hat = hyperprior.encode_z(runner, z1)
        # Each step's indexes and means come from the decoder's own computation (one image at
        # a time, the same compiled functions, the same inputs), so both sides agree exactly.
        encoder = coder.new_encoder()
        y_flat = y1.reshape(-1, y1.shape[-1])
        y_hat = np.zeros((1, *y1.shape), np.float32)
        hyper, indexes, means = runner.call("anchor_step", z_hat)
        sym = base.symbols(y_flat[a], means[0])
        runner.coder("y").encode_chunk(encoder, sym, indexes[0])
        y_hat.reshape(-1, y1.shape[-1])[a] = base.dequantize(sym, means[0])  # a view of y_hat
        indexes, means = runner.call("context_step", hyper, y_hat)
        sym = base.symbols(y_flat[n], means[0])
        runner.coder("y").encode_chunk(encoder, sym, indexes[0])
        out.append([z_stream, coder.finish(encoder)])
    return out


def decompress(runner: base.Runner, streams: list[bytes], height: int, width: int) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped)."""
    shapes = latent_shapes(runner.model, height, width)
    z_hat = hyperprior.decode_z(runner, streams[0], shapes["z"])
    a, n = _positions(*shapes["y"][1:3])
    decoder = coder.new_decoder(streams[1])
    y_hat = np.zeros(shapes["y"], np.float32)
    y_flat = y_hat.reshape(-1, shapes["y"][-1])  # a view: writes land in y_hat
    hyper, indexes, means = runner.call("anchor_step", z_hat)
    y_flat[a] = base.dequantize(runner.coder("y").decode_chunk(decoder, indexes[0]), means[0])
    indexes, means = runner.call("context_step", hyper, y_hat)
    y_flat[n] = base.dequantize(runner.coder("y").decode_chunk(decoder, indexes[0]), means[0])
    return runner.call("synthesis", y_hat)
