"""mbt2018: joint autoregressive and hierarchical priors — a mean-scale hyperprior plus a masked
5×5 context model over the already decoded latents.

Minnen, Ballé, Toderici, "Joint autoregressive and hierarchical priors for learned image
compression", NeurIPS 2018, sec. 3 and fig. 2 (CompressAI's `mbt2018`).

```
x ─► g_a ─► y ─► Q(around μ) ─► ŷ ─────────────────────────────────────► g_s ─► x̂
            │                   │ ▲ N(μ, σ²) per element
            │                   └► g_c (5×5 masked conv, 2M) ─┐
            └► h_a ─► z ─► Q ─► ẑ ─► h_s (2M) ────────────────┴► concat ─► e_p ─► (σ, μ)
                       ẑ coded with a deep factorized prior
g_c: mask "A" (rows above and positions to the left)
e_p: 1×1 convs 4M → 10M/3 → 8M/3 → 2M with leaky ReLUs
```
Training uses additive noise, and the context sees the noisy ỹ (all positions at once); the
rate term is computed on a second, independent noise sample y + u₂, as in CompressAI's mbt2018
(its Gaussian conditional adds its own noise to y).

Coding decodes the latent in wavefronts (`nlq_jax.entropy.context.wavefront_schedule`): one
jitted `lax.fori_loop` over about 3·h + w steps computes each wavefront's (σ, μ) from the
decoded ŷ, and a host callback inside the loop range-decodes its symbols — never a Python loop
over positions. The encoder runs the *same* compiled loop, its callback computing and encoding
round(y − μ) instead, so both sides see bit-identical μ and table indexes. The eval-mode forward
runs this loop too (symbols computed in the loop), so its ŷ and bits are the codec's.

Streams: [z, y]; y holds one chunk per wavefront (regular symbols, then that chunk's escapes).
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import io_callback

from nlq_jax.entropy import coder as range_coder
from nlq_jax.entropy import gaussian
from nlq_jax.entropy.context import (
    MaskedConv,
    causal_taps,
    entropy_parameters,
    wavefront_schedule,
)
from nlq_jax.errors import FormatError
from nlq_jax.models import base, hyperprior, mean_scale
from nlq_jax.quantizers.scalar import quantize

__all__ = ["Model", "build_tables", "compress", "decompress", "get_default_sizes", "latent_shapes"]

build_tables = mean_scale.build_tables
latent_shapes = mean_scale.latent_shapes
stream_specs = hyperprior.zy_stream_specs


def get_default_sizes(quality: int) -> dict[str, int]:
    """CompressAI's (N, M) for mbt2018 at quality 1–8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 192, "M": 192} if quality <= 4 else {"N": 192, "M": 320}


