"""Integer coding tables: the only thing the arithmetic coder ever sees of a probability model.

A `CodingTables` holds T discrete distributions over contiguous integer supports. Table t
covers the symbols `offset[t] ... offset[t] + length[t] - 2` with bins `0 ... length[t] - 2`;
its last bin (`length[t] - 1`) is the *escape*: it stands for every symbol outside the support,
whose value is then coded separately (see `coder.py`). Bin probabilities are integer counts
`cdf[t, i+1] - cdf[t, i]` summing to `2**precision`, every bin at least 1, so every symbol is
codable.

Tables are data: they are made once from a model's parameters by a pure function, saved with
the checkpoint, and both the encoder and the decoder read the same integers. Floats computed
from the parameters (the pmf) only decide the tables, never how a symbol is decoded.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

# The range coder (constriction's default) works with 24-bit probabilities, so 24-bit counts
# keep the long tails of wide Gaussians cheap (16-bit tables would force each tail bin to at
# least 2**-16 of the mass).
PRECISION = 24
# Tables longer than this are truncated; the rest of the mass goes to the escape bin.
MAX_LENGTH = 1 << 14


@dataclasses.dataclass(frozen=True)
class CodingTables:
    """T integer CDF tables, one per table index: an immutable pytree (arrays are its leaves,
    `precision` is static), so it travels with parameters through jax.tree_util and Orbax.

    Attributes:
      cdf: int32 [T, L_max + 1]; cdf[t, 0] = 0, non-decreasing, cdf[t, length[t]] =
        2**precision, and padded with 2**precision after that.
      length: int32 [T]; bins per table including the escape bin (at least 2).
      offset: int32 [T]; the symbol value of bin 0.
      precision: bits of the integer probabilities.
    """

    cdf: np.ndarray
    length: np.ndarray
    offset: np.ndarray
    precision: int = PRECISION

    def __post_init__(self):
        for name in ("cdf", "length", "offset"):
            arr = np.asarray(getattr(self, name), dtype=np.int32)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @property
    def num_tables(self) -> int:
        return int(self.length.shape[0])

    def pmf(self, t: int) -> np.ndarray:
        """Integer counts of table t's bins, escape last (sums to 2**precision)."""
        return np.diff(self.cdf[t, : self.length[t] + 1]).astype(np.int64)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """A plain dict of arrays, for checkpoints."""
        return {
            "cdf": np.asarray(self.cdf),
            "length": np.asarray(self.length),
            "offset": np.asarray(self.offset),
            "precision": np.asarray(self.precision, np.int32),
        }

    @classmethod
    def from_arrays(cls, arrays: dict) -> CodingTables:
        """Inverse of `to_arrays`."""
        return cls(
            cdf=np.asarray(arrays["cdf"]),
            length=np.asarray(arrays["length"]),
            offset=np.asarray(arrays["offset"]),
            precision=int(np.asarray(arrays["precision"])),
        )


jax.tree_util.register_dataclass(
    CodingTables, data_fields=["cdf", "length", "offset"], meta_fields=["precision"]
)


def quantize_pmf(pmf: np.ndarray, lengths: np.ndarray, precision: int = PRECISION) -> np.ndarray:
    """Turns float pmfs into integer CDFs, with the escape bin getting the missing mass.

    Args:
      pmf: float [T, L] probabilities of the in-support bins (row t uses its first
        `lengths[t] - 1` entries; the rest is ignored).
      lengths: int [T], bins per table including the escape bin.
      precision: the counts sum to 2**precision.

    Returns:
      int32 cdf [T, max(lengths) + 1] (see `CodingTables`).
    """
    pmf = np.asarray(pmf, np.float64)
    lengths = np.asarray(lengths, np.int64)
    num, width = pmf.shape[0], int(lengths.max())
    total = 1 << precision
    cdf = np.full((num, width + 1), total, np.int64)
    for t in range(num):
        n = int(lengths[t])
        p = np.nan_to_num(pmf[t, : n - 1], nan=0.0, posinf=0.0, neginf=0.0).clip(0.0, 1.0)
        escape = max(0.0, 1.0 - p.sum())
        p = np.append(p, escape)
        p = p / p.sum() if p.sum() > 0 else np.full(n, 1.0 / n)
        # Largest-remainder rounding over the mass left after one count per bin: every bin
        # gets at least 1 and is within 2 counts of its share, and the sum is exact.
        free = total - n
        share = p * free
        counts = 1 + np.floor(share).astype(np.int64)
        short = total - int(counts.sum())
        if short > 0:
            counts[np.argsort(-(share - np.floor(share)), kind="stable")[:short]] += 1
        cdf[t, 0] = 0
        cdf[t, 1 : n + 1] = np.cumsum(counts)
    return cdf.astype(np.int32)


def gaussian_tables(
    scale_table: np.ndarray, tail_mass: float = 1e-9, precision: int = PRECISION
) -> CodingTables:
    """Tables of zero-mean Gaussians convolved with U(−½, ½), one per scale.

    Bin k (symbol value k) has mass Φ((k + ½)/σ) − Φ((k − ½)/σ) in float64; the support is
    the symmetric range holding all but `tail_mass` of it (at least −1 ... 1). `precision`
    bits per probability: every bin gets at least 2^-precision (CompressAI uses 16, which on
    an over-confident model makes tail symbols cheaper than the model says).
    """
    from scipy.special import ndtr, ndtri

    scale_table = np.asarray(scale_table, np.float64)
    multiplier = -ndtri(tail_mass / 2)
    half = np.maximum(1, np.ceil(scale_table * multiplier)).astype(np.int64)
    half = np.minimum(half, (MAX_LENGTH - 2) // 2)
    lengths = 2 * half + 2  # bins -half..half, plus escape
    pmf = np.zeros((len(scale_table), int(lengths.max()) - 1))
    for t, (s, h) in enumerate(zip(scale_table, half)):
        k = np.arange(-h, h + 1, dtype=np.float64)
        pmf[t, : 2 * h + 1] = ndtr((k + 0.5) / s) - ndtr((k - 0.5) / s)
    cdf = quantize_pmf(pmf, lengths, precision)
    return CodingTables(cdf=cdf, length=lengths, offset=-half, precision=precision)
