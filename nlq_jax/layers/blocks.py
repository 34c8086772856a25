"""Residual and attention blocks (NHWC).

References:
  Z. Cheng, H. Sun, M. Takeuchi, J. Katto, "Learned Image Compression with Discretized Gaussian
  Mixture Likelihoods and Attention Modules", CVPR 2020, Sec. 3 (network architecture: residual
  blocks and the simplified attention module; CompressAI's ``ResidualBlock`` and
  ``AttentionBlock`` of ``cheng2020-anchor`` / ``cheng2020-attn``).
  P. Esser, R. Rombach, B. Ommer, "Taming Transformers for High-Resolution Image Synthesis",
  CVPR 2021 (VQGAN; the released ``AttnBlock``, non-local spatial self-attention in its encoder
  and decoder), after X. Wang, R. Girshick, A. Gupta, K. He, "Non-local Neural Networks",
  CVPR 2018, Sec. 3.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import linen as nn

from nlq_jax.layers.conv import UpConv
from nlq_jax.layers.conv_ops import conv_general_dilated
from nlq_jax.layers.gdn import GDN

__all__ = [
    "AttentionBlock",
    "ResidualBlock",
    "ResidualBlockUpsample",
    "ResidualBlockWithStride",
    "ResidualBottleneckBlock",
    "ResidualUnit",
    "SelfAttention",
]


def _check_channels(x: jax.Array, features: int, name: str) -> None:
    if x.shape[-1] != features:
        raise ValueError(f"{name} has features={features} but got {x.shape[-1]} input channels")


class ResidualBlock(nn.Module):
    """conv3x3 -> LeakyReLU -> conv3x3 -> LeakyReLU, plus a skip (Cheng et al. 2020, Sec. 3).

    The skip is the identity, or a 1x1 convolution (submodule ``skip``) when the input does not
    have ``features`` channels. LeakyReLU has slope 0.01 (PyTorch's default, as CompressAI).

    Attributes:
      features: output channels.
      negative_slope: slope of LeakyReLU for negative inputs.
    """

    features: int
    negative_slope: float = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, Cin)`` to ``(N, H, W, features)``."""
        y = nn.Conv(self.features, (3, 3), padding=1, name="conv1")(x)
        y = nn.leaky_relu(y, self.negative_slope)
        y = nn.Conv(self.features, (3, 3), padding=1, name="conv2")(y)
        y = nn.leaky_relu(y, self.negative_slope)
        skip = x
        if x.shape[-1] != self.features:
            skip = nn.Conv(self.features, (1, 1), name="skip")(x)
        return y + skip


class ResidualBlockWithStride(nn.Module):
    """Down-sampling residual block of Cheng et al. 2020 (CompressAI's
    ``ResidualBlockWithStride``): conv3x3/s → LeakyReLU → conv3x3 → GDN, plus a 1x1/s conv skip.

    Attributes:
      features: output channels.
      stride: down-sampling factor.
    """

    features: int
    stride: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, Cin)`` to ``(N, H/stride, W/stride, features)``."""
        s = (self.stride, self.stride)
        conv = functools.partial(nn.Conv, conv_general_dilated=conv_general_dilated)
        y = conv(self.features, (3, 3), strides=s, padding=1, name="conv1")(x)
        y = nn.leaky_relu(y, 0.01)
        y = nn.Conv(self.features, (3, 3), padding=1, name="conv2")(y)
        y = GDN(name="gdn")(y)
        skip = x
        if self.stride != 1 or x.shape[-1] != self.features:
            skip = conv(self.features, (1, 1), strides=s, name="skip")(x)
        return y + skip


class ResidualBlockUpsample(nn.Module):
    """Up-sampling residual block of Cheng et al. 2020 (CompressAI's ``ResidualBlockUpsample``):
    sub-pixel conv ×r → LeakyReLU → conv3x3 → IGDN, plus a sub-pixel conv skip.

    Attributes:
      features: output channels.
      upsample: up-sampling factor r.
    """

    features: int
    upsample: int = 2

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, Cin)`` to ``(N, r·H, r·W, features)``."""
        r = self.upsample
        y = UpConv(self.features, stride=r, method="subpixel", name="subpel_conv")(x)
        y = nn.leaky_relu(y, 0.01)
        y = nn.Conv(self.features, (3, 3), padding=1, name="conv")(y)
        y = GDN(inverse=True, name="igdn")(y)
        return y + UpConv(self.features, stride=r, method="subpixel", name="upsample")(x)


class ResidualBottleneckBlock(nn.Module):
    """ELIC's residual bottleneck (He et al. 2022, fig. 5; CompressAI's
    ``ResidualBottleneckBlock``): conv1x1 → ReLU → conv3x3 → ReLU → conv1x1, plus a skip, the
    bottleneck half as wide as the narrower of input and output.

    Attributes:
      features: output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, Cin)`` to ``(N, H, W, features)``."""
        mid = max(min(x.shape[-1], self.features) // 2, 1)
        y = nn.relu(nn.Conv(mid, (1, 1), name="conv1")(x))
        y = nn.relu(nn.Conv(mid, (3, 3), padding=1, name="conv2")(y))
        y = nn.Conv(self.features, (1, 1), name="conv3")(y)
        skip = x
        if x.shape[-1] != self.features:
            skip = nn.Conv(self.features, (1, 1), name="skip")(x)
        return y + skip


class ResidualUnit(nn.Module):
    """Bottleneck unit of the attention module: relu(x + conv1x1(relu(conv3x3(relu(conv1x1 x))))).

    The bottleneck has ``features // 2`` channels (Cheng et al. 2020, Sec. 3; CompressAI).

    Attributes:
      features: input and output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, features)`` to the same shape."""
        _check_channels(x, self.features, "ResidualUnit")
        half = max(self.features // 2, 1)
        y = nn.relu(nn.Conv(half, (1, 1), name="conv1")(x))
        y = nn.relu(nn.Conv(half, (3, 3), padding=1, name="conv2")(y))
        y = nn.Conv(self.features, (1, 1), name="conv3")(y)
        return nn.relu(x + y)


class AttentionBlock(nn.Module):
    """Simplified attention module of Cheng et al. 2020 (Sec. 3), as in CompressAI.

    ``out = x + trunk(x) * sigmoid(mask(x))``: the trunk is 3 :class:`ResidualUnit`s, the mask
    branch 3 :class:`ResidualUnit`s and a 1x1 convolution. The mask weighs the trunk per
    location and channel, so bits and capacity go where the image is complex.

    Attributes:
      features: input and output channels.
    """

    features: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, features)`` to the same shape."""
        _check_channels(x, self.features, "AttentionBlock")
        trunk = x
        for i in range(3):
            trunk = ResidualUnit(self.features, name=f"trunk_{i}")(trunk)
        mask = x
        for i in range(3):
            mask = ResidualUnit(self.features, name=f"mask_{i}")(mask)
        mask = nn.Conv(self.features, (1, 1), name="mask_conv")(mask)
        return x + trunk * nn.sigmoid(mask)


class SelfAttention(nn.Module):
    """Non-local spatial self-attention with a residual connection (VQGAN's ``AttnBlock``).

    ``out = x + proj(attention(q, k, v))`` with ``q, k, v`` 1x1 projections of
    ``GroupNorm(x)`` and a softmax over all ``H * W`` positions (Esser et al. 2021; Wang et al.
    2018). The output projection is initialized to zero, so the block is the identity at
    initialization (as the attention blocks of Dhariwal & Nichol 2021, "Diffusion Models Beat
    GANs on Image Synthesis"), which keeps a pretrained network's function when inserting it.
    Memory grows as ``(H * W)**2`` per head: use it at latent resolution.

    Attributes:
      features: input and output channels.
      num_heads: attention heads; must divide ``features``.
      num_groups: GroupNorm groups (32 as VQGAN); reduced to ``gcd(num_groups, features)``.
      epsilon: GroupNorm epsilon (1e-6 as VQGAN).
    """

    features: int
    num_heads: int = 1
    num_groups: int = 32
    epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, features)`` to the same shape."""
        _check_channels(x, self.features, "SelfAttention")
        if self.features % self.num_heads:
            raise ValueError(f"num_heads={self.num_heads} does not divide {self.features}")
        n, h, w, c = x.shape
        head_dim = c // self.num_heads
        groups = math.gcd(self.num_groups, c)
        y = nn.GroupNorm(num_groups=groups, epsilon=self.epsilon, name="norm")(x)
        q = nn.Conv(c, (1, 1), name="q")(y).reshape(n, h * w, self.num_heads, head_dim)
        k = nn.Conv(c, (1, 1), name="k")(y).reshape(n, h * w, self.num_heads, head_dim)
        v = nn.Conv(c, (1, 1), name="v")(y).reshape(n, h * w, self.num_heads, head_dim)
        logits = jnp.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(head_dim)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        y = jnp.einsum("nhqk,nkhd->nqhd", weights, v).reshape(n, h, w, c)
        y = nn.Conv(
            c,
            (1, 1),
            kernel_init=nn.initializers.zeros_init(),
            bias_init=nn.initializers.zeros_init(),
            name="proj_out",
        )(y)
        return x + y
