"""The latent-codec contract: a part of a model that turns a latent into its quantized value,
its bits (training, evaluation) and its streams (the bitstream path).

A model is its transforms plus a tree of latent codecs (`nlq_jax.models.composed`): the
hyperprior is a codec whose side information is another codec and whose latent is coded by a
third, conditioned on what the side information predicts. Every codec has the same four faces:

```
y_hat, bits = codec(y, cond, training=...)         # jittable forward: bits {key: [B]}
streams, y_hat = codec.compress(ctx, y, cond)       # host: one image [1, ...] → its streams
y_hat = codec.decompress(ctx, streams, shapes, cond)  # host: the same y_hat, bit for bit
specs = codec.stream_specs(shapes)                  # what each stream may be (bounded decoding)
tables = codec.tables()                             # its coding tables, from its parameters
```
`cond` is what conditions the codec (None at the root; the hyperprior's ψ for the codec of y;
a channel group's parameters). `shapes` maps each coded latent's key ("y", "z", ...) to its
shape for an input size, from the model's own `shapes` pass (`jax.eval_shape`), so no codec
hard-codes a down-sampling factor.

The forward in eval mode computes exactly what the decoder computes: `compress` and
`decompress` call the codec's own jitted methods through a `Context` (one compiled function per
method and input shape, the same one on both sides), so encoder and decoder agree bit for bit.

Codecs that share one range coder with their siblings (the groups of a channel-groups codec,
the two steps of a checkerboard) also implement `encode_into(ctx, encoder, y, cond)` and
`decode_from(ctx, decoder, shape, cond)`; `StreamCodec` derives a one-stream `compress` /
`decompress` from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from nlq_jax.entropy import coder as range_coder
from nlq_jax.latent_codecs.bitstream import Runner, StreamSpec

Shapes = dict[str, tuple[int, ...]]


class Context:
    """A codec's handle on the bound model while coding: jitted calls of the codec's methods.

    Attributes:
      runner: the model bound to its variables and coding tables.
      path: the attribute names from the model to this codec (("entropy", "latent"); an
        element (name, i) is the i-th of a sequence attribute).
    """

    def __init__(self, runner: Runner, path: tuple):
        self.runner = runner
        self.path = path

    def child(self, name: str, index: int | None = None) -> Context:
        """The context of the sub-codec at attribute `name` (its `index`-th if a sequence)."""
        return Context(self.runner, (*self.path, name if index is None else (name, index)))

    def call(self, method: str, *args: Any) -> Any:
        """`<this codec>.<method>(*args)` through the model's variables, jitted (numpy out)."""
        return self.runner.call_at(self.path, method, *args)

    def call_static(self, method: str, static: tuple, *args: Any) -> Any:
        """`<this codec>.<method>(*static, *args)`, compiled once per value of `static`."""
        return self.runner.call_at(self.path, method, *args, static=static)

    def coder(self, key: str) -> range_coder.TableCoder:
        """The range coder of the coding table `key`."""
        return self.runner.coder(key)

    @property
    def tables(self) -> dict:
        return self.runner.tables


class LatentCodec(nn.Module):
    """The base of every latent codec (see the module docstring for the contract)."""

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        raise NotImplementedError

    def latents(self, y: jax.Array) -> dict[str, jax.Array]:
        """{key: latent} of every latent this codec codes, given its input (traced under
        `jax.eval_shape` for their shapes: nothing is computed)."""
        raise NotImplementedError

    @nn.nowrap
    def stream_specs(self, shapes: Shapes) -> list[StreamSpec]:
        raise NotImplementedError

    @nn.nowrap
    def tables(self) -> dict:
        """Coding tables, a pure function of the parameters (called on a bound codec)."""
        return {}

    @nn.nowrap
    def compress(
        self, ctx: Context, y: np.ndarray, cond: Any = None, **options: Any
    ) -> tuple[list[bytes], np.ndarray]:
        raise NotImplementedError

    @nn.nowrap
    def decompress(
        self, ctx: Context, streams: Sequence[bytes], shapes: Shapes, cond: Any = None
    ) -> np.ndarray:
        raise NotImplementedError

    @nn.nowrap
    def supports(self, option: str) -> bool:
        """Whether `compress` takes the coding option `option` (e.g. "roi")."""
        return False


class StreamCodec(LatentCodec):
    """A codec of one range-coded stream, built on its chunk-level `encode_into`/`decode_from`
    (so a parent can also put several such codecs into one stream).

    Subclasses set `key` (the stream's and the latent's name) and implement `encode_into`,
    `decode_from` and `num_symbols`. A codec whose coding needs only a function of `cond` (a
    Gaussian's table indexes and means) sets `prepares = True` and implements it as the
    jittable `prepare(cond)`; its `encode_into`/`decode_from` then take `prepared=` in place
    of computing it, so a parent computes it in its own jitted step (one call less per group).
    """

    prepares = False

    @nn.nowrap
    def encode_into(
        self, ctx: Context, encoder, y: np.ndarray, cond: Any = None, prepared: Any = None
    ) -> np.ndarray:
        raise NotImplementedError

    @nn.nowrap
    def decode_from(
        self, ctx: Context, decoder, shape: tuple[int, ...], cond: Any = None, prepared: Any = None
    ):
        raise NotImplementedError

    def latents(self, y: jax.Array) -> dict[str, jax.Array]:
        return {self.key: y}

    @nn.nowrap
    def stream_specs(self, shapes: Shapes) -> list[StreamSpec]:
        return [StreamSpec(self.key, int(np.prod(shapes[self.key])))]

    @nn.nowrap
    def compress(self, ctx, y, cond=None, **options):
        if options:
            raise ValueError(f"{type(self).__name__} has no coding options {sorted(options)}")
        encoder = range_coder.new_encoder()
        y_hat = self.encode_into(ctx, encoder, y, cond)
        return [range_coder.finish(encoder)], y_hat

    @nn.nowrap
    def decompress(self, ctx, streams, shapes, cond=None):
        decoder = range_coder.new_decoder(streams[0])
        return self.decode_from(ctx, decoder, shapes[self.key], cond)
