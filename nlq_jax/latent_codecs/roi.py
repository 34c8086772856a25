"""Region-of-interest maps: a mask over the image, at the latent's resolution, in a file.

A region of interest is a mask over the (padded) image; a model spends more bits on the latent
positions that the region touches. The decoder needs the mask at the latent's resolution, so
the file carries it: packed to one bit per position and deflated (a rectangle over a Kodak
image's 48 × 32 positions takes ≈ 20 bytes).
"""

from __future__ import annotations

import zlib

import numpy as np

from nlq_jax.errors import FormatError


def latent_mask(roi: np.ndarray, factor: int) -> np.ndarray:
    """A pixel mask [H, W] (H, W multiples of `factor`) → bool [H/factor, W/factor], True
    where the region touches the block of pixels a latent position covers."""
    roi = np.asarray(roi)
    h, w = roi.shape
    if h % factor or w % factor:
        raise ValueError(f"mask of {w}×{h} is not a multiple of {factor} (pad it like the image)")
    blocks = roi.reshape(h // factor, factor, w // factor, factor) != 0
    return blocks.any(axis=(1, 3))


def packed_bytes_bound(positions: int) -> int:
    """The most bytes `pack_mask` writes for this many positions (deflate's stored blocks)."""
    n = -(-positions // 8)
    return n + 5 * (n // 16384 + 1) + 6


def pack_mask(mask: np.ndarray) -> bytes:
    """bool [h, w] → one bit per position, deflated."""
    return zlib.compress(np.packbits(np.asarray(mask, bool).ravel()).tobytes(), 9)


def unpack_mask(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `pack_mask`; FormatError on anything else (never inflates beyond the mask's
    size)."""
    n = -(-(shape[0] * shape[1]) // 8)
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(data, n)
        complete = inflater.eof and not inflater.unconsumed_tail and not inflater.unused_data
    except zlib.error:
        raise FormatError("corrupted region-of-interest map") from None
    if len(raw) != n or not complete:
        raise FormatError("corrupted region-of-interest map")
    bits = np.unpackbits(np.frombuffer(raw, np.uint8))[: shape[0] * shape[1]]
    return bits.reshape(shape).astype(bool)
