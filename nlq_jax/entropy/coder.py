"""Range coding of integer symbols with integer tables (constriction's queue coder).

`encode(symbols, indexes, tables)` codes each symbol with table `indexes[i]`. Symbols that share
a table are coded together as i.i.d. draws of one categorical model, in the order of the
(stable-)sorted table indexes; the decoder knows the indexes (they come from side information
both sides share), so it visits the symbols in the same order. This is 5–10× faster than one
model per symbol (ANCHORS.md) and codes exactly the same information.

Escapes: a symbol outside its table's support is coded as the table's escape bin, and its value
follows after all regular symbols as an Elias-gamma code built from uniform models: first the
bit length n of w + 1 (uniform over 0..31), then the n low bits in chunks of at most 16. Here
w ≥ 0 numbers the out-of-support positions: w = 2·(s − hi − 1) above the support (hi its
largest symbol), w = 2·(lo − s) − 1 below it.

The probabilities given to constriction are integer counts divided by 2**precision, exact in
float64, so encoder and decoder build the identical fixed-point model (DESIGN.md).
"""

from __future__ import annotations

import constriction
import numpy as np

from nlq_jax.entropy.tables import CodingTables
from nlq_jax.errors import FormatError

# Symbols beyond ±MAX_ABS_SYMBOL cannot be coded; a latent that large means a broken model.
MAX_ABS_SYMBOL = 1 << 24
_CHUNK = 16

_Categorical = constriction.stream.model.Categorical
_Uniform = constriction.stream.model.Uniform


class TableCoder:
    """Encodes and decodes int symbols with one `CodingTables`; caches its models."""

    def __init__(self, tables: CodingTables):
        self.tables = tables
        self._models: dict[int, object] = {}
        self._uniform = _Uniform()

    def _model(self, t: int):
        model = self._models.get(t)
        if model is None:
            counts = self.tables.pmf(t).astype(np.float64)
            model = _Categorical(counts / float(1 << self.tables.precision), perfect=False)
            self._models[t] = model
        return model

    def _groups(self, indexes: np.ndarray):
        """Yields (table, positions) in coding order; positions index the flat arrays."""
        flat = np.asarray(indexes, np.int64).reshape(-1)
        if flat.size == 0:
            return
        if flat.min() < 0 or flat.max() >= self.tables.num_tables:
            raise ValueError("table index out of range")
        order = np.argsort(flat, kind="stable")
        sorted_idx = flat[order]
        starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
        ends = np.r_[starts[1:], flat.size]
        for s, e in zip(starts, ends):
            yield int(sorted_idx[s]), order[s:e]

    def encode(self, symbols: np.ndarray, indexes: np.ndarray) -> bytes:
        """Codes `symbols` (int, any shape) with tables `indexes` (same shape) into bytes."""
        encoder = new_encoder()
        self.encode_chunk(encoder, symbols, indexes)
        return finish(encoder)

    def decode(self, data: bytes, indexes: np.ndarray) -> np.ndarray:
        """Inverse of `encode`: the int32 symbols, shaped like `indexes`.

        Raises:
          FormatError: the bytes are not a valid stream for these tables and indexes.
        """
        return self.decode_chunk(new_decoder(data), indexes)

    def encode_chunk(self, encoder, symbols: np.ndarray, indexes: np.ndarray) -> None:
        """Appends one chunk (its regular symbols, then its escapes) to a queue `encoder`.

        A stream may hold several chunks, coded with any `TableCoder`s, as long as the decoder
        calls `decode_chunk` in the same order with the same indexes: this is how context
        models code a latent in steps whose indexes depend on the steps before.
        """
        symbols = np.asarray(symbols).reshape(-1).astype(np.int64)
        indexes = np.asarray(indexes).reshape(-1)
        if symbols.shape != indexes.shape:
            raise ValueError(f"symbols {symbols.shape} and indexes {indexes.shape} differ")
        if symbols.size and np.abs(symbols).max() > MAX_ABS_SYMBOL:
            raise ValueError(f"a symbol exceeds ±{MAX_ABS_SYMBOL}: the latent is out of range")
        escaped = []
        for t, pos in self._groups(indexes):
            length = int(self.tables.length[t])
            bins = symbols[pos] - int(self.tables.offset[t])
            out = (bins < 0) | (bins >= length - 1)
            if out.any():
                hi = length - 2  # largest in-support bin
                esc = bins[out]
                escaped.append(np.where(esc > hi, 2 * (esc - hi - 1), 2 * (-esc) - 1))
                bins = np.where(out, length - 1, bins)
            encoder.encode(bins.astype(np.int32), self._model(t))
        if escaped:
            _encode_escapes(encoder, np.concatenate(escaped) + 1, self._uniform)

    def decode_chunk(self, decoder, indexes: np.ndarray) -> np.ndarray:
        """Reads the chunk `encode_chunk` wrote with these indexes: int32 symbols shaped like
        `indexes`.

        Raises:
          FormatError: the bytes are not a valid stream for these tables and indexes.
        """
        indexes = np.asarray(indexes)
        symbols = np.empty(indexes.size, np.int64)
        escape_pos, escape_lo, escape_hi = [], [], []
        try:
            for t, pos in self._groups(indexes):
                length = int(self.tables.length[t])
                offset = int(self.tables.offset[t])
                bins = np.asarray(decoder.decode(self._model(t), pos.size), np.int64)
                symbols[pos] = bins + offset
                out = bins == length - 1
                if out.any():
                    escape_pos.append(pos[out])
                    escape_lo.append(np.full(out.sum(), offset))
                    escape_hi.append(np.full(out.sum(), offset + length - 2))
            if escape_pos:
                pos = np.concatenate(escape_pos)
                w = _decode_escapes(decoder, pos.size, self._uniform) - 1
                lo, hi = np.concatenate(escape_lo), np.concatenate(escape_hi)
                symbols[pos] = np.where(w % 2 == 0, hi + 1 + w // 2, lo - (w + 1) // 2)
        except (AssertionError, ValueError, RuntimeError, OverflowError) as e:
            raise FormatError(f"corrupted stream ({e})") from None
        if symbols.size and np.abs(symbols).max() > MAX_ABS_SYMBOL:
            raise FormatError("corrupted stream (symbol out of range)")
        return symbols.astype(np.int32).reshape(indexes.shape)


def new_encoder():
    """An empty queue (range) encoder for `TableCoder.encode_chunk`."""
    return constriction.stream.queue.RangeEncoder()


def finish(encoder) -> bytes:
    """The bytes of everything encoded so far."""
    return encoder.get_compressed().tobytes()


def new_decoder(data: bytes):
    """A queue (range) decoder over `data`, for `TableCoder.decode_chunk`.

    Raises:
      FormatError: `data` cannot be a stream (not a whole number of 32-bit words).
    """
    if len(data) % 4:
        raise FormatError("corrupted stream (length is not a whole number of words)")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(data, dtype=np.uint32))


