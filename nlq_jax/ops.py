"""Small numerical ops shared across layers and entropy models."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def lower_bound(x: jax.Array, bound: float) -> jax.Array:
    """max(x, bound), whose gradient still flows where it would push x back up.

    A plain maximum has zero gradient below the bound, so a parameter or likelihood that falls
    under it could never recover. As tensorflow-compression's `lower_bound` (Ballé et al. 2018,
    "Variational image compression with a scale hyperprior", sec. 6.1), the gradient passes
    where x >= bound or where gradient descent would increase x (a negative cotangent).
    """
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x, bound):
    return jnp.maximum(x, bound), x


def _lower_bound_bwd(bound, x, g):
    return (jnp.where((x >= bound) | (g < 0), g, jnp.zeros_like(g)),)


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


def std_normal_cdf(x: jax.Array) -> jax.Array:
    """Φ(x) computed as erfc(−x/√2)/2, accurate in the lower tail."""
    return 0.5 * jax.scipy.special.erfc(-x * (2.0**-0.5))
