"""Finite scalar quantization: an implicit codebook, the product of per-channel grids.

Mentzer, Minnen, Agustsson, Tschannen, "Finite Scalar Quantization: VQ-VAE Made Simple",
ICLR 2024, sec. 3. Channel i is bounded to L_i levels by f(z) = tanh(z + s)·h − o, with
h = (L_i − 1)(1 − ε)/2, o = ½ for even L_i (whose grid {−L/2, ..., L/2 − 1} has no centre
level; the paper's half-offset) and 0 for odd L_i, and s = tan(o/h) as in the paper's
reference code (appendix A.1; close to atanh(o/h), so f(0) ≈ 0, and defined for L = 2, where
o/h > 1). f(z) is rounded with a straight-through gradient and divided by ⌊L_i/2⌋ to lie in
[−1, 1]. The implicit codebook has Π L_i codes; a code's index is its mixed-radix number
(channel 0 the least significant digit).
No codebook is learned, so there is no auxiliary loss, state or collapse.

The gradient is the straight-through estimator around the rounding only: ∂z_q/∂z is the
derivative of the bounding f divided by ⌊L/2⌋, as in the paper (not the identity).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.quantizers.codebook import code_statistics, histogram


def _constants(levels: Sequence[int], eps: float) -> dict[str, np.ndarray]:
    levels_np = np.asarray(levels, np.int64)
    if levels_np.ndim != 1 or levels_np.size == 0 or (levels_np < 2).any():
        raise ValueError(f"FSQ levels must be a non-empty sequence of ints >= 2, got {levels}")
    half_l = (levels_np - 1) * (1.0 - eps) / 2.0
    offset = np.where(levels_np % 2 == 0, 0.5, 0.0)
    return {
        "levels": levels_np,
        "half_l": half_l.astype(np.float32),
        "offset": offset.astype(np.float32),
        "shift": np.tan(offset / half_l).astype(np.float32),
        "half_width": (levels_np // 2).astype(np.float32),
        "basis": np.cumprod(np.r_[1, levels_np[:-1]]).astype(np.int64),
    }


class FSQ(nn.Module):
    """`(z_q, indices, aux) = fsq(z, training=...)`: z float [..., d] → z_q float32 [..., d] in
    [−1, 1], indices int32 [..., 1] in [0, Π L_i), aux with loss 0 and dead_codes 0.

    Attributes:
      levels: L_i per channel; d = len(levels).
      dim: D of the input. None or d: z is quantized as is. Otherwise learned linear
        projections D → d before and d → D after the quantizer (the paper's sec. 3 setup),
        and `decode` includes the projection out.
      eps: the bounding's margin ε (keeps tanh's range inside the outermost bins).
    """

    levels: Sequence[int] = (8, 5, 5, 5)
    dim: int | None = None
    eps: float = 1e-3

    prefix_decodable = False  # every index group is needed

    @property
    def num_codes(self) -> tuple[int, ...]:
        return (math.prod(int(n) for n in self.levels),)

    def bound(self, z: jax.Array) -> jax.Array:
        """f(z): each channel squashed into its L_i rounding bins."""
        c = _constants(self.levels, self.eps)
        return jnp.tanh(z + c["shift"]) * c["half_l"] - c["offset"]

    def codes_to_indices(self, codes: jax.Array) -> jax.Array:
        """Normalised codes [..., d] (on the grid) → int32 mixed-radix indices [..., 1]."""
        c = _constants(self.levels, self.eps)
        digits = jnp.round(codes * c["half_width"] + c["half_width"]).astype(jnp.int32)
        digits = jnp.clip(digits, 0, c["levels"].astype(np.int32) - 1)
        return jnp.sum(digits * c["basis"].astype(np.int32), axis=-1, keepdims=True)

    def indices_to_codes(self, indices: jax.Array) -> jax.Array:
        """int [..., 1] → normalised codes float32 [..., d] (indices clipped to the range)."""
        c = _constants(self.levels, self.eps)
        idx = jnp.clip(indices.astype(jnp.int32), 0, self.num_codes[0] - 1)
        digits = (idx // c["basis"].astype(np.int32)) % c["levels"].astype(np.int32)
        return (digits.astype(jnp.float32) - c["half_width"]) / c["half_width"]

    def _projected(self, dim: int) -> bool:
        return dim != len(self.levels)

    def decode(self, indices: jax.Array) -> jax.Array:
        """int [..., 1] → float32 [..., D]: the code (projected out when D ≠ d)."""
        codes = self.indices_to_codes(indices)
        if not self.has_variable("params", "out_kernel"):
            return codes
        kernel = self.get_variable("params", "out_kernel")
        bias = self.get_variable("params", "out_bias")
        return jnp.dot(codes, kernel, precision=jax.lax.Precision.HIGHEST) + bias

    @nn.compact
    def __call__(
        self, z: jax.Array, *, training: bool, rng: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array, dict]:
        """Quantizes z; `rng` is unused (FSQ is deterministic)."""
        del rng
        d = len(self.levels)
        dim = z.shape[-1] if self.dim is None else self.dim
        if z.shape[-1] != dim:
            raise ValueError(f"expected vectors of size {dim}, got shape {z.shape}")
        x = z.astype(jnp.float32)
        if self._projected(dim):
            init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
            w_in = self.param("in_kernel", init, (dim, d), jnp.float32)
            b_in = self.param("in_bias", nn.initializers.zeros, (d,), jnp.float32)
            self.param("out_kernel", init, (d, dim), jnp.float32)
            self.param("out_bias", nn.initializers.zeros, (dim,), jnp.float32)
            x = jnp.dot(x, w_in, precision=jax.lax.Precision.HIGHEST) + b_in

        c = _constants(self.levels, self.eps)
        bounded = self.bound(x)
        rounded = jnp.round(bounded)
        codes = rounded / c["half_width"]
        indices = self.codes_to_indices(codes)
        if training:
            # Exactly the rounded value forward, the identity through the rounding backward.
            ste = jax.lax.stop_gradient(rounded) + (bounded - jax.lax.stop_gradient(bounded))
            z_q = ste / c["half_width"]
            if self._projected(dim):
                kernel = self.get_variable("params", "out_kernel")
                bias = self.get_variable("params", "out_bias")
                z_q = jnp.dot(z_q, kernel, precision=jax.lax.Precision.HIGHEST) + bias
        else:
            z_q = self.decode(indices)
        usage, perplexity = code_statistics(histogram(indices, self.num_codes[0]))
        aux = {
            "loss": jnp.zeros((), jnp.float32),
            "usage": usage,
            "perplexity": perplexity,
            "dead_codes": jnp.zeros((), jnp.float32),
        }
        return z_q, indices, aux
