"""Generalized divisive normalization (GDN) and its approximate inverse (IGDN).

GDN is the nonlinearity of the Ballé et al. transforms (bmshj2018, mbt2018): a per-location
normalization of each channel by a learned, non-negative combination of the squared channels.

References:
  J. Ballé, V. Laparra, E. P. Simoncelli, "Density modeling of images using a generalized
  normalization transformation", ICLR 2016, Sec. 2 (the transformation; its inverse is computed
  there by fixed-point iteration).
  J. Ballé, V. Laparra, E. P. Simoncelli, "End-to-end optimized image compression", ICLR 2017,
  Sec. 2 (the simplified form used here, exponents 2 and 1/2, and IGDN, one step of that
  fixed-point iteration, in the synthesis transform).
  J. Ballé, "Efficient nonlinear transforms for lossy image compression", PCS 2018 (the
  non-negative reparameterization of beta and gamma, as tensorflow-compression and CompressAI's
  ``NonNegativeParametrizer``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from nlq_jax.ops import lower_bound

__all__ = ["GDN", "nonnegative_init", "nonnegative_value"]

# Squared offset added before taking the square root, so that the stored parameter is never
# at the kink of sqrt at 0 (tensorflow-compression's `reparam_offset` = 2**-18).
_REPARAM_OFFSET = 2.0**-18


def nonnegative_init(value: jax.Array, reparam_offset: float = _REPARAM_OFFSET) -> jax.Array:
    """The stored parameter that :func:`nonnegative_value` reads back as ``value``.

    Args:
      value: the desired effective (non-negative) value.
      reparam_offset: square root of the pedestal added before the square root.

    Returns:
      ``sqrt(max(value + pedestal, pedestal))`` with ``pedestal = reparam_offset**2``.
    """
    pedestal = reparam_offset**2
    return jnp.sqrt(jnp.maximum(value + pedestal, pedestal))


def nonnegative_value(
    param: jax.Array, minimum: float = 0.0, reparam_offset: float = _REPARAM_OFFSET
) -> jax.Array:
    """The effective value of a stored parameter, always ``>= minimum``.

    Args:
      param: the stored parameter (any real value).
      minimum: the smallest effective value.
      reparam_offset: square root of the pedestal, as in :func:`nonnegative_init`.

    Returns:
      ``lower_bound(param, sqrt(minimum + pedestal))**2 - pedestal``.
    """
    pedestal = reparam_offset**2
    bound = (minimum + pedestal) ** 0.5
    return jnp.square(lower_bound(param, bound)) - pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Ballé, Laparra, Simoncelli 2016, Sec. 2).

    ``y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j**2)`` per spatial location; with
    ``inverse=True`` (IGDN, Ballé et al. 2017, Sec. 2) ``y_i = x_i * sqrt(...)`` instead. The
    number of channels is the last axis of the input (NHWC, or any ``(..., C)``).

    ``beta`` (shape ``(C,)``) and ``gamma`` (shape ``(C, C)``, ``gamma[i, j]`` weighs input
    channel ``j`` for output channel ``i``, as in CompressAI) are stored reparameterized (see
    :func:`nonnegative_value`), so they stay ``>= beta_min`` and ``>= 0`` whatever an optimizer
    does to them. Initialization: ``beta = 1``, ``gamma = gamma_init * I``.

    Attributes:
      inverse: compute IGDN (multiply by the norm) instead of GDN.
      beta_min: lower bound of the effective ``beta``, keeps the denominator away from 0.
      gamma_init: diagonal of the initial ``gamma``.
      reparam_offset: square root of the pedestal of the reparameterization.
    """

    inverse: bool = False
    beta_min: float = 1e-6
    gamma_init: float = 0.1
    reparam_offset: float = _REPARAM_OFFSET

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Normalizes ``x`` (shape ``(..., C)``); returns the same shape and dtype."""
        channels = x.shape[-1]
        offset = self.reparam_offset
        beta_param = self.param(
            "beta",
            lambda _, shape: nonnegative_init(jnp.ones(shape, jnp.float32), offset),
            (channels,),
        )
        gamma_param = self.param(
            "gamma",
            lambda _, shape: nonnegative_init(
                self.gamma_init * jnp.eye(shape[0], dtype=jnp.float32), offset
            ),
            (channels, channels),
        )
        beta = nonnegative_value(beta_param, self.beta_min, offset)
        gamma = nonnegative_value(gamma_param, 0.0, offset)
        # A 1x1 convolution of x**2 with kernel gamma and bias beta.
        norm = jnp.einsum("...j,ij->...i", jnp.square(x), gamma.astype(x.dtype))
        norm = norm + beta.astype(x.dtype)
        norm = jnp.sqrt(norm)
        return x * norm if self.inverse else x / norm
