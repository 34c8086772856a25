"""Product vector quantization: the vector is split into m sub-vectors, one codebook each.

Jégou, Douze, Schmid, "Product Quantization for Nearest Neighbor Search", IEEE TPAMI 2011,
sec. II-B: z = (z¹, ..., zᵐ), each zᵍ of size D/m quantized by its own codebook of K codes, so
the implicit codebook has Kᵐ entries at the cost of m·K stored codes. Each group is a
`VectorQuantizer` (EMA codebook, k-means++ initialisation, dead-code restarts) with its own
"quantizer_state"; the straight-through gradient is the identity as for one codebook.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nlq_jax.quantizers.rvq import vq_options
from nlq_jax.quantizers.vq import VectorQuantizer


class ProductVQ(nn.Module):
    """m codebooks on the m slices of D: `(z_q, indices, aux) = pq(z, training=..., rng=...)`.

    `z` float [..., D] → `z_q` float32 [..., D], `indices` int32 [..., m] (column g indexes
    group g's codebook), `aux` as `VectorQuantizer`'s: "loss", "usage" and "perplexity" the
    mean over groups (the loss is then the MSE over all of D), "dead_codes" their sum.

    Attributes:
      groups: m; must divide D.
      codebook_size: K of every group.
      dim: D (None: from the input).
      beta ... axis_name: the `VectorQuantizer` options of every group.
    """

    groups: int
    codebook_size: int
    dim: int | None = None
    beta: float = 0.25
    ema: bool = True
    decay: float = 0.99
    eps: float = 1e-5
    distance: str = "l2"
    gradient: str = "ste"
    kmeans_init: bool = True
    kmeans_iters: int = 3
    restart_dead: bool = True
    dead_threshold: float = 1.0
    axis_name: str | None = None

    prefix_decodable = False  # every index group is needed

    @property
    def num_codes(self) -> tuple[int, ...]:
        return (self.codebook_size,) * self.groups

    def setup(self):
        sub = None if self.dim is None else self._sub_dim(self.dim)
        self.codebooks = [
            VectorQuantizer(self.codebook_size, sub, **vq_options(self)) for _ in range(self.groups)
        ]

    def _sub_dim(self, dim: int) -> int:
        if dim % self.groups:
            raise ValueError(f"{self.groups} groups do not divide the latent size {dim}")
        return dim // self.groups

    def decode(self, indices: jax.Array) -> jax.Array:
        """int [..., m] → float32 [..., D]: the groups' codes side by side."""
        parts = [cb.decode(indices[..., g : g + 1]) for g, cb in enumerate(self.codebooks)]
        return jnp.concatenate(parts, axis=-1)

    def __call__(
        self, z: jax.Array, *, training: bool, rng: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array, dict]:
        """Quantizes z [..., D] group by group; see the class docstring."""
        if self.dim is not None and z.shape[-1] != self.dim:
            raise ValueError(f"expected vectors of size {self.dim}, got shape {z.shape}")
        self._sub_dim(z.shape[-1])
        if training and rng is None and not self.is_initializing():
            rng = self.make_rng("quantizer")
        keys = [None] * self.groups if rng is None else list(jax.random.split(rng, self.groups))
        outs, columns, auxes = [], [], []
        for cb, part, key in zip(self.codebooks, jnp.split(z, self.groups, axis=-1), keys):
            out, idx, aux = cb(part, training=training, rng=key)
            outs.append(out)
            columns.append(idx)
            auxes.append(aux)
        indices = jnp.concatenate(columns, axis=-1)
        z_q = jnp.concatenate(outs, axis=-1) if training else self.decode(indices)
        aux = {
            "loss": jnp.mean(jnp.stack([a["loss"] for a in auxes])),
            "usage": jnp.mean(jnp.stack([a["usage"] for a in auxes])),
            "perplexity": jnp.mean(jnp.stack([a["perplexity"] for a in auxes])),
            "dead_codes": sum(a["dead_codes"] for a in auxes),
        }
        return z_q, indices, aux
