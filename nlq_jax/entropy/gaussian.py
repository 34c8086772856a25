"""Gaussian conditional entropy model: each element has its own predicted scale (and mean).

Ballé et al. 2018 ("Variational image compression with a scale hyperprior", sec. 3) model
ŷ ~ N(0, σ²) ∗ U(−½, ½) with σ predicted by the hyper-synthesis; Minnen, Ballé, Toderici 2018
("Joint autoregressive and hierarchical priors for learned image compression", sec. 3) add a
predicted mean μ and quantize around it: ŷ = round(y − μ) + μ.

For coding, σ is snapped to a fixed table of scales (64, log-spaced from 0.11 to 256) by
comparing with the geometric midpoints between table entries, so each element gets an integer
table index; the tables themselves do not depend on any parameter.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy.tables import PRECISION, CodingTables, gaussian_tables
from nlq_jax.ops import lower_bound, std_normal_cdf

SCALE_MIN, SCALE_MAX, NUM_SCALES = 0.11, 256.0, 64
LIKELIHOOD_BOUND = 1e-9


def scale_table(lo: float = SCALE_MIN, hi: float = SCALE_MAX, num: int = NUM_SCALES) -> np.ndarray:
    """The fixed table of scales, float32 [num], log-spaced."""
    return np.exp(np.linspace(np.log(lo), np.log(hi), num)).astype(np.float32)


SCALE_RULES = ("nearest", "next_larger")


def scale_indexes(
    scales: jax.Array, table: np.ndarray | None = None, rule: str = "nearest"
) -> jax.Array:
    """int32 table index of each scale.

    Args:
      scales: predicted σ.
      table: the scale table (default `scale_table()`).
      rule: "nearest" (ours: the nearest entry in log-space, decided by comparisons with the
        float32 geometric midpoints) or "next_larger" (CompressAI's `build_indexes`: the first
        entry ≥ σ, the last one beyond it), for files the size of CompressAI's.

    Either rule gives the same integers on the encoder and the decoder for the same input.
    """
    table = scale_table() if table is None else table
    if rule == "nearest":
        bounds = np.sqrt(table[:-1].astype(np.float64) * table[1:])
    elif rule == "next_larger":
        bounds = table[:-1]
    else:
        raise ValueError(f"unknown scale rule {rule!r}; use one of {SCALE_RULES}")
    return jnp.sum(scales[..., None] > jnp.asarray(bounds, jnp.float32), axis=-1).astype(jnp.int32)


def build_tables(table: np.ndarray | None = None, precision: int = PRECISION) -> CodingTables:
    """Integer tables of the Gaussian conditional, one per table scale, `precision` bits."""
    return gaussian_tables(scale_table() if table is None else table, precision=precision)


def gaussian_likelihood(values: jax.Array, scales: jax.Array) -> jax.Array:
    """P(bin of width 1 centred at `values`) under N(0, scales²), symmetric-tail form."""
    values = jnp.abs(values)
    upper = std_normal_cdf((0.5 - values) / scales)
    lower = std_normal_cdf((-0.5 - values) / scales)
    return upper - lower


def gaussian_bits(residuals: jax.Array, scales: jax.Array) -> jax.Array:
    """Bits per example of quantized residuals (ŷ − μ) under N(0, σ²), σ lower-bounded by the
    smallest table scale: −log2 P summed over all but the batch axis (differentiable)."""
    scales = lower_bound(scales, SCALE_MIN)
    p = lower_bound(gaussian_likelihood(residuals, scales), LIKELIHOOD_BOUND)
    return -jnp.log2(p).reshape(residuals.shape[0], -1).sum(axis=-1)
