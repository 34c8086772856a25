"""Reconstruction grids: one image, several codecs (rows) at several rates (columns), zoomed.

Numbers hide what artifacts look like: blocking (JPEG), blur and ringing (WebP, HEVC), the
smooth texture loss of learned codecs. The grid shows the same crop of each reconstruction,
enlarged without interpolation, next to the original with the crop marked. Baselines are coded
at the quality whose file size is closest to each target bpp; a set of checkpoints (one fixed
rate each) contributes, per target, the checkpoint closest to it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from nlq_jax.domains import IMAGE
from nlq_jax.errors import NLQError
from nlq_jax.evaluation import plot as plot_lib
from nlq_jax.evaluation import results as results_lib


@dataclasses.dataclass
class Reconstruction:
    """One decoded image and how it was made.

    Attributes:
      setting: what produced it ("q=35", a checkpoint's name).
      bpp: bits per pixel of the whole file.
      psnr: RGB PSNR in dB.
      pixels: the decoded uint8 HxWx3 image.
    """

    setting: str
    bpp: float
    psnr: float
    pixels: np.ndarray


def reconstruct(
    pixels: np.ndarray, encode: Callable, decode: Callable, setting: str
) -> Reconstruction:
    """Round-trips `pixels` through `encode`/`decode`: bpp (whole file) and PSNR, no MS-SSIM."""
    data = encode(pixels)
    decoded = np.asarray(decode(data))
    d = results_lib.distortion(pixels, decoded, ms_ssim=False)
    bpp = 8.0 * len(data) / IMAGE.rate_units((1, *pixels.shape))
    return Reconstruction(setting, bpp, float(d["psnr-rgb"]), decoded)


def baseline_at_rate(codec, pixels: np.ndarray, target_bpp: float) -> Reconstruction:
    """Codes `pixels` with a baseline at the quality whose bpp is closest to `target_bpp`.

    Bisects the codec's integer quality range, assuming file size grows with quality.
    """
    tried: dict[int, Reconstruction] = {}

    def at(q: int) -> Reconstruction:
        if q not in tried:
            tried[q] = reconstruct(pixels, lambda x: codec.encode(x, q), codec.decode, f"q={q}")
        return tried[q]

    lo, hi = codec.quality_range
    while lo < hi:  # smallest quality reaching the target (or the top of the range)
        mid = (lo + hi) // 2
        if at(mid).bpp >= target_bpp:
            hi = mid
        else:
            lo = mid + 1
    candidates = [at(lo)] + ([at(lo - 1)] if lo > codec.quality_range[0] else [])
    return min(candidates, key=lambda r: abs(np.log(r.bpp / target_bpp)))


def closest_points(
    points: Sequence[Reconstruction], targets: Sequence[float]
) -> list[Reconstruction]:
    """For each target bpp, the point with the closest rate (in log-rate)."""
    return [min(points, key=lambda r, t=t: abs(np.log(r.bpp / t))) for t in targets]


def choose_crop(pixels: np.ndarray, size: int) -> tuple[int, int, int]:
    """The most textured square of side `size` (largest gradient energy): (top, left, size).

    Texture is where codecs differ; a flat sky crop would show nothing.
    """
    h, w = pixels.shape[:2]
    size = int(min(size, h, w))
    gray = pixels.astype(np.float64).mean(axis=-1)
    energy = np.zeros_like(gray)
    energy[:, 1:] += np.abs(np.diff(gray, axis=1))
    energy[1:, :] += np.abs(np.diff(gray, axis=0))
    integral = np.pad(energy.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    step = max(1, size // 4)
    best, best_pos = -1.0, (0, 0)
    for top in range(0, h - size + 1, step):
        for left in range(0, w - size + 1, step):
            b, r = top + size, left + size
            total = integral[b, r] - integral[top, r] - integral[b, left] + integral[top, left]
            if total > best:
                best, best_pos = total, (top, left)
    return best_pos[0], best_pos[1], size


def save_grid(
    original: np.ndarray,
    rows: Sequence[tuple[str, Sequence[Reconstruction]]],
    crop: tuple[int, int, int],
    out: str | os.PathLike,
    title: str | None = None,
) -> None:
    """Draws the grid and saves it.

    Args:
      original: the uint8 HxWx3 original.
      rows: (codec label, reconstructions left to right) per row.
      crop: (top, left, size) of the zoomed square.
      out: image path (format from the suffix).
      title: figure title.
    """
    from matplotlib import patches

    from nlq_jax.evaluation.plot import new_figure

    if not rows:
        raise NLQError("a reconstruction grid needs at least one codec")
    top, left, size = crop
    n_rows = max(2, len(rows))
    n_cols = 1 + max(len(r) for _, r in rows)
    fig = new_figure(figsize=(2.6 * n_cols, 2.75 * n_rows), dpi=100)
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")

    def show(ax, img, caption):
        ax.axis("on")
        ax.imshow(img, interpolation="nearest")
        ax.set_title(caption, fontsize=8)

    ax = axes[0, 0]
    show(ax, original, "original")
    ax.add_patch(patches.Rectangle((left, top), size, size, fill=False, edgecolor="red", lw=1.2))
    show(axes[1, 0], original[top : top + size, left : left + size], f"original, {size}² crop")
    for i, (label, recs) in enumerate(rows):
        for j, r in enumerate(recs):
            ax = axes[i, j + 1]
            show(
                ax,
                r.pixels[top : top + size, left : left + size],
                f"{r.setting}: {r.bpp:.3f} bpp, {r.psnr:.2f} dB",
            )
            if j == 0:
                ax.set_ylabel(label, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=11)
    plot_lib.save_figure(fig, out, "grid")


def make_grid(
    image_path: str | os.PathLike,
    out: str | os.PathLike,
    targets: Sequence[float],
    baselines: Sequence = (),
    checkpoint_codecs: Sequence = (),
    checkpoint_label: str | None = None,
    crop: tuple[int, int, int] | None = None,
    crop_size: int = 128,
) -> list[tuple[str, list[Reconstruction]]]:
    """Codes one image with each baseline at each target rate (and checkpoints), saves the grid.

    Args:
      image_path: the image.
      out: the grid image to write.
      targets: target bpps, one column each.
      baselines: `nlq_jax.baselines.codecs.Baseline`s, one row each.
      checkpoint_codecs: loaded neural codecs (`compress`/`decompress`/`name`), one row together.
      checkpoint_label: that row's label (default "nlq_jax").
      crop: (top, left, size) of the zoomed square; default the most textured one.
      crop_size: side of the default crop.

    Returns:
      The rows drawn: (label, reconstructions).
    """
    if not targets or any(t <= 0 for t in targets):
        raise NLQError("target rates must be positive bpp values")
    pixels = results_lib.read_image(image_path)
    rows: list[tuple[str, list[Reconstruction]]] = []
    for codec in baselines:
        rows.append((codec.name, [baseline_at_rate(codec, pixels, t) for t in targets]))
    if checkpoint_codecs:
        points = [reconstruct(pixels, c.compress, c.decompress, c.name) for c in checkpoint_codecs]
        rows.append((checkpoint_label or "nlq_jax", closest_points(points, targets)))
    if crop is None:
        crop = choose_crop(pixels, crop_size)
    else:
        top, left, size = crop
        h, w = pixels.shape[:2]
        if size < 1 or top < 0 or left < 0 or top + size > h or left + size > w:
            raise NLQError(f"crop {crop} does not fit in the {h}x{w} image")
    save_grid(pixels, rows, crop, out, title=Path(image_path).name)
    return rows
