"""Down- and up-sampling convolutions (NHWC): the modules; the convolutions they compute, with
the XLA:CPU gradient workarounds, are functions in :mod:`nlq_jax.layers.conv_ops`.

``DownConv`` is CompressAI's ``conv()``: a stride-2 convolution with padding ``k // 2``, so an
``H x W`` input gives ``ceil(H/2) x ceil(W/2)``.

``UpConv`` multiplies the resolution by ``stride`` (2 by default) in one of three ways:

- ``"transpose"``: a transposed convolution with the semantics of PyTorch's
  ``ConvTranspose2d(k, stride=2, padding=k // 2, output_padding=1)``, the up-sampling of the
  Ballé et al. synthesis transforms (CompressAI's ``deconv()``).
- ``"phase"``: the *same function with the same parameters* as ``"transpose"``, computed as
  stride-1 convolutions that produce the ``stride**2`` output phases (:func:`phase_conv`: one
  conv per phase with the kernel taps that reach it, or one conv with ``4 * features`` outputs
  of the rearranged kernel, :func:`phase_kernel`), interleaved as by :func:`depth_to_space`. A
  checkpoint trained with one method runs with the other.
- ``"subpixel"``: a different architecture, a 3x3 convolution to ``4 * features`` channels and
  :func:`depth_to_space` (Shi et al. 2016, "Real-time single image and video super-resolution
  using an efficient sub-pixel convolutional neural network", CVPR 2016, Sec. 2.2; CompressAI's
  ``subpel_conv3x3``).

Why ``"phase"`` is the default: ``benchmarks/upsampling.py`` (command and details in
``benchmarks/README.md``), a bmshj2018-like ``g_s`` (4 ``UpConv``, N=128, M=192, IGDN between),
XLA:CPU, jax 0.10.2, 2 cores shared with other jobs (load 4-7: read the ratios), inference of a
32x48 latent to 512x768, training = ``value_and_grad`` of the MSE on a batch of 4 256x256
images; medians of 10 inferences and 3 steps::

  | method    | params | infer compile | infer 512x768 | train compile | train step b4 | img/s |
  | --------- | ------ | ------------- | ------------- | ------------- | ------------- | ----- |
  | phase     | 1.49 M | 0.7 s         | 0.951 s       | 3.8 s         | 3.42 s        | 1.17  |
  | transpose | 1.49 M | 0.6 s         | 1.169 s       | 3.3 s         | 72.21 s       | 0.06  |
  | subpixel  | 2.13 M | 0.6 s         | 0.936 s       | 3.3 s         | 3.40 s        | 1.18  |

The gradient of ``"transpose"`` is ~21x slower on XLA:CPU (21-29x over three runs);
``"phase"`` keeps the transposed-conv architecture and its weights at the speed of
``"subpixel"`` (its convolutions have the same shapes), so it is the default.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
from flax import linen as nn

from nlq_jax.layers.conv_ops import (
    conv_general_dilated,
    depth_to_space,
    phase_conv,
    transposed_conv,
)

__all__ = ["DownConv", "UpConv", "upsampling_methods"]

Initializer = Callable[..., jax.Array]
UpsamplingMethod = Literal["phase", "transpose", "subpixel"]

upsampling_methods: tuple[str, ...] = ("phase", "transpose", "subpixel")


class DownConv(nn.Module):
    """Stride-``stride`` convolution with padding ``kernel_size // 2`` (CompressAI ``conv()``).

    Attributes:
      features: output channels.
      kernel_size: odd spatial size of the square kernel.
      stride: down-sampling factor; the output is ``ceil(H / stride) x ceil(W / stride)``.
      use_bias: add a learned bias.
      kernel_init: initializer of the ``(k, k, Cin, Cout)`` kernel.
    """

    features: int
    kernel_size: int = 5
    stride: int = 2
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, Cin)`` to ``(N, ceil(H/stride), ceil(W/stride), features)``."""
        k = self.kernel_size
        return nn.Conv(
            self.features,
            (k, k),
            strides=(self.stride, self.stride),
            padding=((k // 2, k // 2), (k // 2, k // 2)),
            use_bias=self.use_bias,
            kernel_init=self.kernel_init,
            conv_general_dilated=conv_general_dilated,
            name="conv",
        )(x)


class UpConv(nn.Module):
    """Up-sampling by ``stride``: transposed conv (two equivalent forms) or sub-pixel conv.

    ``"transpose"`` and ``"phase"`` share their parameters, ``kernel`` of shape
    ``(k, k, Cin, features)`` and ``bias`` of shape ``(features,)``, and compute the same
    function: output ``(N, stride*H, stride*W, features)`` with
    ``out[o] = sum_{i, k: o = stride*i - k_size//2 + k} x[i] kernel[k] + bias`` per axis. A
    PyTorch ``ConvTranspose2d`` weight ``(Cin, Cout, k, k)`` maps to ``kernel`` by
    ``transpose(2, 3, 0, 1)``. ``"subpixel"`` has its own parameters (submodule ``conv``).

    Attributes:
      features: output channels.
      kernel_size: odd spatial size of the transposed-conv kernel.
      stride: up-sampling factor.
      method: ``"phase"`` (default, fastest on XLA:CPU, see the module docstring),
        ``"transpose"`` or ``"subpixel"``.
      subpixel_kernel_size: kernel size of the ``"subpixel"`` convolution (3 as CompressAI).
      use_bias: add a learned bias.
      kernel_init: initializer of the kernel.
      bias_init: initializer of the bias.
    """

    features: int
    kernel_size: int = 5
    stride: int = 2
    method: UpsamplingMethod = "phase"
    subpixel_kernel_size: int = 3
    use_bias: bool = True
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``(N, H, W, Cin)`` to ``(N, stride*H, stride*W, features)``."""
        s = self.stride
        if self.method == "subpixel":
            k = self.subpixel_kernel_size
            y = nn.Conv(
                s * s * self.features,
                (k, k),
                padding=((k // 2, k // 2), (k // 2, k // 2)),
                use_bias=self.use_bias,
                kernel_init=self.kernel_init,
                bias_init=self.bias_init,
                name="conv",
            )(x)
            return depth_to_space(y, s)
        if self.method not in ("phase", "transpose"):
            raise ValueError(
                f"unknown method {self.method!r}; expected one of {upsampling_methods}"
            )
        k = self.kernel_size
        if k % 2 != 1:
            raise ValueError(f"kernel_size must be odd for an exact {s}x up-sampling, got {k}")
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        kernel = kernel.astype(x.dtype)
        if self.method == "phase":
            y = phase_conv(x, kernel, s)
        else:
            y = transposed_conv(x, kernel, s)
        if self.use_bias:
            bias = self.param("bias", self.bias_init, (self.features,))
            y = y + bias.astype(y.dtype)
        return y