def _encode_escapes(encoder, values: np.ndarray, uniform) -> None:
    """Elias-gamma codes positive ints: bit lengths first, then the low bits in chunks."""
    nbits = np.floor(np.log2(values.astype(np.float64))).astype(np.int64)
    encoder.encode(nbits.astype(np.int32), uniform, np.full(values.size, 32, np.int32))
    rest = values - (np.int64(1) << nbits)
    syms, sizes = _chunks(nbits, rest)
    if syms.size:
        encoder.encode(syms, uniform, sizes)


def _decode_escapes(decoder, count: int, uniform) -> np.ndarray:
    nbits = np.asarray(decoder.decode(uniform, np.full(count, 32, np.int32)), np.int64)
    if nbits.max() > 25:  # |symbol| <= 2**24 never needs more
        raise ValueError("escape value out of range")
    _, sizes = _chunks(nbits, np.zeros(count, np.int64))
    chunks = np.asarray(decoder.decode(uniform, sizes), np.int64) if sizes.size else None
    rest = np.zeros(count, np.int64)
    k = 0
    for i, n in enumerate(nbits):
        shift = 0
        while shift < n:
            width = min(_CHUNK, n - shift)
            rest[i] |= chunks[k] << shift
            shift += width
            k += 1
    return (np.int64(1) << nbits) + rest


def _chunks(nbits: np.ndarray, rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Splits each `rest[i]` (nbits[i] wide) into ≤16-bit chunks, low first; width-0 skipped.

    Uniform models need at least 2 symbols, so a chunk of width w uses size 2**w with w ≥ 1.
    """
    syms, sizes = [], []
    for n, r in zip(nbits.tolist(), rest.tolist()):
        shift = 0
        while shift < n:
            width = min(_CHUNK, n - shift)
            syms.append((r >> shift) & ((1 << width) - 1))
            sizes.append(1 << width)
            shift += width
    return np.asarray(syms, np.int32), np.asarray(sizes, np.int32)
