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

The shared helpers (`code_statistics`, `straight_through`, `rotation_trick`) are used by the
other quantizers of this package too.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

STATE = "quantizer_state"
DISTANCES = ("l2", "cosine")
GRADIENTS = ("ste", "rotation")
# Code assignment decides the bitstream's symbols; full float32 products on every backend.
_HIGHEST = jax.lax.Precision.HIGHEST
_TINY = 1e-12


def l2_normalize(x: jax.Array, eps: float = _TINY) -> jax.Array:
    """x / ||x|| along the last axis (zero vectors stay zero)."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def code_distances(x: jax.Array, codebook: jax.Array, distance: str = "l2") -> jax.Array:
    """Distances up to a per-row constant, float [N, K], for the nearest-code search.

    "l2": ||e||² − 2 x·e (||x||² omitted); "cosine": −x·e, for already normalised x and e.
    """
    dots = jnp.dot(x, codebook.T, precision=_HIGHEST)
    if distance == "cosine":
        return -dots
    return jnp.sum(codebook * codebook, axis=-1) - 2.0 * dots


def nearest_code(x: jax.Array, codebook: jax.Array, distance: str = "l2") -> jax.Array:
    """int32 [N]: index of the nearest code of each row of x [N, D] (first one on ties)."""
    return jnp.argmin(code_distances(x, codebook, distance), axis=-1).astype(jnp.int32)


def code_statistics(counts: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(usage, perplexity) of one codebook from its batch counts [K] (float32 scalars).

    usage: the fraction of codes used at least once; perplexity: exp of the entropy of the
    batch's code frequencies (K when all codes are equally used, 1 when one code is).
    """
    counts = counts.astype(jnp.float32)
    p = counts / jnp.maximum(counts.sum(), 1.0)
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return jnp.mean(counts > 0).astype(jnp.float32), jnp.exp(entropy)


def histogram(indices: jax.Array, num_codes: int, weights: jax.Array | None = None) -> jax.Array:
    """float32 [num_codes]: (weighted) count of each code in `indices` (any shape)."""
    flat = indices.reshape(-1)
    w = jnp.ones(flat.shape, jnp.float32) if weights is None else weights.reshape(-1)
    return jnp.zeros((num_codes,), jnp.float32).at[flat].add(w, mode="drop")


def ema_update(
    state: dict,
    z_flat: jax.Array,
    onehot: jax.Array,
    decay: float,
    eps: float,
    axis_name: str | None = None,
) -> dict:
    """One EMA codebook step (VQ-VAE appendix A.1; Laplace smoothing as in Sonnet).

        N_k ← γ N_k + (1 − γ) n_k          n_k = Σ_i onehot[i, k]
        m_k ← γ m_k + (1 − γ) Σ_i onehot[i, k] z_i
        Ñ_k = (N_k + ε) / (Σ_j N_j + K ε) · Σ_j N_j
        e_k = m_k / Ñ_k

    Args:
      state: {"cluster_size": [K], "embed_sum": [K, D]}, the EMA statistics.
      z_flat: float [N, D], the batch's vectors.
      onehot: float [N, K] assignments (rows may be scaled by a 0/1 mask).
      decay: γ.
      eps: ε, the Laplace smoothing of the cluster sizes (keeps unused codes finite).
      axis_name: `pmean` the batch statistics over this mapped axis (shard_map users).

    Returns:
      {"cluster_size", "embed_sum", "codebook"}: the new statistics and the codebook e [K, D].
    """
    counts = jnp.sum(onehot, axis=0)
    sums = jnp.dot(onehot.T, z_flat, precision=_HIGHEST)
    if axis_name is not None:
        counts, sums = jax.lax.pmean((counts, sums), axis_name)
    cluster_size = decay * state["cluster_size"] + (1.0 - decay) * counts
    embed_sum = decay * state["embed_sum"] + (1.0 - decay) * sums
    n = jnp.sum(cluster_size)
    k = cluster_size.shape[0]
    smoothed = (cluster_size + eps) / (n + k * eps) * n
    codebook = embed_sum / jnp.maximum(smoothed, jnp.finfo(jnp.float32).tiny)[:, None]
    return {"cluster_size": cluster_size, "embed_sum": embed_sum, "codebook": codebook}


