"""Reading users' images into uint8 RGB arrays, writing reconstructions, and pixel conversions.

The codec works on 8-bit RGB. `load_image` brings whatever Pillow can open to that form and
says, in `LoadedImage.notes`, what it changed on the way (alpha dropped, 16 bits reduced to 8,
colour space converted, EXIF rotation applied), so that a user is never surprised by what was
compressed. Greyscale sources are replicated to three channels and remembered as `channels=1`,
so that decompression can write them back as greyscale.

Images are refused with a one-line `ImageError` when they cannot be read, are truncated, are of
a kind with no faithful 8-bit RGB meaning (32-bit float samples), or are larger than a pixel
limit; the limit is checked from the file header before any pixel is decoded. Only regular files
and pipes are read, and at most `nlq_jax.codec.files.MAX_INPUT_BYTES` of them (a device such as
/dev/zero is refused before it is read).

`save_image` marks the PNG and TIFF files it writes as written by nlq_jax (their "Software"
field), so that `nlq decompress` knows which existing files it may replace (`written_by_nlq`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import sys
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from PIL import Image, PngImagePlugin

from nlq_jax.codec import files
from nlq_jax.errors import ImageError, NLQError

if TYPE_CHECKING:
    import jax

DEFAULT_MAX_PIXELS = 1 << 28
# The "Software" field of the PNG and TIFF files that `save_image` writes.
SOFTWARE = "nlq_jax"
_TIFF_SOFTWARE_TAG = 305

# Modes whose pixels are a single grey level (alpha aside): loaded with channels=1.
_GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_COLOUR_SPACES = {"CMYK": "CMYK", "YCbCr": "YCbCr", "LAB": "CIELAB", "HSV": "HSV"}
_SUPPORTED_MODES = (
    frozenset({"RGB", "RGBX", "P", "PA", "RGBA", "RGBa", "I"})
    | _GREY_MODES
    | frozenset(_COLOUR_SPACES)
)
# What each EXIF orientation asks for, as numpy operations on an H x W x C array; these are
# Pillow's `ImageOps.exif_transpose` transposes (ROTATE_270 is a clockwise quarter turn).
_ORIENTATIONS = {
    2: ("mirrored left-right", lambda a: a[:, ::-1]),
    3: ("rotated 180 degrees", lambda a: a[::-1, ::-1]),
    4: ("mirrored top-bottom", lambda a: a[::-1]),
    5: ("transposed", lambda a: a.transpose(1, 0, 2)),
    6: ("rotated 90 degrees clockwise", lambda a: np.rot90(a, k=-1)),
    7: ("transversed", lambda a: a[::-1, ::-1].transpose(1, 0, 2)),
    8: ("rotated 90 degrees counter-clockwise", lambda a: np.rot90(a, k=1)),
}
_EXIF_ORIENTATION_TAG = 0x0112
_SAVE_FORMATS = {
    "": "PNG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pnm": "PPM",
}


@dataclasses.dataclass(frozen=True)
class LoadedImage:
    """An image as the codec sees it.

    Attributes:
        pixels: uint8 array of shape (H, W, 3); greyscale sources are replicated.
        channels: 1 if the source was greyscale, else 3.
        notes: human-readable notes on conversions made while loading (empty if none).
    """

    pixels: np.ndarray
    channels: int
    notes: list[str] = dataclasses.field(default_factory=list)


def load_image(
    path_or_file: str | os.PathLike | BinaryIO,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = files.MAX_INPUT_BYTES,
) -> LoadedImage:
    """Reads an image file into 8-bit RGB.

    Args:
        path_or_file: a path, or a seekable binary file object holding only the image (Pillow
            reads it from its start).
        max_pixels: largest width * height accepted, checked before decoding pixels. Pillow's
            own limit (`PIL.Image.MAX_IMAGE_PIXELS`: a warning above it, a refusal above twice
            it) applies too; filters for its warning are left to the application, since
            changing them here would not be thread-safe.
        max_bytes: largest file read, for a path: a larger regular file is refused before it
            is opened, a pipe is read up to this. Devices are refused.

    Returns:
        The pixels, whether the source was greyscale, and notes on any conversion.

    Raises:
        ImageError: the file is missing, unreadable, not an image, truncated, of an unsupported
            mode, empty, larger than `max_pixels` or `max_bytes`, or not a regular file or pipe.
    """
    name = _display_name(path_or_file)
    owned = isinstance(path_or_file, (str, os.PathLike))
    if owned:
        try:
            if not files.check_input(path_or_file, max_bytes):  # a pipe: Pillow must seek
                path_or_file = io.BytesIO(files.read_capped(path_or_file, max_bytes))
        except NLQError as e:
            raise ImageError(str(e)) from None
    im = _open(path_or_file, name)
    try:
        pixels, channels, notes = _decode(im, name, max_pixels, path_or_file)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - Pillow's decoders raise many types on bad data.
        raise ImageError(f"{name}: {_describe_decode_error(e)}") from None
    finally:
        if owned:
            im.close()
    return LoadedImage(pixels=pixels, channels=channels, notes=notes)


def _display_name(path_or_file) -> str:
    if isinstance(path_or_file, (str, os.PathLike)):
        return os.fspath(path_or_file)
    name = getattr(path_or_file, "name", None)
    return name if isinstance(name, str) else "<image file>"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _open(path_or_file, name: str) -> Image.Image:
    try:
        return Image.open(path_or_file)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a directory, not an image") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not an image, or in a format Pillow cannot read") from None
    except Image.DecompressionBombError as e:
        raise ImageError(f"{name}: too large ({_one_line(e)})") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot read ({_one_line(e.strerror or e)})") from None
    except Exception as e:  # noqa: BLE001 - Pillow's format probes raise many types.
        raise ImageError(f"{name}: not a readable image ({_one_line(e)})") from None


def _describe_decode_error(e: Exception) -> str:
    text = _one_line(e)
    if isinstance(e, (OSError, EOFError)) and "truncated" in text.lower():
        return "truncated image file"
    if isinstance(e, EOFError):
        return "truncated image file"
    return f"cannot decode image ({type(e).__name__}: {text})"


def _decode(
    im: Image.Image, name: str, max_pixels: int, source
) -> tuple[np.ndarray, int, list[str]]:
    """Decodes an opened image to uint8 H x W x 3; see `load_image`."""
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{name}: empty image ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: too large ({width}x{height} = {width * height} pixels, limit {max_pixels})"
        )
    mode = im.mode
    if mode not in _SUPPORTED_MODES:
        if mode == "F":
            raise ImageError(f"{name}: unsupported image mode 'F' (32-bit floating-point samples)")
        raise ImageError(f"{name}: unsupported image mode {mode!r}")
    notes = []
    frames = getattr(im, "n_frames", 1)
    if frames > 1:
        notes.append(f"first of {frames} frames used")
    rawmode = _raw_sixteen_bit_mode(im)
    im.load()

    if mode in _SIXTEEN_BIT_MODES or mode == "I":
        grey = _sixteen_to_eight(_sixteen_bit_grey(im, name))
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
        notes.append("16-bit samples scaled to 8 bits (rounded)")
    elif rawmode is not None:
        rgb, rawnotes = _sixteen_bit_colour(im, rawmode, source)
        notes.extend(rawnotes)
    elif mode in ("LA", "La"):
        notes.append("alpha channel dropped")
        grey = np.asarray(im.convert("LA") if mode == "La" else im)[:, :, 0]
        rgb = np.repeat(grey[:, :, None], 3, axis=2)
    elif mode in ("RGBA", "RGBa", "PA"):
        notes.append("alpha channel dropped")
        rgb = np.asarray(im if mode == "RGBA" else im.convert("RGBA"))[:, :, :3]
    elif mode in _COLOUR_SPACES:
        notes.append(f"converted from {_COLOUR_SPACES[mode]} to RGB")
        rgb = np.asarray(im.convert("RGB"))
    else:  # RGB, RGBX, P, L, 1
        if mode == "P" and "transparency" in im.info:
            notes.append("alpha channel dropped")
        rgb = np.asarray(im.convert("RGB"))

    channels = 1 if mode in _GREY_MODES or rawmode == "LA;16B" else 3
    rgb = _apply_orientation(im, rgb, notes)
    return np.ascontiguousarray(rgb, dtype=np.uint8), channels, notes


def _raw_sixteen_bit_mode(im: Image.Image) -> str | None:
    """The raw mode of a 16-bit colour PNG that Pillow would cut to 8 bits, else None.

    Pillow has no 16-bit RGB mode: it opens 16-bit RGB(A) and grey+alpha PNGs as 8-bit images
    and keeps the high byte of each sample.
    """
    if im.format != "PNG" or len(im.tile) != 1:
        return None
    args = im.tile[0].args
    if isinstance(args, str) and args in ("RGB;16B", "RGBA;16B", "LA;16B"):
        return args
    return None


def _sixteen_bit_colour(im: Image.Image, rawmode: str, source) -> tuple[np.ndarray, list[str]]:
    """Decodes a 16-bit RGB(A) or grey+alpha PNG to 8 bits, with rounding where possible.

    Pillow's "RGB;16L" unpacker keeps the second byte of each sample: applied to big-endian PNG
    data, that is the low byte. Decoding the file a second time with it recovers all 16 bits.
    No such unpacker exists for grey + alpha, which keeps Pillow's high byte.
    """
    high = np.asarray(im)
    alpha = ["alpha channel dropped"] if rawmode in ("RGBA;16B", "LA;16B") else []
    truncated = ["16-bit samples reduced to 8 bits (high byte kept)"]
    if rawmode == "LA;16B":
        return np.repeat(high[:, :, :1], 3, axis=2), truncated + alpha
    try:
        # Image.open rewinds a file object to its start, as it did the first time.
        with Image.open(source) as again:
            tile = again.tile[0]
            again.tile = [tile._replace(args=rawmode.replace(";16B", ";16L"))]
            low = np.asarray(again)
    except Exception:  # noqa: BLE001 - fall back to Pillow's own 8-bit reduction.
        low = None
    high = high[:, :, :3]
    if low is None or low.shape[:2] != high.shape[:2]:
        return high, truncated + alpha
    full = high.astype(np.uint32) * 256 + low[:, :, :3]
    return _sixteen_to_eight(full), ["16-bit samples scaled to 8 bits (rounded)"] + alpha


def _sixteen_bit_grey(im: Image.Image, name: str) -> np.ndarray:
    values = np.asarray(im)
    if values.ndim != 2:
        raise ImageError(f"{name}: unsupported image mode {im.mode!r}")
    if im.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageError(
            f"{name}: unsupported image mode 'I' with samples outside 0..65535 "
            "(32-bit integer samples)"
        )
    return values.astype(np.uint32)


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    # round(v * 255 / 65535) in integers; v * 255 / 65535 is never exactly k + 1/2.
    return ((values.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _apply_orientation(im: Image.Image, rgb: np.ndarray, notes: list[str]) -> np.ndarray:
    try:
        orientation = im.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF must not stop decoding.
        notes.append("EXIF metadata unreadable, orientation ignored")
        return rgb
    if orientation in _ORIENTATIONS:
        description, transform = _ORIENTATIONS[orientation]
        notes.append(f"EXIF orientation {orientation} applied ({description})")
        return transform(rgb)
    return rgb


def save_image(path: str | os.PathLike, pixels: np.ndarray, channels: int = 3) -> None:
    """Writes uint8 RGB pixels to a lossless image file, creating parent directories.

    The format follows the extension: .png (also when there is none), .bmp, .tif/.tiff,
    .ppm/.pgm/.pnm. The file is written to a temporary name and renamed, so a failure never
    leaves a partial image at `path`, nor the temporary file. PNG and TIFF files are marked as
    written by nlq_jax (see `written_by_nlq`).

    Args:
        path: where to write.
        pixels: uint8 array of shape (H, W, 3).
        channels: 3 for RGB; 1 writes a greyscale image of the rounded mean of the 3 channels.

    Raises:
        ValueError: `pixels` is not uint8 (H, W, 3) or `channels` is not 1 or 3.
        ImageError: the extension names no supported lossless format.
        NLQError: the file cannot be written.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be uint8 (H, W, 3), got {pixels.dtype} {pixels.shape}")
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"pixels must not be empty, got shape {pixels.shape}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels!r}")
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SAVE_FORMATS:
        known = ", ".join(s for s in _SAVE_FORMATS if s)
        raise ImageError(f"{path}: cannot save as {suffix!r} (supported: {known})")
    if channels == 1:
        # Rounded mean of three integers: (sum + 1) // 3 (sum / 3 is never exactly k + 1/2).
        grey = (pixels.astype(np.uint16).sum(axis=2) + 1) // 3
        image = Image.fromarray(grey.astype(np.uint8), mode="L")
    else:
        image = Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")
    fmt = _SAVE_FORMATS[suffix]
    marker = {}
    if fmt == "PNG":
        marker["pnginfo"] = PngImagePlugin.PngInfo()
        marker["pnginfo"].add_text("Software", SOFTWARE)
    elif fmt == "TIFF":
        marker["tiffinfo"] = {_TIFF_SOFTWARE_TAG: SOFTWARE}
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **marker)
    files.write_atomic(path, buffer.getvalue())


