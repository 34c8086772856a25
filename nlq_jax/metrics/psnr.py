"""PSNR on 8-bit RGB, the way published rate-distortion curves measure it.

The reconstruction is what a user would see: rounded to 8 bits. PSNR = 10·log10(255² / MSE),
the MSE taken over all pixels and all three channels together (CompressAI's "psnr-rgb",
`compressai/utils/bench/codecs.py`), never as a mean of per-channel PSNRs.
"""

from __future__ import annotations

import numpy as np


def to_uint8(x: np.ndarray, max_val: float = 1.0) -> np.ndarray:
    """Rounds a float image in [0, max_val] to 8 bits, as a saved reconstruction would be."""
    x = np.asarray(x, np.float64) * (255.0 / max_val)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


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
      reconstruction: the decoded image, same shape; round float outputs with `to_uint8` first.
      max_val: the peak value (255 for 8-bit images).

    Returns:
      10·log10(max_val² / MSE); +inf for identical images.
    """
    err = mse(original, reconstruction)
    if err == 0.0:
        return float("inf")
    return float(10.0 * np.log10(max_val**2 / err))
