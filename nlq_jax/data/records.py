"""What every image source returns: records, and the helpers that make them.

A record is a dict ``{"image": uint8 H×W×3 | None, "name": str}``; one that could not be decoded
has ``"image": None`` and an ``"error"`` message instead, so that a training pipeline can skip
and count it without crashing mid-epoch. The sources (:mod:`nlq_jax.data.sources`,
:mod:`nlq_jax.data.tfds_sources`) and the pipelines depend on this module, not on each other.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from nlq_jax.errors import ImageError

Record = dict[str, Any]


class ImageSource(Protocol):
    """What the pipelines need from a source (Grain's ``RandomAccessDataSource``)."""

    def __len__(self) -> int:
        """Number of records."""
        ...

    def __getitem__(self, index: int) -> Record:
        """The record at ``index``: ``{"image": uint8 H×W×3 or None, "name": str, ...}``."""
        ...


def invalid_record(name: str, error: str) -> Record:
    """A record for an image that could not be read (skipped and counted by the pipelines)."""
    return {"image": None, "name": name, "error": error}


def as_rgb(pixels: np.ndarray) -> np.ndarray:
    """Returns ``pixels`` as uint8 H×W×3: grey is repeated, an alpha channel dropped.

    Raises:
        ImageError: for arrays that are not uint8 images with 1, 3 or 4 channels.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ImageError(f"expected uint8 pixels, got {pixels.dtype}")
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 3, 4):
        raise ImageError(f"expected an H×W×{{1,3,4}} image, got shape {pixels.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"empty image of shape {pixels.shape}")
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    elif pixels.shape[-1] == 4:
        pixels = pixels[..., :3]
    return np.ascontiguousarray(pixels)
