"""PSNR on 8-bit RGB and bpp from file sizes, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np

from nlq_jax.metrics import bits_per_pixel, psnr


def test_psnr_of_a_one_level_error_is_20_log10_255():
    x = np.full((8, 8, 3), 100, np.uint8)
    assert math.isclose(psnr.psnr(x, x + 1), 20 * math.log10(255), rel_tol=1e-12)


def test_psnr_pools_the_squared_error_over_all_channels():
    x = np.zeros((4, 4, 3), np.uint8)
    y = x.copy()
    y[..., 0] = 6  # error only in red: MSE over RGB = 36 / 3 = 12
    assert math.isclose(psnr.psnr(x, y), 10 * math.log10(255**2 / 12), rel_tol=1e-12)


def test_psnr_of_identical_images_is_infinite():
    x = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert psnr.psnr(x, x) == math.inf


def test_bits_per_pixel_counts_every_byte_of_the_file():
    assert bits_per_pixel(1000, 512, 768) == 8000 / (512 * 768)
