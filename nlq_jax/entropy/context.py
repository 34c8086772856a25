"""Spatial context for autoregressive entropy models: masked convolutions and decoding order.

Minnen, Ballé, Toderici, "Joint autoregressive and hierarchical priors for learned image
compression", NeurIPS 2018, sec. 3: a 5×5 convolution masked so that each latent position sees
only positions decoded before it in raster order (PixelCNN's mask "A": the rows above, and the
positions to the left in its own row).

Decoding such a model one position at a time is what makes it slow (CompressAI's mbt2018 runs a
Python loop over pixels). `wavefront_schedule` groups the positions into wavefronts t = 3·i + j:
with a 5×5 mask every causal neighbour (i − a, j + b), a ≥ 1, |b| ≤ 2, or (i, j − b), b ≥ 1, has
a smaller t, and no two positions of one wavefront see each other, so each wavefront is decoded
in one step from the ones before it — about 3·h + w steps instead of h·w.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np


def causal_taps(kernel_size: int = 5) -> np.ndarray:
    """The (di, dj) offsets a mask-"A" kernel sees, in kernel (raster) order: int [K, 2]."""
    r = kernel_size // 2
    return np.array(
        [(di, dj) for di in range(-r, 1) for dj in range(-r, r + 1) if di < 0 or dj < 0],
        np.int64,
    )


def causal_mask(kernel_size: int = 5) -> np.ndarray:
    """float32 [k, k, 1, 1]: 1 where `causal_taps` are, 0 elsewhere (the centre included)."""
    r = kernel_size // 2
    mask = np.zeros((kernel_size, kernel_size, 1, 1), np.float32)
    for di, dj in causal_taps(kernel_size):
        mask[r + di, r + dj] = 1.0
    return mask


class MaskedConv(nn.Module):
    """A k×k "same" convolution whose kernel is zero outside `causal_taps` (mask "A").

    `__call__` is the parallel form (training: every position at once from a known ŷ);
    `tap_matrix` is the same weights as one [K·C_in, C_out] matrix, for decoding a few
    positions from their gathered neighbours.

    Attributes:
      in_features: input channels.
      features: output channels.
      kernel_size: k (odd).
    """

    in_features: int
    features: int
    kernel_size: int = 5

    def setup(self):
        k = self.kernel_size
        shape = (k, k, self.in_features, self.features)
        self.kernel = self.param("kernel", nn.initializers.lecun_normal(), shape)
        self.bias = self.param("bias", nn.initializers.zeros, (self.features,))

    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, h, w, in_features] → [B, h, w, features]."""
        kernel = self.kernel * causal_mask(self.kernel_size)
        y = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + self.bias

    def tap_matrix(self) -> tuple[jax.Array, jax.Array]:
        """(weights [K·in_features, features] in `causal_taps` order, bias [features])."""
        r = self.kernel_size // 2
        taps = causal_taps(self.kernel_size)
        w = self.kernel[r + taps[:, 0], r + taps[:, 1]]  # [K, C_in, C_out]
        return w.reshape(-1, self.features), self.bias


def entropy_parameters(M: int) -> nn.Sequential:
    """mbt2018's entropy-parameters network, pointwise: [ψ, ctx] 4M → 10M/3 → 8M/3 → 2M (σ, μ).

    Shared by `joint` and `checkerboard` (the same parameter tree, so weights can move between
    the two).
    """
    return nn.Sequential(
        [
            nn.Dense(M * 10 // 3),
            nn.leaky_relu,
            nn.Dense(M * 8 // 3),
            nn.leaky_relu,
            nn.Dense(2 * M),
        ],
        name="entropy_parameters",
    )


def wavefront_schedule(
    height: int, width: int, kernel_size: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of each wavefront t = (r + 1)·i + j of an h×w grid (r = kernel_size // 2).

    Returns:
      positions: int32 [T, P]; row t lists the flat indices i·w + j of wavefront t in increasing
        i, padded with −1 (P = the largest wavefront).
      counts: int32 [T]; the number of real positions in each row.
    """
    slope = kernel_size // 2 + 1
    num = slope * (height - 1) + width
    rows = [[] for _ in range(num)]
    for i in range(height):
        for j in range(width):
            rows[slope * i + j].append(i * width + j)
    counts = np.array([len(r) for r in rows], np.int32)
    positions = np.full((num, int(counts.max())), -1, np.int32)
    for t, r in enumerate(rows):
        positions[t, : len(r)] = r
    return positions, counts
