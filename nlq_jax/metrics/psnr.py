"""PSNR on 8-bit RGB, the way published rate-distortion curves measure it.

The reconstruction is what a user would see: rounded to 8 bits. PSNR = 10·log10(255² / MSE),
the MSE taken over all pixels and all three channels together (CompressAI's "psnr-rgb",
`compressai/utils/bench/codecs.py`), never as a mean of per-channel PSNRs.
"""

from __future__ import annotations

import numpy as np


def mse(original: np.ndarray, reconstruction: np.ndarray) -> float:
    """Mean squared error over every pixel and channel, in float64."""
    a = np.asarray(original, np.float64)
    b = np.asarray(reconstruction, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    return float(np.mean(np.square(a - b)))


def psnr(original: np.ndarray, reconstruction: np.ndarray, max_val: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB.

    Args:
      original: the reference image (for RGB PSNR, uint8 HxWx3).
      reconstruction: the decoded image, same shape; round float outputs with
        `nlq_jax.codec.image_io.to_uint8` first.
      max_val: the peak value (255 for 8-bit images).

    Returns:
      10·log10(max_val² / MSE); +inf for identical images.
    """
    err = mse(original, reconstruction)
    if err == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max_val**2 / err))