def written_by_nlq(path: str | os.PathLike) -> bool:
    """Whether `path` is an image that `save_image` wrote (a PNG or TIFF marked with
    `SOFTWARE`); False for anything else, including unreadable files.

    Args:
        path: an existing file.

    Returns:
        True if `nlq decompress` may replace it without `--force`.
    """
    try:
        with Image.open(path) as im:
            if im.format == "PNG":
                return im.info.get("Software") == SOFTWARE
            if im.format == "TIFF":
                return im.tag_v2.get(_TIFF_SOFTWARE_TAG) == SOFTWARE
    except Exception:  # noqa: BLE001 - any unreadable file is not ours.
        return False
    return False


def _namespace(x: object):
    """jax.numpy for JAX arrays (including tracers), numpy otherwise; never imports JAX."""
    jax = sys.modules.get("jax")
    if jax is not None and isinstance(x, jax.Array):
        import jax.numpy as jnp

        return jnp
    return np


def to_float(pixels: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
    """Maps uint8 pixels to float32 in [0, 1] (`pixels / 255`).

    Args:
        pixels: uint8 array (numpy or JAX) of any shape.

    Returns:
        A float32 array of the same shape and kind (numpy in, numpy out; JAX in, JAX out).
    """
    xp = _namespace(pixels)
    pixels = xp.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, got {pixels.dtype}")
    return pixels.astype(xp.float32) / xp.float32(255)


def to_uint8(x: np.ndarray | jax.Array) -> np.ndarray | jax.Array:
    """Quantizes [0, 1] floats to uint8: scale by 255, clip, round half to even.

    This is the 8-bit reconstruction that PSNR is measured on. NumPy input is scaled in float64,
    where `x * 255` is exact for float32 `x`, so the rounding is that of the real product. JAX
    input (e.g. inside `jit`) stays in its own floating dtype. NaN maps to 0, so the result is
    deterministic even for a broken reconstruction.

    Args:
        x: array (numpy or JAX) of any shape, nominally in [0, 1].

    Returns:
        A uint8 array of the same shape and kind.
    """
    xp = _namespace(x)
    if xp is np:
        x = np.asarray(x, dtype=np.float64)
    else:
        x = xp.asarray(x)
        if not xp.issubdtype(x.dtype, xp.floating):
            x = x.astype(xp.float32)
    x = xp.nan_to_num(x * 255, nan=0.0, posinf=255.0, neginf=0.0)
    return xp.round(xp.clip(x, 0, 255)).astype(xp.uint8)
