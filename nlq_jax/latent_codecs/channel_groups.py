"""Channel groups: y split along channels into groups coded in sequence, each conditioned on
what conditions y and on the groups decoded before it (Minnen, Singh, "Channel-wise
autoregressive entropy models for learned image compression", ICIP 2020; He et al.'s uneven
groups in ELIC, CVPR 2022).

```
for k = 0 … G−1:   cond_k = context(k, cond, ŷ_<k)          (e.g. cc_k([ψ, ŷ_<k]))
                   ŷ_k = codec_k(y_k | cond_k)                (Gaussian, checkerboard, ...)
                   ŷ_k = context.refine(k, cond, ŷ_<k, ŷ_k)   (latent residual prediction)
ŷ = concat(ŷ_k)
```
The group sizes may be uneven. One stream: each group's codec writes its chunks into one range
coder in order (`encode_into`). The bits are summed under the stream's key.

The `context` module is the model's: it implements `__call__(k, cond, y_hat_prev)` → cond_k
and `refine(k, cond, y_hat_prev, y_hat_k)` → ŷ_k (the identity where there is no LRP).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.latent_codecs.base import Context, StreamCodec


class ChannelGroupsCodec(StreamCodec):
    """y in channel groups of `groups` sizes, group k coded by `codecs[k]` given
    `context(k, cond, ŷ_<k)`.

    Attributes:
      groups: the channels of each group, in order (their sum is y's channels).
      context: the groups' conditioning module (see the module docstring).
      codecs: one stream codec per group (sharing the stream).
      key: the latent's and the stream's name.
    """

    groups: tuple[int, ...]
    context: nn.Module
    codecs: tuple[StreamCodec, ...]
    key: str = "y"

    def _split(self, y):
        bounds = np.cumsum(self.groups)[:-1]
        if isinstance(y, np.ndarray):
            return np.split(y, bounds, axis=-1)
        return jnp.split(y, bounds, axis=-1)

    def __call__(self, y: jax.Array, cond: Any = None, *, training: bool):
        if sum(self.groups) != y.shape[-1]:
            raise ValueError(f"groups {self.groups} do not add up to {y.shape[-1]} channels")
        done: tuple[jax.Array, ...] = ()
        bits = jnp.zeros(y.shape[:1], jnp.float32)
        for k, y_k in enumerate(self._split(y)):
            y_hat_k, bits_k = self.codecs[k](y_k, self.context(k, cond, done), training=training)
            bits += sum(bits_k.values())
            done += (self.context.refine(k, cond, done, y_hat_k),)
        return jnp.concatenate(done, axis=-1), {self.key: bits}

    # The bitstream path's jitted pieces.
    def group_step(self, k: int, cond: Any, done: tuple, last: jax.Array | None):
        """Finishes group k − 1 (`last`, its dequantized symbols: refined) and conditions group
        k: (group k − 1 finished or None, cond_k, or what group k's codec prepares of it)."""
        finished = None
        if last is not None:
            finished = self.context.refine(k - 1, cond, done, last)
            done = (*done, finished)
        cond_k = self.context(k, cond, done)
        if self.codecs[k].prepares:
            return finished, self.codecs[k].prepare(cond_k)
        return finished, cond_k

    def finish(self, cond: Any, done: tuple, last: jax.Array) -> jax.Array:
        """The last group refined, and every group concatenated: ŷ."""
        last = self.context.refine(len(done), cond, done, last)
        return jnp.concatenate([*done, last], axis=-1)

    @nn.nowrap
    def tables(self) -> dict:
        out: dict = {}
        for codec in self.codecs:
            out.update(codec.tables())
        return out

    @nn.nowrap
    def _run(self, ctx: Context, cond: Any, code_group) -> np.ndarray:
        done: tuple = ()
        last = None
        for k in range(len(self.groups)):
            finished, cond_k = ctx.call_static("group_step", (k,), cond, done, last)
            if finished is not None:
                done += (finished,)
            sub = ctx.child("codecs", k)
            if self.codecs[k].prepares:  # the step computed what the codec needs of cond_k
                last = code_group(k, sub, None, cond_k)
            else:
                last = code_group(k, sub, cond_k, None)
        return ctx.call("finish", cond, done, last)

    @nn.nowrap
    def encode_into(self, ctx: Context, encoder, y, cond=None, prepared=None) -> np.ndarray:
        parts = self._split(np.asarray(y))

        def code_group(k, sub, cond_k, prepared):
            return self.codecs[k].encode_into(sub, encoder, parts[k], cond_k, prepared)

        return self._run(ctx, cond, code_group)

    @nn.nowrap
    def decode_from(self, ctx: Context, decoder, shape, cond=None, prepared=None):
        def code_group(k, sub, cond_k, prepared):
            shape_k = (*shape[:-1], self.groups[k])
            return self.codecs[k].decode_from(sub, decoder, shape_k, cond_k, prepared)

        return self._run(ctx, cond, code_group)
