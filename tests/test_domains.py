"""The domain adapter (`nlq_jax.domains`): what the codec asks of a kind of signal.

Expected values come from numpy written out here (`np.pad`, slicing, `/ 255`), and for a
second, test-only domain (audio: [samples, channels]) from the same formulas on one axis.
"""

from __future__ import annotations

import numpy as np
import pytest

from nlq_jax import domains
from nlq_jax.codec import container
from nlq_jax.domains import IMAGE, Domain
from nlq_jax.errors import ImageError

AUDIO = Domain(
    name="audio", code=1, batch_key="audio", rate_unit="bps", spatial_axes=(1,), channels=(1, 2)
)


@pytest.fixture
def audio(monkeypatch) -> Domain:
    """A second domain, known to `get_domain` and the container for one test."""
    monkeypatch.setitem(domains.DOMAINS, AUDIO.name, AUDIO)
    return AUDIO


def test_registry():
    assert domains.get_domain("image") is IMAGE
    assert domains.domain_of_code(0) is IMAGE
    with pytest.raises(ValueError, match="unknown domain 'audio'; known domains: image"):
        domains.get_domain("audio")
    with pytest.raises(ValueError, match="unknown domain code 1"):
        domains.domain_of_code(1)


def test_registered_domain_is_found(audio):
    assert domains.get_domain("audio") is audio and domains.domain_of_code(1) is audio


def test_image_shapes():
    assert IMAGE.rank == 3 and AUDIO.rank == 2
    assert IMAGE.spatial_shape((480, 640, 3)) == (480, 640)
    assert IMAGE.num_samples((480, 640, 3)) == 480 * 640 == IMAGE.rate_units((2, 480, 640, 3))
    assert IMAGE.header_shape((2, 480, 640, 3)) == (480, 640, 3)
    assert IMAGE.header_shape((2, 480, 640, 3), channels=1) == (480, 640, 1)
    assert IMAGE.padded_shape((480, 641), 16) == (480, 656)
    assert AUDIO.spatial_shape((48000, 2)) == (48000,)
    assert AUDIO.rate_units((4, 48000, 2)) == 48000


@pytest.mark.parametrize(
    ("domain", "shape", "message"),
    [
        (IMAGE, (480, 640), "invalid image shape"),
        (IMAGE, (480, 640, 3, 1), "invalid image shape"),
        (IMAGE, (480, 640.0, 3), "invalid image shape"),
        (IMAGE, (0, 640, 3), "absurd image size 0x640 (each side must be 1..65535)"),
        (IMAGE, (480, 65536, 3), "absurd image size 480x65536"),
        (IMAGE, (480, 640, 2), "invalid channel count 2 (must be 1 or 3)"),
        (AUDIO, (65536 * 100, 3), "invalid channel count 3 (must be 1 or 2)"),
        (AUDIO, (1 << 32, 2), "absurd audio size 4294967296"),
    ],
)
def test_check_shape_refuses(domain, shape, message):
    with pytest.raises(ValueError) as info:
        domain.check_shape(shape)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_check_shape_accepts():
    assert IMAGE.check_shape([65535, 1, 1]) == (65535, 1, 1)
    assert AUDIO.check_shape((np.int64(65536 * 100), 2)) == (65536 * 100, 2)


def test_to_model_input_scales_uint8_to_unit_floats():
    pixels = np.arange(2 * 3 * 5 * 3).reshape(2, 3, 5, 3).astype(np.uint8)
    x = IMAGE.to_model_input(pixels)
    assert x.dtype == np.float32 and x.shape == (2, 3, 5, 3)
    np.testing.assert_array_equal(x, pixels.astype(np.float32) / np.float32(255))
    assert IMAGE.to_model_input(pixels[0]).shape == (1, 3, 5, 3)
    for bad in (pixels.astype(np.float32), pixels[..., :1], pixels[0, 0], pixels[None]):
        with pytest.raises(ImageError, match="expected uint8 images"):
            IMAGE.to_model_input(bad)


def test_pad_and_crop_along_the_spatial_axes():
    rng = np.random.default_rng(0)
    x = rng.random((2, 5, 7, 3)).astype(np.float32)
    padded = IMAGE.pad(x, 4)
    expected = np.pad(x, ((0, 0), (0, 3), (0, 1), (0, 0)), mode="edge")
    np.testing.assert_array_equal(padded, expected)
    np.testing.assert_array_equal(IMAGE.pad(x[:, :4, :4], 4), x[:, :4, :4])  # a multiple
    np.testing.assert_array_equal(IMAGE.crop(padded, (5, 7, 3)), x)
    # Audio: only the sample axis.
    wave = rng.random((3, 10, 2)).astype(np.float32)
    np.testing.assert_array_equal(
        AUDIO.pad(wave, 8), np.pad(wave, ((0, 0), (0, 6), (0, 0)), mode="edge")
    )
    np.testing.assert_array_equal(AUDIO.crop(AUDIO.pad(wave, 8), (10, 2)), wave)
    assert AUDIO.to_model_input(np.zeros((10, 2), np.uint8)).shape == (1, 10, 2)


def test_an_audio_header_round_trips_through_the_container(audio):
    """The container's version 3 records any domain's shape: nothing image-specific needed."""
    wave = np.zeros((2, 441000, 2), np.uint8)
    shape = audio.header_shape(wave.shape)
    header = container.Header("wave", bytes(16), shape=shape, domain=audio)
    got, streams = container.unpack(container.pack(header, [b"\x01", b""]))
    assert got == header and got.domain is audio and got.shape == (441000, 2)
    assert streams == [b"\x01", b""]


def test_the_codec_asks_the_models_domain():
    """A `Codec` takes its model class's domain (an image when it names none) and writes the
    domain and shape into version-3 files; a greyscale file records 1 channel."""
    from conftest import small_codec

    codec = small_codec("factorized", trained=False)
    assert codec.domain is domains.get_domain(getattr(codec.module.Model, "domain", "image"))
    pixels = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    data = codec.compress(pixels, channels=1)
    header, _ = container.unpack(data)
    assert data[4] == 3 and header.domain is IMAGE and header.shape == (20, 30, 1)
    decoded = codec.decompress(data)
    assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8
    assert (decoded[..., 0] == decoded[..., 2]).all()
    assert codec.forward(pixels)["x_hat"].shape == (1, 20, 30, 3)