def kmeans_plusplus(
    key: jax.Array, x: jax.Array, k: int, weights: jax.Array | None = None
) -> jax.Array:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): k rows of x [N, D], float [k, D].

    Each next centre is drawn with probability ∝ weight·D², D the distance to the nearest centre
    drawn so far. When every (weighted) row is already a centre, e.g. N < k, rows are drawn
    uniformly again, i.e. with replacement. Rows of weight 0 are never drawn (unless all are).
    """
    w = jnp.ones(x.shape[:1], jnp.float32) if weights is None else weights.astype(jnp.float32)
    # Inverse-CDF draws from k uniforms made up front (one random op, cheap to compile).
    u = jax.random.uniform(key, (k,), jnp.float32)

    def draw(p, ui):
        cdf = jnp.cumsum(p)
        # The first i with cdf[i] > u·total (rows of zero mass are never drawn).
        return jnp.minimum(jnp.sum(cdf <= ui * cdf[-1]), x.shape[0] - 1)

    first = x[draw(w, u[0])]
    centers = jnp.zeros((k, x.shape[1]), x.dtype).at[0].set(first)
    d2 = jnp.sum((x - first) ** 2, axis=-1)

    def body(i, carry):
        centers, d2 = carry
        p = d2 * w
        c = x[draw(jnp.where(jnp.sum(p) > 0, p, w), u[i])]
        return centers.at[i].set(c), jnp.minimum(d2, jnp.sum((x - c) ** 2, axis=-1))

    centers, _ = jax.lax.fori_loop(1, k, body, (centers, d2))
    return centers


def lloyd(
    x: jax.Array,
    centers: jax.Array,
    iters: int,
    weights: jax.Array | None = None,
    distance: str = "l2",
) -> jax.Array:
    """`iters` Lloyd (k-means) iterations from `centers` [K, D]; empty clusters stay put."""
    k = centers.shape[0]
    w = jnp.ones(x.shape[:1], jnp.float32) if weights is None else weights.astype(jnp.float32)

    def step(_, c):
        lookup = l2_normalize(c) if distance == "cosine" else c
        onehot = jax.nn.one_hot(nearest_code(x, lookup, distance), k) * w[:, None]
        counts = jnp.sum(onehot, axis=0)[:, None]
        sums = jnp.dot(onehot.T, x, precision=_HIGHEST)
        return jnp.where(counts > 0, sums / jnp.maximum(counts, 1.0), c)

    return jax.lax.fori_loop(0, iters, step, centers)


def sample_rows(key: jax.Array, x: jax.Array, k: int, weights: jax.Array) -> jax.Array:
    """k random rows of x [N, D] among those of positive weight, float [k, D]: distinct when
    there are at least k, else each of them in turn (with repetition)."""
    m = min(x.shape[0], k)
    log_w = jnp.log(weights.astype(jnp.float32))
    # Gumbel top-m: a uniformly random ordering of the rows of positive weight, first.
    _, order = jax.lax.top_k(log_w + jax.random.gumbel(key, log_w.shape), m)
    valid = jnp.clip(jnp.sum(weights > 0), 1, m)
    return x[order[jnp.arange(k) % valid]]


def rotation_trick(z: jax.Array, q: jax.Array) -> jax.Array:
    """The rotation trick (Fifty et al.): the value q, with the gradient of sg(λR)·z.

    R rotates z/||z|| onto q/||q|| (a Householder reflection through r = (ê + q̂)/||ê + q̂||
    followed by the reflection that completes the rotation: R = I − 2rrᵀ + 2q̂êᵀ) and
    λ = ||q||/||z|| rescales, so λRz = q. R and λ are constants for the gradient.

    Args:
      z: float [N, D], the encoder outputs.
      q: float [N, D], their codes (no gradient is taken through q here).

    Returns:
      float [N, D], exactly q forward; ∂/∂z is (λR)ᵀ applied to the incoming gradient.
    """
    q = jax.lax.stop_gradient(q)
    z_sg = jax.lax.stop_gradient(z)
    z_norm = jnp.sqrt(jnp.sum(z_sg * z_sg, axis=-1, keepdims=True))
    q_norm = jnp.sqrt(jnp.sum(q * q, axis=-1, keepdims=True))
    e = z_sg / jnp.maximum(z_norm, _TINY)
    q_hat = q / jnp.maximum(q_norm, _TINY)
    r = l2_normalize(e + q_hat)
    scale = q_norm / jnp.maximum(z_norm, _TINY)

    def rotate(v):
        return scale * (
            v
            - 2.0 * r * jnp.sum(r * v, axis=-1, keepdims=True)
            + 2.0 * q_hat * jnp.sum(e * v, axis=-1, keepdims=True)
        )

    rotated = rotate(z)
    return q + (rotated - jax.lax.stop_gradient(rotated))


def straight_through(z: jax.Array, q: jax.Array, gradient: str = "ste") -> jax.Array:
    """Exactly q forward; the gradient reaches z as the identity ("ste") or through the
    rotation trick ("rotation"), and never reaches q (its codebook learns from its own loss).
    """
    if gradient == "rotation":
        return rotation_trick(z, q)
    if gradient != "ste":
        raise ValueError(f"unknown gradient {gradient!r}; expected one of {GRADIENTS}")
    return jax.lax.stop_gradient(q) + (z - jax.lax.stop_gradient(z))


def masked_mse(a: jax.Array, b: jax.Array, weights: jax.Array) -> jax.Array:
    """Σ_i w_i ||a_i − b_i||² / (D Σ_i w_i): the mean squared error over the kept rows."""
    err = jnp.sum((a - b) ** 2, axis=-1)
    return jnp.sum(weights * err) / (jnp.maximum(jnp.sum(weights), 1.0) * a.shape[-1])


def check_options(distance: str, gradient: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"unknown distance {distance!r}; expected one of {DISTANCES}")
    if gradient not in GRADIENTS:
        raise ValueError(f"unknown gradient {gradient!r}; expected one of {GRADIENTS}")


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
