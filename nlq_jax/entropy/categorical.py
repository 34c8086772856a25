"""A learned categorical prior over code indices, optionally conditioned on the previous group.

A discrete latent (VQ, RVQ, PQ, FSQ, ...) gives G index groups per position, group g over an
alphabet of K_g codes. The prior learns logits per group, p(i_g) = softmax(ℓ_g)[i_g], or, when
`conditional`, p(i_g | i_{g−1}) = softmax(ℓ_g[i_{g−1}])[i_g] with a full K_{g−1} × K_g table
(e.g. RVQ stage s given stage s − 1; a first-order Markov chain over the groups). Its rate is
the cross-entropy −log2 p of the indices, which trains it; the indices carry no gradient.

Coding: `build_tables` turns the logits into integer CDFs (24-bit, with the escape bin of
`tables.quantize_pmf`), one table per group, or per (group, previous code) when conditional;
`table_indexes` says which table codes each index. A conditional prior is decoded group by
group (`TableCoder.encode_chunk`/`decode_chunk`), since group g's table indexes are computed
from the decoded group g − 1.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy.tables import PRECISION, CodingTables, quantize_pmf

# Largest K_{g−1}·K_g of a conditional table (16 MiB of float32 logits per group).
MAX_CONDITIONAL_ENTRIES = 1 << 22


def check_num_codes(num_codes: tuple[int, ...], conditional: bool) -> None:
    """Raises ValueError for empty groups, alphabets < 1, or oversized conditional tables."""
    if len(num_codes) == 0 or any(int(k) < 1 for k in num_codes):
        raise ValueError(f"num_codes must be a non-empty tuple of ints >= 1, got {num_codes}")
    if conditional:
        for g in range(1, len(num_codes)):
            entries = int(num_codes[g - 1]) * int(num_codes[g])
            if entries > MAX_CONDITIONAL_ENTRIES:
                raise ValueError(
                    f"conditional prior table {num_codes[g - 1]}x{num_codes[g]} for group {g} "
                    f"exceeds 2**22 entries; use conditional=False"
                )


def table_counts(num_codes: tuple[int, ...], conditional: bool) -> list[int]:
    """Tables per group: 1, or K_{g−1} for groups g > 0 of a conditional prior."""
    return [1] + [int(num_codes[g - 1]) if conditional else 1 for g in range(1, len(num_codes))]


def fixed_length_bits(num_codes: tuple[int, ...], positions: int) -> float:
    """Bits of a fixed-length code of `positions` positions: positions·Σ_g log2 K_g."""
    return float(positions) * sum(math.log2(int(k)) for k in num_codes)


class CategoricalPrior(nn.Module):
    """`(indices, bits) = prior(indices, training=...)` with bits = −log2 p per example.

    Attributes:
      num_codes: K_g of each of the G index groups.
      conditional: condition group g > 0 on the code of group g − 1.
    """

    num_codes: tuple[int, ...]
    conditional: bool = False

    def setup(self):
        check_num_codes(self.num_codes, self.conditional)
        logits = []
        for g, k in enumerate(self.num_codes):
            shape = (int(self.num_codes[g - 1]), int(k)) if self.conditional and g else (int(k),)
            logits.append(self.param(f"logits_{g}", nn.initializers.zeros, shape, jnp.float32))
        self.logits = logits

    def log_probs(self, g: int) -> jax.Array:
        """Natural-log probabilities of group g: [K_g], or [K_{g−1}, K_g] when conditional."""
        return jax.nn.log_softmax(self.logits[g], axis=-1)

    def __call__(self, indices: jax.Array, *, training: bool) -> tuple[jax.Array, jax.Array]:
        """indices int [B, ..., G] → (indices, bits float32 [B]).

        The same in training and eval (the indices are already discrete). Indices outside
        [0, K_g) are clipped for the rate (the coder escapes them).
        """
        del training
        indices = jnp.asarray(indices)
        groups = len(self.num_codes)
        if indices.ndim < 2 or indices.shape[-1] != groups:
            raise ValueError(f"expected indices [B, ..., {groups}], got shape {indices.shape}")
        batch = indices.shape[0]
        bits = jnp.zeros((batch,), jnp.float32)
        prev = None
        for g, k in enumerate(self.num_codes):
            i = jnp.clip(indices[..., g].astype(jnp.int32), 0, int(k) - 1)
            log_p = self.log_probs(g)
            log_p = log_p[prev, i] if self.conditional and g else log_p[i]
            bits = bits - log_p.reshape(batch, -1).sum(axis=-1) / math.log(2.0)
            prev = i
        return indices, bits


def build_tables(module: CategoricalPrior, params: dict) -> CodingTables:
    """Integer coding tables of the prior (pure; float64 softmax of the logits).

    Table order: group 0's table, then group 1's (one, or K_0 when conditional, row r for
    previous code r), and so on; see `table_indexes`. Table for group g has offset 0 and
    K_g + 1 bins (the last is the escape).
    """
    num_codes = tuple(int(k) for k in module.num_codes)
    check_num_codes(num_codes, module.conditional)
    width = max(num_codes) + 2
    total = 1 << PRECISION
    cdfs, lengths = [], []
    for g, k in enumerate(num_codes):
        logits = np.asarray(params[f"logits_{g}"], np.float64).reshape(-1, k)
        logits = logits - logits.max(axis=-1, keepdims=True)
        pmf = np.exp(logits)
        pmf /= pmf.sum(axis=-1, keepdims=True)
        length = np.full(pmf.shape[0], k + 1, np.int64)
        cdf = quantize_pmf(pmf, length, PRECISION)
        cdfs.append(np.pad(cdf, ((0, 0), (0, width - cdf.shape[1])), constant_values=total))
        lengths.append(length)
    lengths = np.concatenate(lengths)
    offset = np.zeros(lengths.shape, np.int32)
    return CodingTables(np.concatenate(cdfs), lengths, offset, PRECISION)


def table_indexes(module: CategoricalPrior, indices):
    """int32 table index of every index, shaped like `indices` [..., G].

    Group g's indexes depend only on group g − 1 (when conditional), so a decoder may call this
    with the groups ≥ g still unknown (e.g. zero) and read column g. numpy in, numpy out;
    otherwise jax.
    """
    num_codes = tuple(int(k) for k in module.num_codes)
    check_num_codes(num_codes, module.conditional)
    xp = np if isinstance(indices, np.ndarray) else jnp
    if indices.shape[-1] != len(num_codes):
        raise ValueError(f"expected {len(num_codes)} index groups, got shape {indices.shape}")
    base = np.cumsum([0] + table_counts(num_codes, module.conditional)[:-1])
    columns = []
    for g in range(len(num_codes)):
        col = xp.full(indices.shape[:-1], int(base[g]), xp.int32)
        if module.conditional and g:
            prev = xp.clip(indices[..., g - 1].astype(xp.int32), 0, num_codes[g - 1] - 1)
            col = col + prev
        columns.append(col)
    return xp.stack(columns, axis=-1).astype(xp.int32)
