"""Baseline codecs: real files, 8-bit RGB round trips, and the settings the field uses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from nlq_jax.baselines import codecs
from nlq_jax.errors import NLQError
from nlq_jax.metrics import psnr


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.ascontiguousarray(skdata.astronaut()[100:164, 150:246])  # 64 x 96 natural crop


def _codec_or_skip(key: str) -> codecs.Baseline:
    try:
        return codecs.get_codec(key)
    except NLQError as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("key", list(codecs.CODECS))
def test_round_trip_gives_uint8_rgb_of_the_original_size(key, pixels):
    codec = _codec_or_skip(key)
    data = codec.encode(pixels, codec.qualities[len(codec.qualities) // 2])
    assert isinstance(data, bytes) and len(data) > 0
    out = codec.decode(data)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    assert psnr.psnr(pixels, out) > 20.0


@pytest.mark.parametrize("key", list(codecs.CODECS))
def test_higher_quality_costs_more_bytes_and_gives_higher_psnr(key, pixels):
    codec = _codec_or_skip(key)
    low, high = codec.qualities[0], codec.qualities[-1]
    data_low, data_high = codec.encode(pixels, low), codec.encode(pixels, high)
    assert len(data_high) > len(data_low)
    assert psnr.psnr(pixels, codec.decode(data_high)) > psnr.psnr(pixels, codec.decode(data_low))


@pytest.mark.parametrize(("key", "fmt"), [("jpeg", "JPEG"), ("webp", "WEBP")])
def test_jpeg_and_webp_files_are_those_compressai_measures(key, fmt, pixels):
    # CompressAI's bench: Image.save(tmp, format=fmt, quality=q) with Pillow's defaults.
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt, quality=35)
    assert codecs.get_codec(key).encode(pixels, 35) == buf.getvalue()


def test_hevc_anchor_codes_chroma_at_full_resolution(pixels):
    codec = _codec_or_skip("hevc")
    import pillow_heif

    heif = pillow_heif.open_heif(io.BytesIO(codec.encode(pixels, 30)))
    assert heif.info["chroma"] == 444


def test_fingerprint_changes_with_the_settings():
    class SlowAVIF(codecs.AVIF):
        def settings(self) -> dict:
            return {**super().settings(), "speed": 2}

    try:
        a, b = codecs.AVIF(), SlowAVIF()
        assert a.fingerprint() != b.fingerprint()
    except NLQError as e:
        pytest.skip(str(e))


def test_unknown_codec_and_bad_quality_are_user_errors():
    with pytest.raises(NLQError, match="unknown codec 'bpg'"):
        codecs.parse_codecs("jpeg,bpg")
    with pytest.raises(NLQError, match="0..100"):
        codecs.get_codec("jpeg").check_quality(101)
    assert [c.key for c in codecs.parse_codecs(["jpeg,webp", "jpeg"])] == ["jpeg", "webp"]
