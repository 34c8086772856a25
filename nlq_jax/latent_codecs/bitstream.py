"""What every model's bitstream path shares: a model bound to its variables and tables.

The bitstream path of a model (its module's `compress` / `decompress`) runs the networks
through a `Runner`, which jit-compiles each method once per input shape (or runs it eagerly,
`jit=False`, for the determinism tests). Encoder and decoder call the *same* compiled functions
on the same inputs for everything that decides how a symbol is coded (table indexes, means,
medians), so they agree bit for bit on the same machine.

Bounded decoding: a file is hostile until checked, and its header alone decides how much a
decoder allocates (the range decoder yields symbols from a short or even empty stream, so a
file of a few dozen bytes can declare 2048² pixels). Each model module therefore also exports
`stream_specs(model, height, width)`, what each of its streams must be for a (padded) image
size, and `decode_memory(model, height, width)`, an upper bound on the bytes its `decompress`
allocates; `check_streams` and the codec's memory budget use them before anything is decoded.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import numpy as np

from nlq_jax.entropy.coder import TableCoder
from nlq_jax.errors import FormatError

# A range-coded symbol costs at most the tables' precision (24 bits) plus an escape (a 5-bit
# length and at most 25 bits of value, `nlq_jax.entropy.coder`): 64 bits bound any real stream.
MAX_BITS_PER_SYMBOL = 64
# The range coder writes whole 32-bit words, at least one once a symbol is coded, and at most
# two more than the bits of its symbols when it is finished.
WORD_BYTES = 4
# What `decode_memory` adds to every model's shape-dependent terms: compiling the decoder's
# functions (XLA:CPU, ≈100 MB measured) and the host-side copies of small latents.
DECODE_OVERHEAD_BYTES = 192 << 20


class Runner:
    """A model with its variables and coding tables; `runner.call(method, *args)`."""

    def __init__(self, model: nn.Module, variables: dict, tables: dict, *, jit: bool = True):
        self.model = model
        self.variables = variables
        self.tables = tables
        self.jit = jit
        self._fns: dict = {}
        self._coders: dict[str, TableCoder] = {}
        self._bound: nn.Module | None = None

    @property
    def bound(self) -> nn.Module:
        """The model bound to its variables (for its latent codecs' host-side methods)."""
        if self._bound is None:
            self._bound = self.model.bind(self.variables)
        return self._bound

    def coder(self, name: str) -> TableCoder:
        """The (cached) range coder of `tables[name]`."""
        c = self._coders.get(name)
        if c is None:
            c = self._coders[name] = TableCoder(self.tables[name])
        return c

    def fn(self, method: str) -> Callable:
        f = self._fns.get(method)
        if f is None:
            f = functools.partial(self.model.apply, method=method)
            if self.jit:
                f = jax.jit(f)
            self._fns[method] = f
        return f

    def call(self, method: str, *args):
        """Applies `model.<method>(*args)`; returns numpy arrays (a pytree of them)."""
        out = self.fn(method)(self.variables, *args)
        return jax.tree_util.tree_map(np.asarray, out)

    def call_at(self, path: tuple, method: str, *args, static: tuple = ()):
        """Applies `<submodule at path>.<method>(*static, *args)` (`resolve`); numpy out.

        Compiled once per (path, method, static values) and input shape."""
        key = (path, method, static)
        f = self._fns.get(key)
        if f is None:

            def apply(module, *a):
                return getattr(resolve(module, path), method)(*static, *a)

            f = functools.partial(self.model.apply, method=apply)
            if self.jit:
                f = jax.jit(f)
            self._fns[key] = f
        out = f(self.variables, *args)
        return jax.tree_util.tree_map(np.asarray, out)


def resolve(module: nn.Module, path: tuple) -> nn.Module:
    """The submodule of a bound `module` at `path`: attribute names, or (name, index) for the
    index-th element of a sequence attribute."""
    for part in path:
        if isinstance(part, tuple):
            module = getattr(module, part[0])[part[1]]
        else:
            module = getattr(module, part)
    return module


def symbols(y: np.ndarray, offset: np.ndarray | float) -> np.ndarray:
    """round(y − offset) in float32 (half to even, as `quantize(..., "symbols")`), as int32."""
    return np.round(np.asarray(y, np.float32) - np.asarray(offset, np.float32)).astype(np.int32)


def dequantize(sym: np.ndarray, offset: np.ndarray | float) -> np.ndarray:
    """symbols + offset in float32 (as `quantize(..., "dequantize")`)."""
    return np.asarray(sym, np.float32) + np.asarray(offset, np.float32)


def channel_indexes(shape: tuple[int, ...]) -> np.ndarray:
    """Table index = channel (last axis), for latents coded with one table per channel."""
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)


