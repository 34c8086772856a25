"""Vector quantization: the latent vector is replaced by its nearest codebook entry.

van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017
(VQ-VAE): z_q = e_k with k = argmin_j ||z − e_j||², the straight-through gradient, and the
commitment loss β·||z − sg(e_k)||² (sec. 3.2). The codebook is learned either by the codebook
loss ||sg(z) − e_k||² or, by default, as exponential moving averages of the vectors assigned to
each code (appendix A.1; Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity
Images with VQ-VAE-2", NeurIPS 2019), with Laplace-smoothed cluster sizes as in
Sonnet's `VectorQuantizerEMA`.

Against codebook collapse:
- k-means++ initialisation from the first training batch (Arthur & Vassilvitskii, "k-means++:
  The Advantages of Careful Seeding", SODA 2007), followed by a few Lloyd iterations
  (Zeghidour et al. 2021, SoundStream, sec. III-C, initialise their codebooks with k-means);
- dead-code restart: codes whose EMA usage falls below a threshold are replaced by randomly
  chosen vectors of the batch (Dhariwal et al. 2020, Jukebox; SoundStream, sec. III-C);
- cosine distance: both z and the codes are l2-normalised before the lookup (Yu et al.,
  "Vector-quantized Image Modeling with Improved VQGAN", ICLR 2022, sec. 3.2).

Gradients: the straight-through estimator (identity), or the rotation trick (Fifty et al.,
"Restructuring Vector Quantization with the Rotation Trick", ICLR 2025): the forward value
is still e_k, but the gradient reaches z through the fixed rotation and rescaling that maps z
onto e_k, so it carries how far and in which direction z lies from its code.

State. Everything that changes without a gradient lives in the Flax collection
"quantizer_state": the codebook (EMA mode; in gradient mode the k-means/restart base to which
the learned parameter `codebook_delta` is added), the EMA cluster sizes, the EMA sums of the
assigned vectors, and the `initialized` flag of the k-means initialisation. It is updated only
in training calls applied with `mutable=["quantizer_state"]` (never in eval, never while
`init` traces the model).

Several devices. Under `jit` with a sharded global batch, every statistic here is a `jnp`
reduction over the whole (global) batch, so nothing else is needed. Under `shard_map`, set
`axis_name` to the mapped axis: batch counts and sums are `pmean`-ed over it, and the vectors
chosen for k-means initialisation and restarts are the first device's, so every device keeps
the same codebook. EMA counts are then per-device-batch averages (the unit of
`dead_threshold`).

The codebook helpers (distances, k-means, EMA, usage statistics, straight-through and rotation
gradients) are in `nlq_jax.quantizers.codebook`, shared with the other quantizers.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nlq_jax.quantizers.codebook import (
    STATE,
    check_options,
    code_statistics,
    ema_update,
    kmeans_plusplus,
    l2_normalize,
    lloyd,
    masked_mse,
    nearest_code,
    sample_rows,
    straight_through,
)


class VectorQuantizer(nn.Module):
    """One codebook of K vectors: `(z_q, indices, aux) = vq(z, training=..., rng=...)`.

    `z` float [..., D] → `z_q` float32 [..., D], `indices` int32 [..., 1], `aux` float32
    scalars {"loss", "usage", "perplexity", "dead_codes"}. In eval, z_q is computed by
    `decode(indices)` itself (bit-equal to what a decoder reconstructs). In training, z_q is
    the code forward and the straight-through (or rotation-trick) gradient backward.

    Attributes:
      codebook_size: K.
      dim: D; None takes it from the input when the variables are created.
      beta: weight of the commitment loss β·MSE(z, sg(q)).
      ema: learn the codebook by EMA of the assigned vectors (else by the codebook loss
        MSE(sg(z), q), added to aux["loss"]).
      decay: γ of the EMA statistics (the cluster sizes are tracked in both modes).
      eps: Laplace smoothing of the EMA cluster sizes.
      distance: "l2" or "cosine" (z and codes l2-normalised; z_q is then the unit code, and
        the straight-through gradient passes through the normalisation of z).
      gradient: "ste" (identity) or "rotation" (the rotation trick).
      kmeans_init: initialise the codebook by k-means++ and `kmeans_iters` Lloyd iterations
        on the first training batch.
      kmeans_iters: Lloyd iterations after the k-means++ seeding.
      restart_dead: replace codes whose EMA count is below `dead_threshold` by batch vectors
        (only when the threshold is positive).
      dead_threshold: the EMA count (vectors per batch) below which a code is dead; restarted
        codes get this count. 0 disables restarts.
      axis_name: `pmean` the EMA statistics over this axis (shard_map; see module docstring).
    """

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

    prefix_decodable = False  # one index group

    @property
    def num_codes(self) -> tuple[int, ...]:
        return (self.codebook_size,)

    @property
    def _restarts(self) -> bool:
        return self.restart_dead and self.dead_threshold > 0

    def _variables(self, dim: int):
        """Creates (at init) or fetches the state variables and the gradient-mode delta."""
        k = self.codebook_size

        def init_codebook():
            # Codes of norm ~1; replaced by k-means on the first batch when kmeans_init.
            s = (3.0 / dim) ** 0.5
            return jax.random.uniform(self.make_rng("params"), (k, dim), jnp.float32, -s, s)

        codebook = self.variable(STATE, "codebook", init_codebook)
        cluster_size = self.variable(STATE, "cluster_size", jnp.ones, (k,), jnp.float32)
        init = self.variable(
            STATE, "initialized", lambda: jnp.asarray(0 if self.kmeans_init else 1, jnp.int32)
        )
        embed_sum = delta = None
        if self.ema:
            embed_sum = self.variable(STATE, "embed_sum", lambda: codebook.value)
        else:
            delta = self.param("codebook_delta", nn.initializers.zeros, (k, dim), jnp.float32)
        return codebook, cluster_size, init, embed_sum, delta

    def codebook(self) -> jax.Array:
        """The codebook the lookup uses, float32 [K, D] (unit rows for cosine distance)."""
        c = self.get_variable(STATE, "codebook")
        if not self.ema:
            c = c + self.get_variable("params", "codebook_delta")
        return l2_normalize(c) if self.distance == "cosine" else c

    def decode(self, indices: jax.Array) -> jax.Array:
        """int [..., 1] → float32 [..., D] (out-of-range indices are clipped)."""
        return jnp.take(self.codebook(), indices[..., 0], axis=0, mode="clip")

    @nn.compact
    def __call__(
        self,
        z: jax.Array,
        *,
        training: bool,
        rng: jax.Array | None = None,
        mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, dict]:
        """Quantizes z [..., D]; see the class docstring.

        Args:
          z: float [..., D].
          training: straight-through output and, when "quantizer_state" is mutable, state updates.
          rng: key for k-means++ and restarts (default: `make_rng("quantizer")`).
          mask: bool broadcastable to z.shape[:-1]; vectors where False are quantized but left
            out of the losses, statistics and updates (residual VQ's quantizer dropout).
        """
        check_options(self.distance, self.gradient)
        dim = z.shape[-1] if self.dim is None else self.dim
        if z.shape[-1] != dim:
            raise ValueError(f"expected vectors of size {dim}, got shape {z.shape}")
        codebook_v, size_v, init_v, sum_v, delta = self._variables(dim)
        lead = z.shape[:-1]
        k = self.codebook_size
        x = z.reshape(-1, dim).astype(jnp.float32)
        if self.distance == "cosine":
            x = l2_normalize(x)
        if mask is None:
            w = jnp.ones(x.shape[:1], jnp.float32)
        else:
            w = jnp.broadcast_to(mask, lead).reshape(-1).astype(jnp.float32)

        update = training and self.is_mutable_collection(STATE) and not self.is_initializing()
        if update and (self.kmeans_init or self._restarts):
            key = rng if rng is not None else self.make_rng("quantizer")
            key_init, key_restart = jax.random.split(key)
            if self.kmeans_init:
                self._kmeans_init(key_init, x, w, codebook_v, size_v, init_v, sum_v, delta)

        codebook = self.codebook()
        idx = nearest_code(x, codebook, self.distance)
        indices = idx.reshape((*lead, 1))
        q_out = self.decode(indices)
        q = q_out.reshape(-1, dim)

        loss = self.beta * masked_mse(x, jax.lax.stop_gradient(q), w)
        if not self.ema:
            loss = loss + masked_mse(jax.lax.stop_gradient(x), q, w)
        onehot = jax.nn.one_hot(idx, k, dtype=jnp.float32) * w[:, None]
        counts = jnp.sum(onehot, axis=0)
        if self.axis_name is not None:
            counts = jax.lax.psum(counts, self.axis_name)
        usage, perplexity = code_statistics(counts)

        if update:
            if self.ema:
                stats = {"cluster_size": size_v.value, "embed_sum": sum_v.value}
                new = ema_update(stats, x, onehot, self.decay, self.eps, self.axis_name)
                size_v.value, sum_v.value = new["cluster_size"], new["embed_sum"]
                codebook_v.value = new["codebook"]
            else:
                batch = jnp.sum(onehot, axis=0)
                if self.axis_name is not None:
                    batch = jax.lax.pmean(batch, self.axis_name)
                size_v.value = self.decay * size_v.value + (1.0 - self.decay) * batch
        dead_codes = jnp.sum(size_v.value < self.dead_threshold).astype(jnp.float32)
        if update and self._restarts:
            self._restart(key_restart, x, w, codebook_v, size_v, sum_v, delta)

        if training:
            z_q = straight_through(x, q, self.gradient).reshape(q_out.shape)
        else:
            z_q = q_out
        aux = {
            "loss": loss.astype(jnp.float32),
            "usage": usage,
            "perplexity": perplexity,
            "dead_codes": dead_codes,
        }
        return z_q, indices, aux

    def _kmeans_init(self, key, x, w, codebook_v, size_v, init_v, sum_v, delta) -> None:
        """k-means++ and Lloyd on the first batch with data, inside jit (lax.cond)."""
        has_data = self._global_sum(w) > 0
        k = self.codebook_size

        def fit(_):
            centers = kmeans_plusplus(key, x, k, w)
            centers = lloyd(x, centers, self.kmeans_iters, w, self.distance)
            if self.distance == "cosine":
                centers = l2_normalize(centers)
            if self.axis_name is not None:
                centers = jax.lax.all_gather(centers, self.axis_name)[0]
            onehot = jax.nn.one_hot(nearest_code(x, centers, self.distance), k) * w[:, None]
            counts = jnp.sum(onehot, axis=0)
            if self.axis_name is not None:
                counts = jax.lax.pmean(counts, self.axis_name)
            # A centre no batch vector chose (a duplicate when N < K) counts as 1 vector,
            # like every code of a fresh codebook: it keeps its value until it is restarted.
            counts = jnp.maximum(counts, 1.0)
            if self.ema:
                return centers, counts, centers * counts[:, None]
            return centers - delta, counts, None

        def keep(_):
            return codebook_v.value, size_v.value, None if sum_v is None else sum_v.value

        run = (init_v.value == 0) & has_data
        codebook_v.value, size_v.value, embed_sum = jax.lax.cond(run, fit, keep, None)
        if sum_v is not None:
            sum_v.value = embed_sum
        init_v.value = jnp.where(run, 1, init_v.value).astype(jnp.int32)

    def _restart(self, key, x, w, codebook_v, size_v, sum_v, delta) -> None:
        """Dead codes (EMA count < threshold) become random batch vectors, with that count."""
        dead = (size_v.value < self.dead_threshold) & (self._global_sum(w) > 0)
        candidates = sample_rows(key, x, self.codebook_size, w)
        if self.axis_name is not None:
            candidates = jax.lax.all_gather(candidates, self.axis_name)[0]
        col = dead[:, None]
        size_v.value = jnp.where(dead, jnp.float32(self.dead_threshold), size_v.value)
        if self.ema:
            codebook_v.value = jnp.where(col, candidates, codebook_v.value)
            sum_v.value = jnp.where(col, candidates * self.dead_threshold, sum_v.value)
        else:
            codebook_v.value = jnp.where(col, candidates - delta, codebook_v.value)

    def _global_sum(self, w: jax.Array) -> jax.Array:
        s = jnp.sum(w)
        return s if self.axis_name is None else jax.lax.psum(s, self.axis_name)
