"""Tests of image loading and saving: every source mode, every refusal, and the 8-bit helpers.

Each test writes its own small image with Pillow (or by hand, for 16-bit colour PNGs, which
Pillow cannot write) and checks the pixels against a numpy computation of what they must be.
"""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageFile, ImageOps

from nlq_jax.codec import image_io
from nlq_jax.errors import ImageError, NLQError

H, W = 6, 10


def _rng(seed=0):
    return np.random.default_rng(seed)


def _rgb(seed=0):
    return _rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _grey(seed=0):
    return _rng(seed).integers(0, 256, (H, W), dtype=np.uint8)


def _save(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def _png_16bit(samples: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written from the specification, rows filtered with None, Sub and Up."""
    height, width = samples.shape[:2]
    rows = samples.reshape(height, -1).astype(">u2").view(np.uint8).reshape(height, -1)
    bpp = 2 * (samples.shape[2] if samples.ndim == 3 else 1)
    raw = b""
    previous = np.zeros_like(rows[0])
    for y, row in enumerate(rows):
        kind = y % 3
        if kind == 1:  # Sub: minus the byte bpp to the left.
            left = np.concatenate([np.zeros(bpp, np.uint8), row[:-bpp]])
            row = row - left
        elif kind == 2:  # Up: minus the byte above.
            row = row - previous
        raw += bytes([kind]) + row.astype(np.uint8).tobytes()
        previous = rows[y]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _round_16_to_8(values: np.ndarray) -> np.ndarray:
    return np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)


def _replicated(grey: np.ndarray) -> np.ndarray:
    return np.stack([grey] * 3, axis=-1)


# Loading, mode by mode.


def test_rgb_png(tmp_path):
    pixels = _rgb()
    loaded = image_io.load_image(_save(tmp_path, Image.fromarray(pixels), "a.png"))
    np.testing.assert_array_equal(loaded.pixels, pixels)
    assert loaded.pixels.dtype == np.uint8 and loaded.pixels.shape == (H, W, 3)
    assert loaded.channels == 3
    assert loaded.notes == []


def test_file_object(tmp_path):
    pixels = _rgb()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    buffer.seek(0)
    np.testing.assert_array_equal(image_io.load_image(buffer).pixels, pixels)


def test_greyscale_l(tmp_path):
    grey = _grey()
    loaded = image_io.load_image(_save(tmp_path, Image.fromarray(grey, mode="L"), "g.png"))
    np.testing.assert_array_equal(loaded.pixels, _replicated(grey))
    assert loaded.channels == 1
    assert loaded.notes == []


def test_bilevel(tmp_path):
    bits = _grey() > 127
    loaded = image_io.load_image(_save(tmp_path, Image.fromarray(bits), "b.png"))
    np.testing.assert_array_equal(loaded.pixels, _replicated(np.where(bits, 255, 0)))
    assert loaded.channels == 1


def test_palette(tmp_path):
    palette = _rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
    indexes = _grey(2)
    image = Image.fromarray(indexes, mode="L").convert("P")  # identity palette first
    image.putpalette(palette.tobytes())
    loaded = image_io.load_image(_save(tmp_path, image, "p.png"))
    np.testing.assert_array_equal(loaded.pixels, palette[indexes])
    assert loaded.channels == 3
    assert loaded.notes == []


def test_palette_with_transparency(tmp_path):
    palette = _rng(1).integers(0, 256, (256, 3), dtype=np.uint8)
    indexes = _grey(2)
    image = Image.fromarray(indexes, mode="L").convert("P")
    image.putpalette(palette.tobytes())
    loaded = image_io.load_image(_save(tmp_path, image, "pt.png", transparency=0))
    np.testing.assert_array_equal(loaded.pixels, palette[indexes])
    assert loaded.notes == ["alpha channel dropped"]


def test_rgba(tmp_path):
    rgba = _rng(3).integers(0, 256, (H, W, 4), dtype=np.uint8)
    loaded = image_io.load_image(_save(tmp_path, Image.fromarray(rgba, mode="RGBA"), "a.png"))
    np.testing.assert_array_equal(loaded.pixels, rgba[..., :3])
    assert loaded.channels == 3
    assert loaded.notes == ["alpha channel dropped"]


def test_la(tmp_path):
    la = _rng(4).integers(0, 256, (H, W, 2), dtype=np.uint8)
    loaded = image_io.load_image(_save(tmp_path, Image.fromarray(la, mode="LA"), "la.png"))
    np.testing.assert_array_equal(loaded.pixels, _replicated(la[..., 0]))
    assert loaded.channels == 1
    assert loaded.notes == ["alpha channel dropped"]


def test_pa(tmp_path):
    palette = _rng(5).integers(0, 256, (256, 3), dtype=np.uint8)
    indexes = _grey(6)
    image = Image.fromarray(indexes, mode="L").convert("P")
    image.putpalette(palette.tobytes())
    image = image.convert("PA")
    loaded = image_io.load_image(_save(tmp_path, image, "pa.tif"))
    np.testing.assert_array_equal(loaded.pixels, palette[indexes])
    assert loaded.notes == ["alpha channel dropped"]


def test_16bit_greyscale_png(tmp_path):
    values = _rng(7).integers(0, 65536, (H, W), dtype=np.uint16)
    values[0, :4] = [0, 128, 129, 65535]  # 128/257 rounds down, 129/257 up
    path = _save(tmp_path, Image.fromarray(values), "16.png")
    assert Image.open(path).mode == "I;16"
    loaded = image_io.load_image(path)
    np.testing.assert_array_equal(loaded.pixels, _replicated(_round_16_to_8(values)))
    assert loaded.pixels[0, :4, 0].tolist() == [0, 0, 1, 255]
    assert loaded.channels == 1
    assert loaded.notes == ["16-bit samples scaled to 8 bits (rounded)"]


def test_16bit_big_endian_tiff(tmp_path):
    values = _rng(8).integers(0, 65536, (H, W), dtype=np.uint16)
    image = Image.frombytes("I;16B", (W, H), values.astype(">u2").tobytes())
    path = _save(tmp_path, image, "16b.tif")
    assert Image.open(path).mode == "I;16B"
    loaded = image_io.load_image(path)
    np.testing.assert_array_equal(loaded.pixels, _replicated(_round_16_to_8(values)))
    assert loaded.channels == 1


def test_32bit_integer_mode_i(tmp_path):
    values = _rng(9).integers(0, 65536, (H, W)).astype(np.int32)
    path = _save(tmp_path, Image.fromarray(values), "i.tif")
    assert Image.open(path).mode == "I"
    loaded = image_io.load_image(path)
    np.testing.assert_array_equal(loaded.pixels, _replicated(_round_16_to_8(values)))
    assert loaded.channels == 1


def test_32bit_integer_out_of_16bit_range_refused(tmp_path):
    values = np.full((H, W), 70000, dtype=np.int32)
    path = _save(tmp_path, Image.fromarray(values), "i.tif")
    with pytest.raises(ImageError, match="unsupported image mode 'I'"):
        image_io.load_image(path)


@pytest.mark.parametrize(
    ("colour_type", "components", "channels", "notes"),
    [
        (2, 3, 3, ["16-bit samples scaled to 8 bits (rounded)"]),
        (
            6,
            4,
            3,
            ["16-bit samples scaled to 8 bits (rounded)", "alpha channel dropped"],
        ),
    ],
)
def test_16bit_colour_png(tmp_path, colour_type, components, channels, notes):
    samples = _rng(10).integers(0, 65536, (H, W, components), dtype=np.uint16)
    samples[0, 0, :3] = [128, 129, 65535]
    path = tmp_path / "rgb16.png"
    path.write_bytes(_png_16bit(samples, colour_type))
    loaded = image_io.load_image(path)
    np.testing.assert_array_equal(loaded.pixels, _round_16_to_8(samples[..., :3]))
    assert loaded.channels == channels
    assert loaded.notes == notes


def test_16bit_colour_png_from_file_object(tmp_path):
    samples = _rng(11).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    buffer = io.BytesIO(_png_16bit(samples, 2))
    loaded = image_io.load_image(buffer)
    np.testing.assert_array_equal(loaded.pixels, _round_16_to_8(samples))


class _Unseekable(io.RawIOBase):
    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_16bit_colour_png_unseekable_stream_keeps_high_byte():
    # A stream read once cannot be decoded a second time for the low bytes.
    samples = _rng(27).integers(0, 65536, (H, W, 3), dtype=np.uint16)
    loaded = image_io.load_image(_Unseekable(_png_16bit(samples, 2)))
    np.testing.assert_array_equal(loaded.pixels, (samples >> 8).astype(np.uint8))
    assert loaded.notes == ["16-bit samples reduced to 8 bits (high byte kept)"]


def test_16bit_grey_alpha_png_keeps_high_byte(tmp_path):
    samples = _rng(12).integers(0, 65536, (H, W, 2), dtype=np.uint16)
    path = tmp_path / "la16.png"
    path.write_bytes(_png_16bit(samples, 4))
    loaded = image_io.load_image(path)
    np.testing.assert_array_equal(
        loaded.pixels, _replicated((samples[..., 0] >> 8).astype(np.uint8))
    )
    assert loaded.channels == 1
    assert loaded.notes == [
        "16-bit samples reduced to 8 bits (high byte kept)",
        "alpha channel dropped",
    ]


def _cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """The uncalibrated conversion R = (255 - C)(255 - K) / 255, rounded."""
    cmyk = cmyk.astype(np.float64)
    rgb = (255 - cmyk[..., :3]) * (255 - cmyk[..., 3:]) / 255
    return np.round(rgb).astype(np.uint8)


def test_cmyk_jpeg(tmp_path):
    cmyk = _rng(13).integers(0, 256, (16, 16, 4), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(cmyk, mode="CMYK"), "c.jpg", quality=95)
    with Image.open(path) as reopened:
        assert reopened.mode == "CMYK"
        decoded = np.asarray(reopened)  # the JPEG's own (lossy) CMYK samples
    loaded = image_io.load_image(path)
    np.testing.assert_array_equal(loaded.pixels, _cmyk_to_rgb(decoded))
    assert loaded.channels == 3
    assert loaded.notes == ["converted from CMYK to RGB"]


def test_cmyk_tiff_exact(tmp_path):
    cmyk = _rng(14).integers(0, 256, (H, W, 4), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(cmyk, mode="CMYK"), "c.tif")
    np.testing.assert_array_equal(image_io.load_image(path).pixels, _cmyk_to_rgb(cmyk))


def test_ycbcr_tiff(tmp_path):
    ycc = _rng(15).integers(16, 240, (H, W, 3), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(ycc, mode="YCbCr"), "y.tif")
    assert Image.open(path).mode == "YCbCr"
    y, cb, cr = (ycc[..., i].astype(np.float64) for i in range(3))
    # JPEG/JFIF full-range YCbCr to RGB (ITU-T T.871).
    expected = np.stack(
        [
            y + 1.402 * (cr - 128),
            y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128),
            y + 1.772 * (cb - 128),
        ],
        axis=-1,
    )
    loaded = image_io.load_image(path)
    diff = np.abs(loaded.pixels.astype(np.float64) - np.clip(np.round(expected), 0, 255))
    assert diff.max() <= 1
    assert loaded.notes == ["converted from YCbCr to RGB"]


def test_lab_tiff(tmp_path):
    lab = _rng(16).integers(0, 256, (H, W, 3), dtype=np.uint8)
    image = Image.fromarray(lab, mode="LAB")
    path = _save(tmp_path, image, "lab.tif")
    assert Image.open(path).mode == "LAB"
    transform = ImageCms.buildTransform(
        ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB"
    )
    expected = np.asarray(ImageCms.applyTransform(image, transform))  # LittleCMS reference
    loaded = image_io.load_image(path)
    assert np.abs(loaded.pixels.astype(int) - expected).max() <= 1
    assert loaded.notes == ["converted from CIELAB to RGB"]


_EXPECTED_ORIENTATION = {
    1: lambda a: a,
    2: np.fliplr,
    3: lambda a: np.rot90(a, 2),
    4: np.flipud,
    5: lambda a: np.transpose(a, (1, 0, 2)),
    6: lambda a: np.rot90(a, -1),  # the camera was turned: show it turned back clockwise
    7: lambda a: np.rot90(np.transpose(a, (1, 0, 2)), 2),
    8: lambda a: np.rot90(a, 1),
}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png(tmp_path, orientation):
    pixels = _rgb(17)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, Image.fromarray(pixels), "o.png", exif=exif)
    loaded = image_io.load_image(path)
    expected = _EXPECTED_ORIENTATION[orientation](pixels)
    np.testing.assert_array_equal(loaded.pixels, expected)
    with Image.open(path) as reference:  # Pillow's own reading of the tag agrees
        np.testing.assert_array_equal(np.asarray(ImageOps.exif_transpose(reference)), expected)
    if orientation == 1:
        assert loaded.notes == []
    else:
        assert len(loaded.notes) == 1
        assert loaded.notes[0].startswith(f"EXIF orientation {orientation} applied")


def test_exif_rotated_jpeg(tmp_path):
    # 8x8 flat blocks survive JPEG almost exactly; the picture is taller than wide after rotating.
    blocks = _rng(18).integers(0, 256, (2, 4, 3), dtype=np.uint8)
    pixels = np.kron(blocks, np.ones((8, 8, 1), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(
        tmp_path,
        Image.fromarray(pixels),
        "r.jpg",
        exif=exif,
        quality=100,
        subsampling=0,
    )
    loaded = image_io.load_image(path)
    assert loaded.pixels.shape == (32, 16, 3)
    expected = np.rot90(pixels, -1)
    assert np.abs(loaded.pixels.astype(int) - expected).max() <= 3
    assert loaded.notes == ["EXIF orientation 6 applied (rotated 90 degrees clockwise)"]


def test_animated_gif_takes_first_frame(tmp_path):
    frames = [Image.fromarray(_grey(s), mode="L").convert("P") for s in (19, 20)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with Image.open(path) as first:
        expected = np.asarray(first.convert("RGB"))
    loaded = image_io.load_image(path)
    np.testing.assert_array_equal(loaded.pixels, expected)
    assert "first of 2 frames used" in loaded.notes


# Refusals.


def _refused(path_or_file, match: str, **kwargs) -> str:
    with pytest.raises(ImageError, match=match) as info:
        image_io.load_image(path_or_file, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_truncated_png(tmp_path):
    path = _save(
        tmp_path,
        Image.fromarray(_rng(21).integers(0, 256, (64, 64, 3), np.uint8)),
        "t.png",
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert str(path) in _refused(path, "truncated")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    _refused(path, "not an image")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    _refused(path, "not an image")


def test_float_tiff_refused(tmp_path):
    values = _rng(22).random((H, W), dtype=np.float32)
    path = _save(tmp_path, Image.fromarray(values, mode="F"), "f.tif")
    assert Image.open(path).mode == "F"
    _refused(path, "unsupported image mode 'F'")


def test_zero_width_png_refused(tmp_path):
    path = tmp_path / "zero.png"
    path.write_bytes(_png_16bit(np.zeros((1, 0, 3), np.uint16), 2))
    _refused(path, "not an image")  # Pillow itself refuses a zero-width PNG


@pytest.mark.parametrize("size", [(0, 5), (5, 0)])
def test_zero_size_image_refused(size):
    # Formats Pillow opens with a zero side are rare; the check is exercised on an image object.
    with pytest.raises(ImageError, match="empty image"):
        image_io._decode(Image.new("RGB", size), "x.png", 100, None)


def test_max_pixels_checked_before_decoding(tmp_path, monkeypatch):
    path = _save(tmp_path, Image.fromarray(_rgb()), "a.png")

    def no_decoding(self):
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    _refused(path, r"too large \(10x6 = 60 pixels, limit 59\)", max_pixels=59)
    # Within the limit, decoding starts and meets the patch: it does intercept decoding.
    _refused(path, "pixels decoded before the size check", max_pixels=60)


def test_decompression_bomb_refused(tmp_path):
    # A valid header claiming 60000 x 60000 RGB (10.8 GB), with almost no data behind it.
    head = _png_16bit(np.zeros((1, 1, 3), np.uint16), 2)
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path = tmp_path / "bomb.png"
    path.write_bytes(head[:8] + chunk + head[8 + 25 :])
    _refused(path, "too large")
    _refused(path, "too large", max_pixels=1 << 40)  # Pillow's own limit still applies


def test_missing_file_and_directory(tmp_path):
    _refused(tmp_path / "missing.png", "no such file")
    _refused(tmp_path, "directory")


# Saving.


def test_save_rgb_round_trip(tmp_path):
    pixels = _rgb(23)
    path = tmp_path / "deep" / "er" / "out.png"
    image_io.save_image(path, pixels)
    with Image.open(path) as saved:
        assert saved.format == "PNG" and saved.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(saved), pixels)
    np.testing.assert_array_equal(image_io.load_image(path).pixels, pixels)


def test_save_honours_umask(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = tmp_path / "out.png"
    image_io.save_image(path, _rgb())
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temporary file left


def test_save_greyscale_is_rounded_mean(tmp_path):
    pixels = _rgb(24)
    pixels[0, 0] = [0, 0, 1]  # mean 1/3 -> 0
    pixels[0, 1] = [0, 1, 1]  # mean 2/3 -> 1
    path = tmp_path / "grey.png"
    image_io.save_image(path, pixels, channels=1)
    with Image.open(path) as saved:
        assert saved.mode == "L"
        grey = np.asarray(saved)
    np.testing.assert_array_equal(grey, np.rint(pixels.astype(np.float64).mean(axis=2)))
    assert grey[0, :2].tolist() == [0, 1]
    loaded = image_io.load_image(path)
    assert loaded.channels == 1


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("x", "PNG"), ("x.bmp", "BMP"), ("x.TIFF", "TIFF"), ("x.ppm", "PPM")],
)
def test_save_format_from_extension(tmp_path, name, fmt):
    pixels = _rgb(25)
    image_io.save_image(tmp_path / name, pixels)
    with Image.open(tmp_path / name) as saved:
        assert saved.format == fmt
        np.testing.assert_array_equal(np.asarray(saved), pixels)


@pytest.mark.parametrize("name", ["x.jpg", "x.webp", "x.xyz"])
def test_save_refuses_unknown_or_lossy_extension(tmp_path, name):
    with pytest.raises(ImageError, match="cannot save"):
        image_io.save_image(tmp_path / name, _rgb())
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize(
    ("pixels", "channels"),
    [
        (np.zeros((4, 4), np.uint8), 3),
        (np.zeros((4, 4, 4), np.uint8), 3),
        (np.zeros((4, 4, 3), np.float32), 3),
        (np.zeros((0, 4, 3), np.uint8), 3),
        (np.zeros((4, 4, 3), np.uint8), 2),
    ],
)
def test_save_rejects_programmer_errors(tmp_path, pixels, channels):
    with pytest.raises(ValueError):
        image_io.save_image(tmp_path / "x.png", pixels, channels=channels)


def test_save_unwritable_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(NLQError, match="cannot write"):
        image_io.save_image(blocker / "x.png", _rgb())


# Pixel conversions.


def test_to_float():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = image_io.to_float(pixels)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, (np.arange(256) / 255).astype(np.float32).reshape(16, 16))
    with pytest.raises(ValueError):
        image_io.to_float(np.zeros(3, np.float32))


def test_to_uint8_inverts_to_float():
    pixels = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(image_io.to_uint8(image_io.to_float(pixels)), pixels)


def test_to_uint8_clips_and_rounds_half_to_even():
    # k / 510 = (k / 2) / 255 exactly at halves for odd k, where float64 x * 255 == k / 2.
    halves = np.array([1, 3, 5, 7]) / 510
    assert np.all(halves * 255 == np.array([0.5, 1.5, 2.5, 3.5]))
    assert image_io.to_uint8(halves).tolist() == [0, 2, 2, 4]
    x = np.array([-0.5, 0.0, 1.0, 1.5, np.inf, -np.inf, np.nan])
    assert image_io.to_uint8(x).tolist() == [0, 0, 255, 255, 255, 0, 0]
    assert image_io.to_uint8(x).dtype == np.uint8


def test_to_uint8_float32_uses_exact_product():
    x = _rng(26).random(10_000).astype(np.float32)
    expected = np.round(x.astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(image_io.to_uint8(x), expected)


def test_helpers_under_jax_jit():
    jax = pytest.importorskip("jax")
    pixels = np.arange(256, dtype=np.uint8)
    round_trip = jax.jit(lambda p: image_io.to_uint8(image_io.to_float(p)))(
        jax.numpy.asarray(pixels)
    )
    assert isinstance(round_trip, jax.Array)
    np.testing.assert_array_equal(np.asarray(round_trip), pixels)
