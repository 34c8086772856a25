"""Codebook helpers shared by the quantizers: the state collection's name, code distances and
the nearest code, usage statistics (histogram, usage, perplexity), EMA updates, k-means++ and
Lloyd iterations, row sampling for restarts, and the straight-through and rotation-trick
gradients. Pure functions of arrays; the modules that hold codebooks (`vq`, `rvq`, `pq`,
`gumbel`, `fsq`, `learned_scalar`) import what they use from here.
"""

from __future__ import annotations

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
