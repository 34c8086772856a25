"""SSIM and multi-scale SSIM in JAX: differentiable, jit-able, batched over NHWC images.

MS-SSIM follows Wang, Simoncelli and Bovik, "Multiscale structural similarity for image quality
assessment", Asilomar 2003 (Sec. 3): five scales, weights (0.0448, 0.2856, 0.3001, 0.2363,
0.1333), an 11-tap Gaussian window with σ = 1.5 (Wang et al. 2004, "Image quality assessment:
from error visibility to structural similarity", Sec. III-C), K1 = 0.01, K2 = 0.03, contrast-
structure terms at the four finer scales and the full SSIM at the coarsest one.

The details that are not in the paper follow `pytorch_msssim`, the implementation behind
CompressAI's published "ms-ssim-rgb" numbers, so that our values are the field's:

- the window is applied without padding ("valid"), so border pixels get no window of their own;
- the image is down-sampled by a 2×2 average; a side of odd length is first padded by one zero
  row/column at its start, and the zeros count in the average (PyTorch's `avg_pool2d` with
  `padding = side % 2`, `count_include_pad=True`);
- negative contrast-structure values (and a negative final SSIM) are clipped to 0 before the
  weighted product;
- each colour channel gets its own MS-SSIM; the channels are averaged at the end.

Size limit: the coarsest scale must still hold one 11-pixel window, so the short side must be
at least (11 − 1)·2⁴ + 1 = 161 pixels (the reference asserts the same; 176 = 11·2⁴ is the usual
quoted minimum and works). Smaller images raise a ValueError when the function is traced: there
is no five-scale MS-SSIM of them, and silently changing the number of scales would make values
incomparable. Train with crops of at least 176 pixels (256 is CompressAI's) when MS-SSIM is the
distortion.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# Wang et al. 2003, Sec. 3.2, calibrated from their subjective tests.
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
K1, K2 = 0.01, 0.03


def min_side(window_size: int = WINDOW_SIZE, levels: int = len(WEIGHTS)) -> int:
    """The smallest short side (pixels) that MS-SSIM accepts: one window at the coarsest scale."""
    return (window_size - 1) * 2 ** (levels - 1) + 1


@functools.cache
def gaussian_window(size: int = WINDOW_SIZE, sigma: float = WINDOW_SIGMA) -> np.ndarray:
    """Normalized 1-D Gaussian taps centred on the middle tap (the 2-D window is separable)."""
    coords = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(coords**2) / (2.0 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def _slice_sum(x: jax.Array, axis: int) -> jax.Array:
    """'Valid' correlation with the Gaussian taps along one axis, as a sum of shifted slices.

    XLA fuses the sum into one pass; on CPU it is ~30x faster than an 11-tap single-channel
    convolution, and it is plain float32 arithmetic on every backend (accelerators otherwise
    default to reduced-precision convolutions, in which SSIM near 1 would drown).
    """
    taps = gaussian_window()
    k = len(taps)
    n = x.shape[axis] - k + 1
    return sum(float(taps[t]) * jax.lax.slice_in_dim(x, t, t + n, axis=axis) for t in range(k))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _blur_valid(x: jax.Array, axis: int) -> jax.Array:
    return _slice_sum(x, axis)


def _blur_valid_fwd(x: jax.Array, axis: int) -> tuple[jax.Array, None]:
    return _slice_sum(x, axis), None


def _blur_valid_bwd(axis: int, _, g: jax.Array) -> tuple[jax.Array]:
    # The adjoint of a valid correlation is a full correlation with the flipped taps; the
    # Gaussian is symmetric, so it is the same slice sum over the cotangent padded by k − 1.
    # (Autodiff of the slices would build k pads per axis and per level: ~100x slower on CPU.)
    k = WINDOW_SIZE
    pad = [(0, 0)] * g.ndim
    pad[axis] = (k - 1, k - 1)
    return (_slice_sum(jnp.pad(g, pad), axis),)


_blur_valid.defvjp(_blur_valid_fwd, _blur_valid_bwd)


def _filter_valid(maps: jax.Array) -> jax.Array:
    """Separable 'valid' Gaussian filtering of [N, H, W] maps (reverse-mode differentiable)."""
    return _blur_valid(_blur_valid(maps, 1), 2)


def _ssim_and_cs(x: jax.Array, y: jax.Array, max_val: float) -> tuple[jax.Array, jax.Array]:
    """Per-channel mean SSIM and mean contrast-structure term of NHWC images, each [N, C]."""
    n, h, w, c = x.shape
    # Channels become batch entries; the five local statistics share one filtering pass.
    xs = jnp.moveaxis(x, -1, 1).reshape(n * c, h, w)
    ys = jnp.moveaxis(y, -1, 1).reshape(n * c, h, w)
    stats = _filter_valid(jnp.concatenate([xs, ys, xs * xs, ys * ys, xs * ys]))
    mu_x, mu_y, e_xx, e_yy, e_xy = jnp.split(stats, 5)
    c1 = (K1 * max_val) ** 2
    c2 = (K2 * max_val) ** 2
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    cs_map = (2.0 * cov_xy + c2) / (var_x + var_y + c2)
    luminance = (2.0 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    ssim_per_channel = jnp.mean(luminance * cs_map, axis=(1, 2)).reshape(n, c)
    cs_per_channel = jnp.mean(cs_map, axis=(1, 2)).reshape(n, c)
    return ssim_per_channel, cs_per_channel


def _downsample(x: jax.Array) -> jax.Array:
    """2×2 average of NHWC images, odd sides padded by one zero at the start (PyTorch's rule)."""
    _, h, w, _ = x.shape
    x = jnp.pad(x, ((0, 0), (h % 2, 0), (w % 2, 0), (0, 0)))
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def _as_batch(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, bool]:
    x = jnp.asarray(x)
    y = jnp.asarray(y)
    if x.shape != y.shape:
        raise ValueError(f"images differ in shape: {x.shape} vs {y.shape}")
    if x.ndim not in (3, 4):
        raise ValueError(f"expected HWC or NHWC images, got shape {x.shape}")
    single = x.ndim == 3
    if single:
        x, y = x[None], y[None]
    dtype = jnp.promote_types(jnp.result_type(x, y), jnp.float32)
    return x.astype(dtype), y.astype(dtype), single


def ssim(x: jax.Array, y: jax.Array, max_val: float = 1.0) -> jax.Array:
    """Single-scale SSIM (Wang et al. 2004) with an 11-tap σ = 1.5 Gaussian window.

    Args:
      x: images, [N, H, W, C] (or [H, W, C]), values in [0, max_val].
      y: images of the same shape.
      max_val: the dynamic range L of the pixel values (1.0 for [0, 1], 255 for 8-bit).

    Returns:
      The mean SSIM over valid window positions, averaged over channels: shape [N] (or []).
    """
    x, y, single = _as_batch(x, y)
    if min(x.shape[1:3]) < WINDOW_SIZE:
        raise ValueError(f"SSIM needs images of at least {WINDOW_SIZE} pixels, got {x.shape}")
    s, _ = _ssim_and_cs(x, y, max_val)
    s = jnp.mean(s, axis=-1)
    return s[0] if single else s


def _clipped_power(v: jax.Array, weight: float) -> jax.Array:
    """max(v, 0)**weight, with a zero (not NaN) gradient where v ≤ 0."""
    positive = v > 0
    safe = jnp.where(positive, v, 1.0)
    return jnp.where(positive, safe**weight, 0.0)


def ms_ssim(x: jax.Array, y: jax.Array, max_val: float = 1.0) -> jax.Array:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003), as CompressAI measures it.

    Jit-able and differentiable in reverse mode (`jax.grad`, `jax.vjp`; the Gaussian filter has
    a hand-written VJP, so forward-mode `jax.jvp` is not available), so 1 − MS-SSIM serves as a
    training distortion. Gradients are zero where a clipped term (see the module docstring) is
    non-positive.

    Args:
      x: images, [N, H, W, C] (or [H, W, C]), values in [0, max_val]; the short side must be at
        least `min_side()` = 161 pixels.
      y: images of the same shape (the reconstruction).
      max_val: the dynamic range of the pixel values (1.0 for [0, 1], 255 for 8-bit).

    Returns:
      MS-SSIM in [0, 1] per example: shape [N] (or [] for a single HWC image).

    Raises:
      ValueError: for mismatched shapes or images smaller than `min_side()` pixels.
    """
    x, y, single = _as_batch(x, y)
    smallest = min(x.shape[1:3])
    if smallest < min_side():
        raise ValueError(
            f"MS-SSIM (5 scales, 11-pixel window) needs images of at least {min_side()} pixels on "
            f"the short side, got {x.shape[1]}x{x.shape[2]}"
        )
    levels = len(WEIGHTS)
    value = 1.0
    for level, weight in enumerate(WEIGHTS):
        s, cs = _ssim_and_cs(x, y, max_val)
        if level < levels - 1:
            value = value * _clipped_power(cs, weight)
            x, y = _downsample(x), _downsample(y)
        else:
            value = value * _clipped_power(s, weight)
    out = jnp.mean(value, axis=-1)  # MS-SSIM per channel, then the channel mean.
    return out[0] if single else out


@functools.partial(jax.jit, static_argnames="max_val")
def _ms_ssim_jit(x: jax.Array, y: jax.Array, max_val: float) -> jax.Array:
    return ms_ssim(x, y, max_val=max_val)


def ms_ssim_rgb(original: np.ndarray, reconstruction: np.ndarray) -> float | None:
    """MS-SSIM of two 8-bit HxWx3 images (data range 255), or None if they are too small.

    The evaluation-time entry point: compiled once per image shape, computed in float32.
    """
    if min(original.shape[:2]) < min_side():
        return None
    value = _ms_ssim_jit(
        np.asarray(original, np.float32), np.asarray(reconstruction, np.float32), 255.0
    )
    return float(value)
