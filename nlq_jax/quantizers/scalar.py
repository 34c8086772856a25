"""Scalar quantization of a continuous latent: one function, four modes.

| mode         | returns                                  | used for                              |
| ------------ | ---------------------------------------- | ------------------------------------- |
| "noise"      | x + u,  u ~ U(-1/2, 1/2)                 | training: a differentiable proxy whose|
|              |                                          | density bounds the rate (Ballé 2017)  |
| "round"      | round(x − offset) + offset               | evaluation: the value the decoder sees|
| "ste"        | "round" forward, identity gradient       | training the synthesis on true values |
|              |                                          | (Minnen & Singh 2020, sec. 2)         |
| "symbols"    | round(x − offset) as int32               | what the entropy coder codes          |
| "dequantize" | symbols + offset                         | decoding: symbols back to values      |

`offset` is where the quantization grid is centred: the median of a factorized prior's
density (CompressAI and tensorflow-compression quantize around it) or the predicted mean of a
Gaussian conditional (Minnen et al. 2018, sec. 3). Rounding is half-to-even (jnp.round),
identical on encoder and decoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

MODES = ("noise", "round", "ste", "symbols", "dequantize")


def quantize(
    x: jax.Array,
    mode: str,
    offset: jax.Array | float | None = None,
    rng: jax.Array | None = None,
) -> jax.Array:
    """Quantizes `x` (or dequantizes symbols) according to `mode`; see the module table.

    Args:
      x: the latent (float), or int symbols for mode "dequantize".
      mode: one of "noise", "round", "ste", "symbols", "dequantize".
      offset: broadcastable to `x`; the grid centre. None means 0. Ignored by "noise", whose
        additive noise is centre-free.
      rng: PRNG key, required by "noise".

    Returns:
      An array shaped like `x`: float, or int32 for "symbols".
    """
    if mode == "noise":
        if rng is None:
            raise ValueError('quantize(mode="noise") needs an rng key')
        return x + jax.random.uniform(rng, x.shape, x.dtype, -0.5, 0.5)
    off = 0.0 if offset is None else offset
    if mode == "dequantize":
        return x.astype(jnp.float32) + off
    if mode == "symbols":
        return jnp.round(x - off).astype(jnp.int32)
    rounded = jnp.round(x - off) + off
    if mode == "round":
        return rounded
    if mode == "ste":
        # Exactly the rounded value forward, the identity backward.
        return rounded + (x - jax.lax.stop_gradient(x))
    raise ValueError(f"unknown quantization mode {mode!r}; expected one of {MODES}")
