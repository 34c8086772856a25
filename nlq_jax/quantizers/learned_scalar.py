"""Learned scalar quantization: a uniform grid per channel with a learned step and centre.

Channel d has L_d levels (from the config) on the grid o_d + s_d·(i − (L_d − 1)/2),
i = 0 ... L_d − 1: q = o + s·clip(round((z − o)/s), ±(L − 1)/2) for odd L, and the same
half-offset grid (no level at o) for even L, as in FSQ (Mentzer et al. 2024, sec. 3). The step
s (stored as log s) and the centre o are learned through the reconstruction like LSQ's step
(Esser et al., "Learned Step Size Quantization", ICLR 2020, sec. 2), while the gradient to z
is the straight-through identity (Bengio, Léonard, Courville 2013). Each channel's level index
i is one index group (G = D), so an entropy model codes every channel with its own table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.quantizers.codebook import code_statistics


class LearnedScalarQuantizer(nn.Module):
    """`(z_q, indices, aux) = q(z, training=...)`: z float [..., D] → z_q float32 [..., D],
    indices int32 [..., D] (channel d's level in [0, L_d)), aux with loss 0, usage and
    perplexity the mean over channels, dead_codes 0.

    Attributes:
      dim: D (None: len(levels) when levels is a sequence, else from the input; `num_codes`
        then needs a sequence or dim).
      levels: L per channel, or one int for all.
      init_scale: initial step s (the integer grid by default).
    """

    dim: int | None = None
    levels: int | Sequence[int] = 16
    init_scale: float = 1.0

    prefix_decodable = False  # every index group is needed

    def _levels(self, dim: int | None = None) -> np.ndarray:
        if isinstance(self.levels, int):
            dim = self.dim if dim is None else dim
            if dim is None:
                raise ValueError("give levels per channel or set dim")
            levels = np.full(dim, self.levels, np.int64)
        else:
            levels = np.asarray(self.levels, np.int64)
            if self.dim is not None and levels.size != self.dim:
                raise ValueError(f"{levels.size} levels for {self.dim} channels")
        if levels.ndim != 1 or (levels < 2).any():
            raise ValueError(f"levels must be ints >= 2, got {self.levels}")
        return levels

    @property
    def num_codes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self._levels())

    def _grid(self, dim: int) -> tuple[jax.Array, jax.Array, np.ndarray, np.ndarray]:
        """(scale, offset, centre (L − 1)/2, L − 1) for D channels."""
        levels = self._levels(dim)
        scale = jnp.exp(self.get_variable("params", "log_scale"))
        offset = self.get_variable("params", "offset")
        return scale, offset, ((levels - 1) / 2).astype(np.float32), levels - 1

    def decode(self, indices: jax.Array) -> jax.Array:
        """int [..., D] → float32 [..., D] (indices clipped to each channel's levels)."""
        scale, offset, centre, top = self._grid(indices.shape[-1])
        i = jnp.clip(indices, 0, top.astype(np.int32)).astype(jnp.float32)
        return offset + scale * (i - centre)

    @nn.compact
    def __call__(
        self, z: jax.Array, *, training: bool, rng: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array, dict]:
        """Quantizes z; `rng` is unused (the quantizer is deterministic)."""
        del rng
        dim = z.shape[-1]
        levels = self._levels(dim)
        if levels.size != dim:
            raise ValueError(f"expected {levels.size} channels, got shape {z.shape}")
        self.param("log_scale", nn.initializers.constant(math.log(self.init_scale)), (dim,))
        self.param("offset", nn.initializers.zeros, (dim,))
        scale, offset, centre, top = self._grid(dim)

        x = z.astype(jnp.float32)
        u = jax.lax.stop_gradient((x - offset) / scale + centre)
        indices = jnp.clip(jnp.round(u), 0, top.astype(np.float32)).astype(jnp.int32)
        if training:
            # The grid value forward (with gradients to scale and offset), identity to z.
            q = offset + scale * (indices.astype(jnp.float32) - centre)
            z_q = q + (x - jax.lax.stop_gradient(x))
        else:
            z_q = self.decode(indices)

        width = int(levels.max())
        flat = indices.reshape(-1, dim) + jnp.arange(dim, dtype=jnp.int32) * width
        counts = jnp.zeros((dim * width,), jnp.float32).at[flat.reshape(-1)].add(1.0)
        counts = counts.reshape(dim, width)
        usage = jnp.mean(jnp.sum(counts > 0, axis=-1) / jnp.asarray(levels, jnp.float32))
        perplexity = jnp.mean(jax.vmap(lambda c: code_statistics(c)[1])(counts))
        aux = {
            "loss": jnp.zeros((), jnp.float32),
            "usage": usage.astype(jnp.float32),
            "perplexity": perplexity,
            "dead_codes": jnp.zeros((), jnp.float32),
        }
        return z_q, indices, aux
