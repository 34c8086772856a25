"""MS-SSIM and SSIM against independent references (scikit-image, a numpy transcription)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from skimage import data as skdata
from skimage.metrics import structural_similarity

from nlq_jax.metrics import ms_ssim

WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]  # Wang et al. 2003, Sec. 3.2


def _pair(h: int, w: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A natural image crop (uint8) and a noisy, blurred version of it."""
    rng = np.random.default_rng(seed)
    x = skdata.astronaut()[40 : 40 + h, 60 : 60 + w].astype(np.float64)
    y = ndimage.uniform_filter(x, size=(3, 3, 1)) + rng.normal(0, 6, x.shape)
    return x.astype(np.uint8), np.clip(np.round(y), 0, 255).astype(np.uint8)


def _ref_cs(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Mean contrast-structure term of one channel, windows inside the image only (numpy)."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def filt(a):
        a = ndimage.correlate1d(a, g, axis=0, mode="constant")
        a = ndimage.correlate1d(a, g, axis=1, mode="constant")
        return a[5:-5, 5:-5]  # keep only positions whose window lies inside the image

    mx, my = filt(x), filt(y)
    vx, vy, cxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
    c2 = (0.03 * data_range) ** 2
    return float(np.mean((2 * cxy + c2) / (vx + vy + c2)))


def _ref_pool(a: np.ndarray) -> np.ndarray:
    """torch.nn.functional.avg_pool2d(kernel 2, stride 2, padding = side % 2), zeros counted."""
    ph, pw = a.shape[0] % 2, a.shape[1] % 2
    p = np.pad(a, ((ph, ph), (pw, pw)))
    oh, ow = (p.shape[0] - 2) // 2 + 1, (p.shape[1] - 2) // 2 + 1
    out = np.zeros((oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = p[2 * i : 2 * i + 2, 2 * j : 2 * j + 2].sum() / 4.0
    return out


def _ref_ms_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """pytorch_msssim's MS-SSIM (CompressAI's metric), per channel then averaged, in numpy."""
    values = []
    for c in range(x.shape[-1]):
        a, b = x[..., c].astype(np.float64), y[..., c].astype(np.float64)
        value = 1.0
        for level, weight in enumerate(WEIGHTS):
            if level < len(WEIGHTS) - 1:
                value *= max(_ref_cs(a, b, data_range), 0.0) ** weight
                a, b = _ref_pool(a), _ref_pool(b)
            else:
                s = structural_similarity(
                    a,
                    b,
                    gaussian_weights=True,
                    sigma=1.5,
                    use_sample_covariance=False,
                    data_range=data_range,
                )
                value *= max(s, 0.0) ** weight
        values.append(value)
    return float(np.mean(values))


def test_ssim_matches_skimage_at_one_scale():
    x, y = _pair(64, 80)
    expected = structural_similarity(
        x / 255.0,
        y / 255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=-1,
    )
    got = jax.jit(ms_ssim.ssim)(jnp.asarray(x / 255.0), jnp.asarray(y / 255.0))
    np.testing.assert_allclose(float(got), expected, rtol=2e-5)


def test_ms_ssim_matches_independent_reference_on_odd_sizes():
    # 181 x 203: every pyramid level but the last has an odd side, exercising the padding rule.
    x, y = _pair(181, 203)
    expected = _ref_ms_ssim(x, y, 255.0)
    got = ms_ssim.ms_ssim_rgb(x, y)
    assert 0.5 < expected < 0.999
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_ms_ssim_is_per_example_and_one_for_identical_images():
    x0, y0 = _pair(176, 176, seed=1)
    x1, _ = _pair(176, 176, seed=2)
    x = jnp.asarray(np.stack([x0, x1]) / 255.0, jnp.float32)
    y = jnp.asarray(np.stack([y0, x1]) / 255.0, jnp.float32)  # the second pair is identical
    values = jax.jit(ms_ssim.ms_ssim)(x, y)
    assert values.shape == (2,)
    np.testing.assert_allclose(float(values[0]), _ref_ms_ssim(x0, y0, 255.0), rtol=2e-5)
    np.testing.assert_allclose(float(values[1]), 1.0, rtol=1e-6)


def test_ms_ssim_gradient_matches_a_finite_difference():
    x, y = _pair(176, 176, seed=4)
    x = jnp.asarray(x / 255.0, jnp.float32)[None]
    y = jnp.asarray(y / 255.0, jnp.float32)[None]
    f = jax.jit(lambda y_: ms_ssim.ms_ssim(x, y_, max_val=1.0)[0])
    grad = jax.jit(jax.grad(lambda y_: ms_ssim.ms_ssim(x, y_, max_val=1.0)[0]))(y)
    assert bool(jnp.all(jnp.isfinite(grad)))
    # Directional derivative towards the original: MS-SSIM must rise, at the predicted rate.
    v = x - y
    eps = 0.05
    finite_difference = (float(f(y + eps * v)) - float(f(y - eps * v))) / (2 * eps)
    assert finite_difference > 0
    np.testing.assert_allclose(float(jnp.vdot(grad, v)), finite_difference, rtol=2e-2)


def test_ms_ssim_depends_on_max_val_only_through_the_scale():
    x, y = _pair(176, 176, seed=3)
    f = jax.jit(ms_ssim.ms_ssim, static_argnames="max_val")
    a = f(jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), max_val=255.0)
    b = f(jnp.asarray(x / 255.0, jnp.float32), jnp.asarray(y / 255.0, jnp.float32), max_val=1.0)
    np.testing.assert_allclose(float(a), float(b), rtol=1e-5)


def test_ms_ssim_rejects_images_smaller_than_one_window_at_the_coarsest_scale():
    assert ms_ssim.min_side() == 161
    x = jnp.zeros((1, 160, 300, 3))
    with pytest.raises(ValueError, match="at least 161 pixels"):
        ms_ssim.ms_ssim(x, x)
    assert (
        ms_ssim.ms_ssim_rgb(np.zeros((160, 300, 3), np.uint8), np.zeros((160, 300, 3), np.uint8))
        is None
    )
