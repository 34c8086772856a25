"""One measurement for every codec, and CompressAI's results format to publish it in.

A codec is measured on an image by a round trip: encode the 8-bit RGB pixels to a file in
memory, decode it back to 8-bit RGB. bpp counts every byte of the file (headers included);
PSNR and MS-SSIM compare the decoded 8-bit image with the original over RGB; encode and decode
are timed separately (wall clock). This is how CompressAI measures its baselines and models
(`compressai/utils/bench/codecs.py`, `compressai/utils/eval_model`), so our curves and their
published ones can share a plot.

Results files follow CompressAI's format, one point per quality or checkpoint:

    {"name": "JPEG", "description": "...",
     "results": {"bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "encoding_time": [...], "decoding_time": [...]}}

Each point is a mean over images of per-image values (the mean of per-image PSNRs, not the
PSNR of the pooled MSE), as CompressAI computes it. We add two keys that readers of the format
ignore: "points" (the quality or checkpoint of each point) and "per_image" (every image's
values, so other means can be taken later).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nlq_jax.domains import IMAGE
from nlq_jax.errors import ImageError, NLQError
from nlq_jax.metrics import ms_ssim as ms_ssim_lib
from nlq_jax.metrics import psnr as psnr_lib

# The keys of one measurement, in CompressAI's spelling.
METRICS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp")

Measurement = dict[str, float | None]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The images directly inside a folder, sorted by name (hidden files skipped).

    Raises:
      NLQError: the folder does not exist or holds no image.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NLQError(f"image folder {os.fspath(root)!r} does not exist or is not a folder")
    paths = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not paths:
        raise NLQError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {os.fspath(root)!r}")
    return paths


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image as 8-bit RGB, HxWx3 (grayscale is repeated, alpha dropped, like Pillow).

    Raises:
      ImageError: the file cannot be decoded, or is over twice Pillow's pixel limit
        (`PIL.Image.MAX_IMAGE_PIXELS`).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        # DecompressionBombError: over twice Pillow's pixel limit, refused before decoding.
        raise ImageError(f"cannot read image {os.fspath(path)!r}: {e}") from e


def image_hash(pixels: np.ndarray) -> str:
    """A content hash of decoded pixels (shape included), stable across file formats."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    h = hashlib.sha256(repr(pixels.shape).encode())
    h.update(pixels.tobytes())
    return h.hexdigest()[:32]


def distortion(
    original: np.ndarray, reconstruction: np.ndarray, ms_ssim: bool = True
) -> Measurement:
    """RGB PSNR (dB) and MS-SSIM of an 8-bit reconstruction.

    MS-SSIM is None for images under `ms_ssim.min_side()` pixels on the short side (or when
    `ms_ssim` is False).

    Raises:
      NLQError: the reconstruction's shape or dtype is not the original's.
    """
    if reconstruction.shape != original.shape:
        raise NLQError(
            f"the decoded image is {reconstruction.shape}, the original {original.shape}"
        )
    if reconstruction.dtype != np.uint8:
        raise NLQError(f"the decoded image must be uint8, got {reconstruction.dtype}")
    return {
        "psnr-rgb": psnr_lib.psnr(original, reconstruction),
        "ms-ssim-rgb": ms_ssim_lib.ms_ssim_rgb(original, reconstruction) if ms_ssim else None,
    }


def measure(
    pixels: np.ndarray,
    encode: Callable[[np.ndarray], bytes],
    decode: Callable[[bytes], np.ndarray],
) -> tuple[Measurement, np.ndarray]:
    """Round-trips one image through a codec and measures it.

    Args:
      pixels: the original, uint8 HxWx3.
      encode: pixels -> the complete compressed file.
      decode: file -> uint8 HxWx3 pixels.

    Returns:
      (measurement with every key of METRICS, the decoded pixels).
    """
    start = time.perf_counter()
    data = encode(pixels)
    encoding_time = time.perf_counter() - start
    start = time.perf_counter()
    decoded = np.asarray(decode(data))
    decoding_time = time.perf_counter() - start
    out: Measurement = {"bpp": 8.0 * len(data) / IMAGE.rate_units((1, *pixels.shape))}
    out.update(distortion(pixels, decoded))
    out["encoding_time"] = encoding_time
    out["decoding_time"] = decoding_time
    return out, decoded


def mean_over_images(per_image: Sequence[Measurement]) -> Measurement:
    """The mean of each metric over images; None for a metric that some image lacks."""
    out: Measurement = {}
    for key in METRICS:
        values = [m.get(key) for m in per_image]
        if not values or any(v is None for v in values):
            out[key] = None
        else:
            out[key] = float(np.mean(np.asarray(values, np.float64)))
    return out


def make_results(
    name: str,
    description: str,
    points: Sequence[Any],
    image_names: Sequence[str],
    per_point: Sequence[Sequence[Measurement]],
) -> dict:
    """A results dict in CompressAI's format, one point per entry of `points`.

    Args:
      name: the curve's name (legend label).
      description: library versions and settings that produced it.
      points: the quality or checkpoint of each point.
      image_names: the images, in the order of each point's measurements.
      per_point: for each point, one measurement per image.
    """
    if len(points) != len(per_point):
        raise ValueError(f"{len(points)} points but {len(per_point)} measurement lists")
    means = [mean_over_images(ms) for ms in per_point]
    return {
        "name": name,
        "description": description,
        "results": {key: [m[key] for m in means] for key in METRICS},
        "points": list(points),
        "per_image": {
            image: {key: [ms[i].get(key) for ms in per_point] for key in METRICS}
            for i, image in enumerate(image_names)
        },
    }


def _finite_or_none(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None  # JSON has no inf/NaN; lossless points (PSNR = inf) are written as null.
    if isinstance(x, dict):
        return {k: _finite_or_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_or_none(v) for v in x]
    return x


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes JSON atomically (a crash never leaves half a file), non-finite floats as null."""
    path = Path(path)
    text = json.dumps(_finite_or_none(obj), indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise NLQError(f"cannot write {os.fspath(path)!r}: {e.strerror or e}") from e


def read_json(path: str | os.PathLike) -> Any:
    """Reads a JSON file.

    Raises:
      NLQError: the file is missing, unreadable or not JSON.
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise NLQError(f"cannot read {os.fspath(path)!r}: {e.strerror or e}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NLQError(f"{os.fspath(path)!r} is not JSON: {e}") from e


def read_results(path: str | os.PathLike) -> dict:
    """Reads a results file in CompressAI's format (ours or a published one).

    Raises:
      NLQError: the file is missing, not JSON, or lacks "results" with a "bpp" list.
    """
    obj = read_json(path)
    results = obj.get("results") if isinstance(obj, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list):
        raise NLQError(
            f"{os.fspath(path)!r} is not in CompressAI's results format "
            '({"name", "results": {"bpp": [...], "psnr-rgb": [...], ...}})'
        )
    obj.setdefault("name", Path(path).stem)
    obj.setdefault("description", "")
    return obj
