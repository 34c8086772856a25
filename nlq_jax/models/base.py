"""What every model's bitstream path shares: a model bound to its variables and tables.

The bitstream path of a model (its module's `compress` / `decompress`) runs the networks
through a `Runner`, which jit-compiles each method once per input shape (or runs it eagerly,
`jit=False`, for the determinism tests). Encoder and decoder call the *same* compiled functions
on the same inputs for everything that decides how a symbol is coded (table indexes, means,
medians), so they agree bit for bit on the same machine.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import numpy as np

from nlq_jax.entropy.coder import TableCoder


class Runner:
    """A model with its variables and coding tables; `runner.call(method, *args)`."""

    def __init__(self, model: nn.Module, variables: dict, tables: dict, *, jit: bool = True):
        self.model = model
        self.variables = variables
        self.tables = tables
        self.jit = jit
        self._fns: dict[str, Callable] = {}
        self._coders: dict[str, TableCoder] = {}

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


def symbols(y: np.ndarray, offset: np.ndarray | float) -> np.ndarray:
    """round(y − offset) in float32 (half to even, as `quantize(..., "symbols")`), as int32."""
    return np.round(np.asarray(y, np.float32) - np.asarray(offset, np.float32)).astype(np.int32)


def dequantize(sym: np.ndarray, offset: np.ndarray | float) -> np.ndarray:
    """symbols + offset in float32 (as `quantize(..., "dequantize")`)."""
    return np.asarray(sym, np.float32) + np.asarray(offset, np.float32)


def channel_indexes(shape: tuple[int, ...]) -> np.ndarray:
    """Table index = channel (last axis), for latents coded with one table per channel."""
    return np.broadcast_to(np.arange(shape[-1], dtype=np.int32), shape)
