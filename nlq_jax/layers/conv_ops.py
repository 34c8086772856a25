"""The convolutions under `DownConv` and `UpConv` (NHWC/HWIO), as functions.

- :func:`depth_to_space`, :func:`phase_kernel`, :func:`phase_conv`: a stride-s transposed
  convolution computed as the s² output phases of stride-1 convolutions (`UpConv`'s "phase").
- :func:`transposed_conv`: the same function by an input-dilated convolution ("transpose").
- :func:`conv2d` and :func:`conv_general_dilated` (what `nn.Conv` is given): XLA's convolution
  with the XLA:CPU gradient workarounds, a custom VJP whose input and kernel gradients are
  computed by phases and by matrix products of stacked taps where that was measured faster
  (`benchmarks/conv_grads.py`). Values are XLA's; other platforms keep XLA's gradients.

The modules (`nlq_jax.layers.conv`) hold the parameters; this module holds no state.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "conv2d",
    "conv_general_dilated",
    "depth_to_space",
    "phase_conv",
    "phase_kernel",
    "transposed_conv",
]


def depth_to_space(x: jax.Array, block: int) -> jax.Array:
    """Moves channel blocks to space: ``(N, H, W, b*b*C) -> (N, H*b, W*b, C)``.

    The channel index is read as ``(row_offset, col_offset, c)``, row-major, as in TensorFlow's
    ``tf.nn.depth_to_space`` (NHWC, "DCR"). PyTorch's ``pixel_shuffle`` reads it as
    ``(c, row_offset, col_offset)``; a ported sub-pixel kernel needs its outputs permuted.

    Args:
      x: array of shape ``(..., H, W, block * block * C)``.
      block: the up-sampling factor.

    Returns:
      Array of shape ``(..., H * block, W * block, C)``.
    """
    *batch, h, w, c = x.shape
    if c % (block * block):
        raise ValueError(f"channels {c} not divisible by block**2 = {block * block}")
    out_c = c // (block * block)
    x = x.reshape(*batch, h, w, block, block, out_c)
    n = len(batch)
    # (..., h, w, bh, bw, c) -> (..., h, bh, w, bw, c)
    x = jnp.moveaxis(x, n + 2, n + 1)
    return x.reshape(*batch, h * block, w * block, out_c)


def _phase_taps(kernel_size: int, stride: int) -> tuple[int, np.ndarray]:
    """Index table of the phase decomposition, in one dimension.

    With ``p = kernel_size // 2``, the transposed conv is
    ``out[o] = sum_{i, k: o = stride*i - p + k} x[i] w[k]``. Writing ``o = stride*m + r`` and
    ``i = m + d`` gives ``k = r + p - stride*d``: output phase ``r`` is a correlation of ``x``
    with taps ``d`` in ``[d_min, d_max]`` and weights ``w[r + p - stride*d]`` (zero where that
    index leaves ``[0, kernel_size)``).

    Returns:
      ``d_min`` and an int array ``idx[t, r]`` (``t = d - d_min``) holding the kernel tap, or
      ``kernel_size`` (a zero slot) where there is none.
    """
    p = kernel_size // 2
    taps = [
        (d, r)
        for r in range(stride)
        for d in range(-kernel_size, kernel_size + 1)
        if 0 <= r + p - stride * d < kernel_size
    ]
    d_min = min(d for d, _ in taps)
    d_max = max(d for d, _ in taps)
    idx = np.full((d_max - d_min + 1, stride), kernel_size, dtype=np.int32)
    for d, r in taps:
        idx[d - d_min, r] = r + p - stride * d
    return d_min, idx


def phase_kernel(kernel: jax.Array, stride: int = 2) -> tuple[jax.Array, int]:
    """Rearranges a transposed-conv kernel into the stride-1 kernel of its output phases.

    Args:
      kernel: transposed-conv kernel ``(k, k, Cin, Cout)`` (``w[ky, kx, ci, co]`` multiplies
        input pixel ``i`` into output ``stride*i - k//2 + k``; no flip, as PyTorch).
      stride: up-sampling factor.

    Returns:
      ``(phase, d_min)``: ``phase`` of shape ``(T, T, Cin, stride*stride*Cout)`` whose output
      channels are ordered ``(row_phase, col_phase, co)`` (the order of
      :func:`depth_to_space`), and ``d_min`` such that tap ``t`` reads input ``m + d_min + t``.
    """
    k = kernel.shape[0]
    if kernel.shape[1] != k:
        raise ValueError(f"square kernels only, got {kernel.shape[:2]}")
    d_min, idx = _phase_taps(k, stride)
    taps = idx.shape[0]
    # Pad a zero slot at index k on both spatial axes, then gather.
    padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
    iy = idx[:, None, :, None]  # (t_y, 1, r_y, 1)
    ix = idx[None, :, None, :]  # (1, t_x, 1, r_x)
    phase = padded[iy, ix]  # (t_y, t_x, r_y, r_x, Cin, Cout)
    cin, cout = kernel.shape[2:]
    phase = jnp.transpose(phase, (0, 1, 4, 2, 3, 5))
    return phase.reshape(taps, taps, cin, stride * stride * cout), d_min


_DIMS = ("NHWC", "HWIO", "NHWC")


def _xla_conv(x: jax.Array, kernel: jax.Array, strides, padding) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=strides, padding=padding, dimension_numbers=_DIMS
    )


def _tap_stack(x: jax.Array, k: tuple[int, int], start, strides, out_hw) -> jax.Array:
    """``(N, oh, ow, ky*kx, C)``: tap ``(i, j)`` is ``x[:, start_y - i ...]`` or ``+ i``."""
    (ky, kx), (sy, sx), (oh, ow) = k, strides, out_hw
    n, c = x.shape[0], x.shape[-1]
    taps = []
    for i in range(ky):
        for j in range(kx):
            y0, x0 = start(i, j)
            taps.append(
                jax.lax.slice(
                    x,
                    (0, y0, x0, 0),
                    (n, y0 + sy * (oh - 1) + 1, x0 + sx * (ow - 1) + 1, c),
                    (1, sy, sx, 1),
                )
            )
    return jnp.stack(taps, axis=-2)


def _kernel_grad_method(kernel_shape, strides) -> str:
    """How the CPU kernel gradient is computed; see :func:`conv2d`."""
    ky, kx, cin, cout = kernel_shape
    if strides == (1, 1) and ky * kx * cout <= 256 and cin >= 4 * cout:
        return "cols_of_grad"
    if ky * kx * cin <= 2048 and cout >= 64:
        return "cols_of_input"
    return "xla"


def _kernel_grad_cpu(x, g, kernel_shape, strides, padding):
    ky, kx, cin, cout = kernel_shape
    (lo_y, hi_y), (lo_x, hi_x) = padding
    out_hw = g.shape[1:3]
    method = _kernel_grad_method(kernel_shape, strides)
    contract = (((0,), (0,)), ((), ()))
    if method == "cols_of_input":
        # dW[t, ci, co] = sum_u xpad[s*u + t, ci] g[u, co]: one (M, T*Cin)^T (M, Cout) product.
        xp = jax.lax.pad(
            x, jnp.zeros((), x.dtype), ((0, 0, 0), (lo_y, hi_y, 0), (lo_x, hi_x, 0), (0, 0, 0))
        )
        cols = _tap_stack(xp, (ky, kx), lambda i, j: (i, j), strides, out_hw)
        dw = jax.lax.dot_general(cols.reshape(-1, ky * kx * cin), g.reshape(-1, cout), contract)
        return dw.reshape(ky, kx, cin, cout)
    if method == "cols_of_grad":
        # Stride 1: dW[t, ci, co] = sum_v x[v, ci] g[v + lo - t, co]: x^T times the gradient's
        # (shifted) columns, cheaper than the input's when Cout is small.
        gp = jax.lax.pad(
            g,
            jnp.zeros((), g.dtype),
            (
                (0, 0, 0),
                (ky - 1 - lo_y, ky - 1 - hi_y, 0),
                (kx - 1 - lo_x, kx - 1 - hi_x, 0),
                (0, 0, 0),
            ),
        )
        cols = _tap_stack(gp, (ky, kx), lambda i, j: (ky - 1 - i, kx - 1 - j), (1, 1), x.shape[1:3])
        dw = jax.lax.dot_general(x.reshape(-1, cin), cols.reshape(-1, ky * kx * cout), contract)
        return dw.reshape(cin, ky, kx, cout).transpose(1, 2, 0, 3)
    return _kernel_grad_xla(x, g, kernel_shape, strides, padding)


def _kernel_grad_xla(x, g, kernel_shape, strides, padding):
    w = jnp.zeros(kernel_shape, x.dtype)
    return jax.vjp(lambda w_: _xla_conv(x, w_, strides, padding), w)[1](g)[0]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple, padding: tuple) -> jax.Array:
    """NHWC/HWIO convolution whose gradients are fast on XLA:CPU.

    The value is XLA's. On CPU the two gradients are computed otherwise than by autodiff
    (other platforms keep XLA's):
    - the input gradient of a stride-s convolution with padding ``k // 2`` (``DownConv``) is
      XLA's convolution of an s-fold dilated input, mostly zeros; here it is the same function
      as :func:`phase_conv` of the output gradient with the channel-swapped kernel
      (``benchmarks/conv_grads.py``: 463 -> 189 ms for g_a's 128-channel 128² -> 64² layer);
    - XLA:CPU computes the kernel gradient as a convolution with a window as large as the
      image, at a third of the forward pass's speed; here it is one matrix product of stacked
      taps, of the input (``cols_of_input``) or of the output gradient (``cols_of_grad``,
      stride 1, few output channels), where that was measured faster.

    Like :func:`phase_conv`, it is differentiable in reverse mode only (``jax.grad``,
    ``jax.vjp``); forward mode (``jax.jvp``) through a custom VJP is not available in JAX.

    Args:
      x: ``(N, H, W, Cin)``.
      kernel: ``(kh, kw, Cin, Cout)``.
      strides: ``(sy, sx)``.
      padding: ``((lo_y, hi_y), (lo_x, hi_x))``.
    """
    return _xla_conv(x, kernel, strides, padding)


def _conv2d_fwd(x, kernel, strides, padding):
    return _xla_conv(x, kernel, strides, padding), (x, kernel)


def _input_grad_xla(g, kernel, x, strides, padding):
    return jax.vjp(lambda x_: _xla_conv(x_, kernel, strides, padding), x)[1](g)[0]


def _input_grad_by_phases(kernel_shape, strides, padding) -> bool:
    """Whether the input gradient is :func:`phase_conv`'s transposed conv (see :func:`conv2d`)."""
    ky, kx = kernel_shape[:2]
    s = strides[0]
    return (
        s > 1
        and strides == (s, s)
        and ky == kx
        and ky % 2 == 1
        and padding == ((ky // 2, ky // 2), (kx // 2, kx // 2))
    )


def _input_grad_cpu(g, kernel, x, strides, padding):
    if not _input_grad_by_phases(kernel.shape, strides, padding):
        return _input_grad_xla(g, kernel, x, strides, padding)
    # A stride-s conv with padding k//2 maps input i to output o with i = s*o - k//2 + t: its
    # transpose is exactly `transposed_conv` of g with the channel-swapped kernel, cropped.
    h, w = x.shape[1:3]
    return phase_conv(g, jnp.swapaxes(kernel, 2, 3), strides[0])[:, :h, :w]


def _conv2d_bwd(strides, padding, res, g):
    x, kernel = res
    dx = jax.lax.platform_dependent(
        g,
        kernel,
        x,
        cpu=lambda g_, k_, x_: _input_grad_cpu(g_, k_, x_, strides, padding),
        default=lambda g_, k_, x_: _input_grad_xla(g_, k_, x_, strides, padding),
    )
    args = (kernel.shape, strides, padding)
    dw = jax.lax.platform_dependent(
        x,
        g,
        cpu=lambda x_, g_: _kernel_grad_cpu(x_, g_, *args),
        default=lambda x_, g_: _kernel_grad_xla(x_, g_, *args),
    )
    return dx, dw.astype(kernel.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
) -> jax.Array:
    """``lax.conv_general_dilated`` for ``nn.Conv``, routed to :func:`conv2d` where it applies."""
    plain = (
        lhs.ndim == 4
        and not isinstance(padding, str)
        and all(d == 1 for d in (lhs_dilation or (1,)) + (rhs_dilation or (1,)))
        and feature_group_count == 1
        and precision is None
        and not kwargs
        and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DIMS)
    )
    if not plain:
        return jax.lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation,
            rhs_dilation,
            dimension_numbers,
            feature_group_count,
            precision=precision,
            **kwargs,
        )
    pads = tuple((int(lo), int(hi)) for lo, hi in padding)
    return conv2d(lhs, rhs, tuple(int(s) for s in window_strides), pads)


def _conv(x: jax.Array, kernel: jax.Array, padding, lhs_dilation=(1, 1)) -> jax.Array:
    if lhs_dilation == (1, 1):
        return conv2d(x, kernel, (1, 1), tuple(tuple(p) for p in padding))
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(1, 1),
        padding=padding,
        lhs_dilation=lhs_dilation,
        dimension_numbers=_DIMS,
    )


def transposed_conv(x: jax.Array, kernel: jax.Array, stride: int = 2) -> jax.Array:
    """PyTorch ``conv_transpose2d(stride, padding=k//2, output_padding=stride-1)``, no bias.

    Args:
      x: input ``(N, H, W, Cin)``.
      kernel: ``(k, k, Cin, Cout)``, ``k`` odd.
      stride: up-sampling factor.

    Returns:
      ``(N, stride*H, stride*W, Cout)``.
    """
    k = kernel.shape[0]
    lo = k - 1 - k // 2
    hi = lo + stride - 1
    # A transposed conv is a correlation of the zero-dilated input with the flipped kernel.
    return _conv(x, kernel[::-1, ::-1], ((lo, hi), (lo, hi)), lhs_dilation=(stride, stride))


def phase_conv(x: jax.Array, kernel: jax.Array, stride: int = 2) -> jax.Array:
    """Exactly :func:`transposed_conv`, computed as one stride-1 conv per output phase.

    Output phase ``(r_y, r_x)`` is a correlation of ``x`` with only the kernel taps that reach
    it (3x3, 3x2, 2x3 and 2x2 of a 5x5 kernel at stride 2): together exactly the ``k*k`` taps,
    where the single conv of :func:`phase_kernel` multiplies ``4*3*3 = 36`` of which 11 are zero.
    The phases are interleaved as :func:`depth_to_space`. The kernel gradient is the single
    conv's (one tap stack serves all phases). With fewer than 32 output channels (g_s's last
    layer) the single conv is used throughout: four convs to 3 channels were 4x slower.
    ``benchmarks/conv_grads.py``, g_s's 128-channel 64² -> 128² layer at batch 8, XLA:CPU:
    value 250 -> 185 ms, input gradient 260 -> 168 ms against the single conv's autodiff.
    """
    return _phase_conv(x, kernel, stride)


def _phase_conv_split(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    k = kernel.shape[0]
    d_min, idx = _phase_taps(k, stride)
    phases = []
    for r_y in range(stride):
        row = []
        ty = np.flatnonzero(idx[:, r_y] < k)  # contiguous taps t = d - d_min
        for r_x in range(stride):
            tx = np.flatnonzero(idx[:, r_x] < k)
            sub = kernel[idx[ty, r_y]][:, idx[tx, r_x]]
            # out[m] = sum_t x[m + d_min + t] sub[t - t0]: pad by -(d_min + t0), d_min + t1.
            pad_y = (-(d_min + int(ty[0])), d_min + int(ty[-1]))
            pad_x = (-(d_min + int(tx[0])), d_min + int(tx[-1]))
            row.append(_conv(x, sub.astype(x.dtype), (pad_y, pad_x)))
        phases.append(jnp.stack(row, axis=3))  # (N, H, W, r_x, C)
    y = jnp.stack(phases, axis=2)  # (N, H, r_y, W, r_x, C)
    n, h, _, w, _, c = y.shape
    return y.reshape(n, h * stride, w * stride, c)


def _phase_conv_single(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    phase, d_min = phase_kernel(kernel, stride)
    taps = phase.shape[0]
    lo, hi = -d_min, taps - 1 + d_min
    return depth_to_space(_conv(x, phase.astype(x.dtype), ((lo, hi), (lo, hi))), stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _phase_conv(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    return _phase_conv_value(x, kernel, stride)


def _phase_conv_value(x: jax.Array, kernel: jax.Array, stride: int) -> jax.Array:
    # With few output channels (g_s's last layer, 3) the split convs are 4x slower than one.
    if kernel.shape[-1] < 32:
        return _phase_conv_single(x, kernel, stride)
    return _phase_conv_split(x, kernel, stride)


def _phase_conv_fwd(x, kernel, stride):
    return _phase_conv_value(x, kernel, stride), (x, kernel)


def _phase_conv_bwd(stride, res, g):
    x, kernel = res
    dx = jax.vjp(lambda x_: _phase_conv_value(x_, kernel, stride), x)[1](g)[0]
    dk = jax.vjp(lambda k_: _phase_conv_single(x, k_, stride), kernel)[1](g)[0]
    return dx, dk


_phase_conv.defvjp(_phase_conv_fwd, _phase_conv_bwd)
