"""The field's measurements: PSNR, MS-SSIM, bits per pixel, Bjøntegaard deltas.

- `nlq_jax.metrics.psnr`: RGB PSNR of the 8-bit reconstruction.
- `nlq_jax.metrics.ms_ssim`: SSIM and MS-SSIM in JAX (differentiable; also a training loss).
- `nlq_jax.metrics.bd`: BD-rate and BD-PSNR, cubic (VCEG-M33) and piecewise cubic (JVET CTC).
- `bits_per_pixel` (here): bpp from a real file size.

Submodules are imported by name (`from nlq_jax.metrics import ms_ssim`; `ms_ssim.ms_ssim(...)`);
this package does not re-export their functions under the same names.
"""

from __future__ import annotations


def bits_per_pixel(num_bytes: int, height: int, width: int) -> float:
    """bpp of a file: its whole size (headers included) in bits over the image's pixel count.

    Args:
      num_bytes: the length of the compressed file, as written to disk.
      height: image height in pixels.
      width: image width in pixels.

    Returns:
      8·num_bytes / (height·width).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    return 8.0 * num_bytes / (height * width)