class Model(mean_scale.Model):
    """Joint autoregressive + hyperprior model; see the module docstring for the data flow."""

    def setup(self):
        super().setup()
        M = self.M
        self.context_prediction = MaskedConv(M, 2 * M, 5)
        self.entropy_parameters = entropy_parameters(M)

    def split_params(self, params: jax.Array) -> tuple[jax.Array, jax.Array]:
        """e_p's output → (scales, means)."""
        return params[..., : self.M], params[..., self.M :]

    def __call__(self, x: jax.Array, *, training: bool) -> dict:
        """x: float [B, H, W, 3] in [0, 1] → {"x_hat", "bits": {"y", "z"}, "aux"}."""
        y, z = self.analysis(x)
        z_hat, z_bits = self.entropy_bottleneck(z, training=training)
        hyper = self.h_s(z_hat)
        if training:
            y_hat = quantize(y, "noise", rng=self.make_rng("noise"))
            ctx = self.context_prediction(y_hat)
            scales, means = self.split_params(
                self.entropy_parameters(jnp.concatenate([hyper, ctx], -1))
            )
            # As CompressAI's mbt2018: the rate is that of a second noisy sample y + u₂ (its
            # GaussianConditional draws its own noise), not of the ỹ the context and g_s see.
            y_tilde = quantize(y, "noise", rng=self.make_rng("noise"))
            y_bits = gaussian.gaussian_bits(y_tilde - means, scales)
        else:
            y_hat, scales, means = self.sequential(hyper, y)
            y_bits = gaussian.gaussian_bits(y_hat - means, scales)
        return {"x_hat": self.g_s(y_hat), "bits": {"y": y_bits, "z": z_bits}, "aux": {}}

    # The bitstream path's pieces.
    def hyper_params(self, z_hat: jax.Array) -> jax.Array:
        return self.h_s(z_hat)

    def sequential(
        self, hyper: jax.Array, y: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """ŷ, σ, μ [B, h, w, M] computed wavefront by wavefront, as the decoder does.

        With `y`, each wavefront's symbols are round(y − μ) (the eval forward); without, they
        come from the active coding session's callback (batch 1: the encoder and decoder).
        """
        if y is None or hyper.shape[0] == 1:
            # One image unbatched: the same computation for the forward, encoder and decoder.
            one = self._loop(hyper[0], None if y is None else y[0])
            return jax.tree_util.tree_map(lambda a: a[None], one)
        return jax.vmap(self._loop)(hyper, y)

    def _loop(self, hyper: jax.Array, y: jax.Array | None):
        h, w, M = hyper.shape[0], hyper.shape[1], self.M
        positions, _ = wavefront_schedule(h, w)
        steps, P = positions.shape
        junk = h * w  # invalid (padding) entries of a wavefront read and write this row
        pos = jnp.asarray(np.where(positions < 0, junk, positions))
        # ŷ lives in a zero-padded grid (2 rows above, 2 columns each side, 1 junk row below)
        # so every tap of every position is a valid flat index.
        wp = w + 4
        padded = np.where(positions < 0, 0, (positions // w + 2) * wp + positions % w + 2)
        padded = np.where(positions < 0, (h + 2) * wp + 2, padded)
        taps = causal_taps(5)
        tap_index = jnp.asarray(padded[:, :, None] + (taps[:, 0] * wp + taps[:, 1])[None, None])
        padded = jnp.asarray(padded)

        w_ctx, b_ctx = self.context_prediction.tap_matrix()
        hyper_flat = jnp.concatenate([hyper.reshape(h * w, -1), jnp.zeros((1, 2 * M))], 0)
        y_flat = None if y is None else jnp.concatenate([y.reshape(h * w, M), jnp.zeros((1, M))])

        def body(t, carry):
            grid, scales_out, means_out = carry
            neighbours = grid[tap_index[t]].reshape(P, -1)  # [P, taps·M]
            ctx = neighbours @ w_ctx + b_ctx
            params = self.entropy_parameters(jnp.concatenate([hyper_flat[pos[t]], ctx], -1))
            scales, means = self.split_params(params)
            indexes = gaussian.scale_indexes(scales, rule=self.scale_rule)
            if y_flat is None:
                sym = io_callback(
                    _session_step,
                    jax.ShapeDtypeStruct((P, M), jnp.int32),
                    t,
                    indexes,
                    means,
                    ordered=True,
                )
            else:
                sym = quantize(y_flat[pos[t]], "symbols", offset=means)
            y_hat = quantize(sym, "dequantize", offset=means)
            grid = grid.at[padded[t]].set(y_hat)
            return grid, scales_out.at[pos[t]].set(scales), means_out.at[pos[t]].set(means)

        grid = jnp.zeros(((h + 3) * wp, M))
        flat = jnp.zeros((h * w + 1, M))
        grid, scales, means = jax.lax.fori_loop(0, steps, body, (grid, flat, flat))
        grid = grid.reshape(h + 3, wp, M)[2 : h + 2, 2 : w + 2]
        return grid, scales[:junk].reshape(h, w, M), means[:junk].reshape(h, w, M)

    def decode_latent(self, hyper: jax.Array) -> jax.Array:
        """ŷ [1, h, w, M] from the active session's symbols (the coder's callback)."""
        return self.sequential(hyper)[0]


# The coding session the loop's callback talks to. XLA may run the callback on any of its
# threads, so this is a process-wide slot, held under a lock for the whole loop.
_LOCK = threading.Lock()
_ACTIVE: dict[str, _Session | None] = {"session": None}


class _Session:
    """Feeds a wavefront's symbols to the loop: computed and encoded (encoder), or decoded."""

    def __init__(self, coder: range_coder.TableCoder, h: int, w: int, y=None, data=None):
        self.coder = coder
        self.positions, self.counts = wavefront_schedule(h, w)
        self.y = None if y is None else np.asarray(y, np.float32).reshape(h * w, -1)
        self.encoder = range_coder.new_encoder() if y is not None else None
        self.decoder = None if data is None else range_coder.new_decoder(data)
        self.error: Exception | None = None

    def step(self, t, indexes, means) -> np.ndarray:
        t = int(t)
        n = int(self.counts[t])
        sym = np.zeros(indexes.shape, np.int32)
        if self.error is not None:
            return sym
        try:
            if self.encoder is not None:
                sym[:n] = base.symbols(self.y[self.positions[t, :n]], means[:n])
                self.coder.encode_chunk(self.encoder, sym[:n], indexes[:n])
            else:
                sym[:n] = self.coder.decode_chunk(self.decoder, indexes[:n])
        except Exception as e:  # noqa: BLE001 (re-raised by `run` after the loop)
            self.error = e
        return sym

    def run(self, runner: base.Runner, hyper: np.ndarray) -> np.ndarray:
        with _LOCK:
            _ACTIVE["session"] = self
            try:
                y_hat = runner.call("decode_latent", hyper)
            finally:
                _ACTIVE["session"] = None
        if self.error is not None:
            raise self.error
        return y_hat


def _session_step(t, indexes, means):
    session = _ACTIVE["session"]
    if session is None:
        raise RuntimeError("the context model's coding loop ran outside a coding session")
    return session.step(t, np.asarray(indexes), np.asarray(means))


def decode_memory(model: Model, height: int, width: int) -> int:
    """Upper bound on the bytes `decompress` allocates for a (padded) image size: the
    hyperprior's, with more per latent symbol for the wavefront loop (its padded ŷ grid, σ, μ
    and ψ, and the schedule's tap indexes)."""
    return hyperprior.decode_memory(model, height, width, bytes_per_symbol=128)


def compress(runner: base.Runner, x: np.ndarray) -> list[list[bytes]]:
    """Padded images [B, H, W, 3] → each image's streams [z, y]."""
    y, z = runner.call("analysis", x)
    out = []
    for y1, z1 in zip(y, z):
        z_stream, z_hat = hyperprior.encode_z(runner, z1)
        hyper = runner.call("hyper_params", z_hat)
        session = _Session(runner.coder("y"), y1.shape[0], y1.shape[1], y=y1)
        session.run(runner, hyper)
        out.append([z_stream, range_coder.finish(session.encoder)])
    return out


def decompress(runner: base.Runner, streams: list[bytes], height: int, width: int) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped)."""
    shapes = latent_shapes(runner.model, height, width)
    z_hat = hyperprior.decode_z(runner, streams[0], shapes["z"])
    hyper = runner.call("hyper_params", z_hat)
    h, w = shapes["y"][1:3]
    y_hat = _Session(runner.coder("y"), h, w, data=streams[1]).run(runner, hyper)
    if not np.isfinite(y_hat).all():
        raise FormatError("corrupted stream (the decoded latent is not finite)")
    return runner.call("synthesis", y_hat)
