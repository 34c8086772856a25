"""The shared measurement and CompressAI's results format."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nlq_jax.errors import ImageError, NLQError
from nlq_jax.evaluation import results


def test_means_are_over_images_of_per_image_values_as_compressai_takes_them():
    per_image = [
        {
            "bpp": 0.2,
            "psnr-rgb": 40.0,
            "ms-ssim-rgb": 0.99,
            "encoding_time": 1.0,
            "decoding_time": 2.0,
        },
        {
            "bpp": 0.6,
            "psnr-rgb": 20.0,
            "ms-ssim-rgb": 0.89,
            "encoding_time": 3.0,
            "decoding_time": 4.0,
        },
    ]
    mean = results.mean_over_images(per_image)
    # 30 dB, not the PSNR of the mean MSE (10·log10(255²/mean(MSE)) ≈ 23.0 dB).
    assert mean == pytest.approx(
        {
            "bpp": 0.4,
            "psnr-rgb": 30.0,
            "ms-ssim-rgb": 0.94,
            "encoding_time": 2.0,
            "decoding_time": 3.0,
        }
    )
    per_image[1]["ms-ssim-rgb"] = None
    assert results.mean_over_images(per_image)["ms-ssim-rgb"] is None


def test_measure_counts_every_byte_and_compares_the_decoded_image():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    noisy = pixels ^ np.uint8(1)  # every value off by exactly one: MSE = 1
    m, decoded = results.measure(pixels, lambda x: b"\0" * 123, lambda data: noisy)
    assert m["bpp"] == 123 * 8 / (20 * 30)
    assert m["psnr-rgb"] == pytest.approx(20 * math.log10(255))
    assert m["ms-ssim-rgb"] is None  # 20 px: below MS-SSIM's minimum size
    assert m["encoding_time"] >= 0 and m["decoding_time"] >= 0
    assert decoded is noisy
    with pytest.raises(NLQError, match="decoded image"):
        results.measure(pixels, lambda x: b"", lambda data: noisy[:10])


def test_results_file_is_compressai_format_and_lossless_points_are_null(tmp_path):
    m = {
        "bpp": 1.0,
        "psnr-rgb": math.inf,
        "ms-ssim-rgb": 1.0,
        "encoding_time": 0.1,
        "decoding_time": 0.1,
    }
    res = results.make_results("X", "test", [{"quality": 1}], ["a.png"], [[m]])
    results.write_json(tmp_path / "r.json", res)
    obj = json.loads((tmp_path / "r.json").read_text())  # strict JSON: no Infinity
    assert obj["results"]["psnr-rgb"] == [None]
    assert obj["per_image"]["a.png"]["bpp"] == [1.0]
    assert results.read_results(tmp_path / "r.json")["name"] == "X"
    (tmp_path / "bad.json").write_text('{"name": "no results"}')
    with pytest.raises(NLQError, match="results format"):
        results.read_results(tmp_path / "bad.json")
    with pytest.raises(NLQError, match="cannot read"):
        results.read_results(tmp_path / "missing.json")


def test_image_folder_lists_images_only_and_unreadable_images_are_user_errors(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "b.png")  # grayscale
    Image.fromarray(np.zeros((4, 4, 4), np.uint8)).save(tmp_path / "a.png")  # RGBA
    (tmp_path / "c.txt").write_text("x")
    paths = results.list_images(tmp_path)
    assert [p.name for p in paths] == ["a.png", "b.png"]
    assert all(results.read_image(p).shape == (4, 4, 3) for p in paths)
    (tmp_path / "d.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="d.png"):
        results.read_image(tmp_path / "d.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NLQError, match="no images"):
        results.list_images(tmp_path / "empty")


def test_image_hash_depends_on_pixels_not_on_the_file():
    a = np.zeros((4, 6, 3), np.uint8)
    assert results.image_hash(a) == results.image_hash(a.copy())
    assert results.image_hash(a) != results.image_hash(a.reshape(6, 4, 3))
    b = a.copy()
    b[0, 0, 0] = 1
    assert results.image_hash(a) != results.image_hash(b)