@dataclasses.dataclass(frozen=True)
class StreamSpec:
    """What one stream of a .nlq file must be, for a given model and (padded) image size.

    Attributes:
      name: the stream's name, for messages ("z", "y", "indices", ...).
      symbols: the most symbols it codes (at least 1, so a real stream holds at least a word).
      prefix: plain bytes before the range-coded words (an RVQ stream's stage count).
      optional: the stream may be absent (only trailing streams: a file has the required
        streams, then any number of the optional ones, in order).
      raw: not range coded: any length from 1 to `symbols` bytes (e.g. a region-of-interest
        map), with no word alignment.
    """

    name: str
    symbols: int
    prefix: int = 0
    optional: bool = False
    raw: bool = False

    @property
    def max_bytes(self) -> int:
        """The longest stream these symbols can make, prefix included."""
        if self.raw:
            return self.prefix + self.symbols
        words = -(-self.symbols * MAX_BITS_PER_SYMBOL // (8 * WORD_BYTES)) + 2
        return self.prefix + WORD_BYTES * words

    @property
    def min_bytes(self) -> int:
        """The shortest: the prefix and one word (one byte for a raw stream)."""
        return self.prefix + (1 if self.raw else WORD_BYTES)


def check_streams(specs: Sequence[StreamSpec], streams: Sequence[bytes]) -> None:
    """Refuses streams that no encoder of this model could have written for this image size.

    Cheap (lengths only): it runs before anything is allocated for the image.

    Args:
      specs: the model's `stream_specs` for the file's (padded) image size.
      streams: the file's streams.

    Raises:
      FormatError: the number of streams is not one this model writes, or a stream's length is
        not a whole number of words, shorter than one word, or longer than its symbols can need.
    """
    required = sum(1 for s in specs if not s.optional)
    if not required <= len(streams) <= len(specs):
        names = ", ".join(s.name + (" (optional)" if s.optional else "") for s in specs)
        count = str(required) if required == len(specs) else f"{required}..{len(specs)}"
        raise FormatError(
            f"corrupted file: {len(streams)} stream(s), this model writes {count} ({names})"
        )
    for spec, stream in zip(specs, streams):
        n = len(stream)
        aligned = spec.raw or (n - spec.prefix) % WORD_BYTES == 0
        if n < spec.min_bytes or n > spec.max_bytes or not aligned:
            if spec.raw:
                raise FormatError(
                    f"corrupted stream {spec.name!r}: {n} bytes, not in "
                    f"{spec.min_bytes}..{spec.max_bytes}"
                )
            raise FormatError(
                f"corrupted stream {spec.name!r}: {n} bytes, where {spec.symbols} symbols need "
                f"{spec.min_bytes}..{spec.max_bytes} bytes in whole {WORD_BYTES}-byte words"
                + (f" after {spec.prefix} byte(s)" if spec.prefix else "")
            )


def synthesis_memory(height: int, width: int, bytes_per_pixel: float, latent_bytes: int = 0) -> int:
    """`decode_memory`'s common form: an overhead, a term per pixel of the (padded) image, and
    the latents' host copies.

    Args:
      height, width: the padded image size.
      bytes_per_pixel: what the synthesis transform holds per output pixel at its peak (its
        largest feature maps, measured; see each model's `decode_memory`).
      latent_bytes: the decoder's own arrays of latents, symbols, table indexes and means.

    Returns:
      The bound in bytes, `DECODE_OVERHEAD_BYTES` included.
    """
    return int(DECODE_OVERHEAD_BYTES + height * width * bytes_per_pixel + latent_bytes)


def coding_bytes(specs: Sequence[StreamSpec], bytes_per_symbol: int = 64) -> int:
    """The decoder's host arrays for the symbols of `specs`: the symbols, their table indexes
    and means, the coder's sort order and the dequantized latent (≈64 bytes per symbol)."""
    return bytes_per_symbol * sum(spec.symbols for spec in specs)
