"""Tests of the built-in sample set: shipped files only, decoded deterministically."""

from __future__ import annotations

import socket

import numpy as np
import pytest
from PIL import Image

from nlq_jax.data import samples
from nlq_jax.errors import ImageError

pytestmark = pytest.mark.skipif(
    not samples.available_sources(),
    reason="none of scikit-image, scikit-learn, matplotlib is installed",
)


def test_at_least_three_uint8_rgb_images_sorted_by_name():
    images = samples.sample_images()
    assert len(images) >= 3
    assert list(images) == sorted(images)
    for name, pixels in images.items():
        assert pixels.dtype == np.uint8, name
        assert pixels.ndim == 3 and pixels.shape[2] == 3, name
        assert min(pixels.shape[:2]) >= 256, name
        assert not pixels.flags.writeable, name
        # Natural colour photographs: the channels are not all equal.
        assert np.any(pixels[..., 0] != pixels[..., 1]), name


def test_pixels_are_the_shipped_files_decoded():
    paths = samples._sample_paths()
    images = samples.sample_images()
    assert set(paths) == set(images)
    for name, (_, path) in paths.items():
        with Image.open(path) as image:
            np.testing.assert_array_equal(images[name], np.asarray(image.convert("RGB")), name)


def test_sources_match_images():
    sources = samples.available_sources()
    assert sources == sorted(sources)
    assert set(sources) <= {"matplotlib", "scikit-image", "scikit-learn"}
    assert set(sources) == {package for package, _ in samples._sample_paths().values()}


def test_deterministic_and_cached():
    first = samples.sample_images()
    assert samples.sample_images()[next(iter(first))] is first[next(iter(first))]
    samples._decode.cache_clear()
    samples._photo_768x512.cache_clear()
    again = samples.sample_images()
    assert list(again) == list(first)
    for name in first:
        np.testing.assert_array_equal(again[name], first[name])


def test_photo_768x512():
    photo = samples.photo_768x512()
    assert photo.shape == (512, 768, 3)
    assert photo.dtype == np.uint8
    assert not photo.flags.writeable
    samples._photo_768x512.cache_clear()
    np.testing.assert_array_equal(samples.photo_768x512(), photo)


def test_photo_768x512_is_the_motorcycle_cropped_and_resized():
    paths = samples._sample_paths()
    if "motorcycle" not in paths:
        pytest.skip("scikit-image is not installed")
    with Image.open(paths["motorcycle"][1]) as image:
        assert image.size == (741, 500)
        # Centred 3:2 crop: 741 x 494, 3 rows off the top; then Lanczos to 768 x 512.
        expected = (
            image.convert("RGB").crop((0, 3, 741, 497)).resize((768, 512), Image.Resampling.LANCZOS)
        )
    np.testing.assert_array_equal(samples.photo_768x512(), np.asarray(expected))


def test_nothing_downloads(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the sample set tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    samples._decode.cache_clear()
    samples._photo_768x512.cache_clear()
    assert len(samples.sample_images()) >= 3
    assert samples.photo_768x512().shape == (512, 768, 3)


def test_missing_packages_are_skipped(monkeypatch):
    present = samples._package_dir
    installed = {
        import_name for _, import_name, _ in samples._SAMPLES.values() if present(import_name)
    }
    if len(installed) < 2:
        pytest.skip("needs two of the sample packages installed")
    missing = min(installed)
    monkeypatch.setattr(samples, "_package_dir", lambda n: None if n == missing else present(n))
    images = samples.sample_images()
    expected = {name for name, (_, imp, _) in samples._SAMPLES.items() if imp != missing}
    assert set(images) <= expected and images
    assert len(samples.available_sources()) == len(installed) - 1


def test_no_package_installed(monkeypatch):
    monkeypatch.setattr(samples, "_package_dir", lambda name: None)
    assert samples.available_sources() == []
    with pytest.raises(ImageError, match=r"pip install nlq_jax\[data\]"):
        samples.sample_images()
    with pytest.raises(ImageError, match="scikit-image"):
        samples.photo_768x512()


def test_package_dir_of_absent_package():
    assert samples._package_dir("no_such_package_nlq_jax_test") is None
