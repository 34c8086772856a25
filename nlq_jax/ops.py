"""Small numerical ops shared across layers and entropy models."""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_vjp
def lower_bound(x: jax.Array, bound: jax.Array | float) -> jax.Array:
    """``max(x, bound)`` whose gradient still flows where it would lift ``x`` above the bound.

    A plain ``max`` has zero gradient below the bound, so a parameter pushed below it could
    never recover. Here the gradient passes where ``x >= bound`` or where a descent step
    increases ``x`` (negative incoming gradient), as in tensorflow-compression and CompressAI's
    ``LowerBound``.

    Args:
      x: values to bound.
      bound: the lower bound (a scalar or broadcastable to ``x``).

    Returns:
      ``max(x, bound)``.
    """
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
    return jnp.maximum(x, bound), (x, bound)


def _lower_bound_bwd(residuals, g):
    x, bound = residuals
    pass_through = (x >= bound) | (g < 0)
    return jnp.where(pass_through, g, jnp.zeros_like(g)), jnp.zeros_like(jnp.asarray(bound))


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def std_normal_cdf(x: jax.Array) -> jax.Array:
    """Φ(x) computed as erfc(−x/√2)/2, accurate in the lower tail."""
    return 0.5 * jax.scipy.special.erfc(-x * (2.0**-0.5))
