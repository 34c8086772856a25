"""`nlq baselines`: CompressAI-format results from real file sizes, and a cache that is used."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from nlq_jax import cli
from nlq_jax.baselines import codecs

QUALITIES = (10, 60)


@pytest.fixture()
def folder(tmp_path):
    """Two small natural images of different content; one too small for MS-SSIM."""
    d = tmp_path / "images"
    d.mkdir()
    Image.fromarray(skdata.astronaut()[0:64, 0:80]).save(d / "a.png")
    Image.fromarray(skdata.chelsea()[100:148, 100:172]).save(d / "b.png")
    (d / "notes.txt").write_text("not an image")
    return d


def _jpeg_bpp(path, quality: int) -> float:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    return len(buf.getvalue()) * 8 / (pixels.shape[0] * pixels.shape[1])


def _run(folder, out, *extra) -> int:
    return cli.main(
        ["baselines", "--codec", "jpeg", "--data", str(folder), "--out", str(out),
         "--quality", "jpeg=" + ",".join(map(str, QUALITIES)), "--no-progress", *extra]
    )  # fmt: skip


def test_results_are_in_compressai_format_with_means_of_per_image_bpp(folder, tmp_path):
    out = tmp_path / "out"
    assert _run(folder, out) == 0
    res = json.loads((out / "jpeg.json").read_text())
    assert res["name"] == "JPEG" and "Pillow" in res["description"]
    assert set(res["results"]) == {
        "bpp",
        "psnr-rgb",
        "ms-ssim-rgb",
        "encoding_time",
        "decoding_time",
    }
    assert [p["quality"] for p in res["points"]] == list(QUALITIES)
    assert sorted(res["per_image"]) == ["a.png", "b.png"]
    for i, q in enumerate(QUALITIES):
        expected = np.mean([_jpeg_bpp(folder / n, q) for n in ("a.png", "b.png")])
        assert res["results"]["bpp"][i] == pytest.approx(expected, rel=1e-12)
        assert res["results"]["psnr-rgb"][i] == pytest.approx(
            np.mean([res["per_image"][n]["psnr-rgb"][i] for n in ("a.png", "b.png")])
        )
    # 64-pixel images are below MS-SSIM's 161-pixel minimum: reported as null, not invented.
    assert res["results"]["ms-ssim-rgb"] == [None, None]
    assert res["results"]["bpp"][0] < res["results"]["bpp"][1]


def test_a_second_run_reuses_the_cache_and_new_content_is_measured(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert _run(folder, out) == 0
    first = json.loads((out / "jpeg.json").read_text())
    calls = []
    original_encode = codecs.JPEG.encode

    def counting_encode(self, pixels, quality):
        calls.append(quality)
        return original_encode(self, pixels, quality)

    monkeypatch.setattr(codecs.JPEG, "encode", counting_encode)
    assert _run(folder, out) == 0
    assert calls == []
    assert json.loads((out / "jpeg.json").read_text())["results"] == first["results"]
    Image.fromarray(skdata.coffee()[:50, :60]).save(folder / "b.png")  # same name, new pixels
    assert _run(folder, out) == 0
    assert sorted(calls) == sorted(QUALITIES)
    assert _run(folder, out, "--force") == 0
    assert len(calls) == 3 * len(QUALITIES)


def test_bad_input_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["baselines", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nlq baselines: error:") and "\n" not in err
    assert (
        cli.main(["baselines", "--codec", "gif", "--data", str(tmp_path), "--out", str(tmp_path)])
        == 2
    )
    assert "unknown codec 'gif'" in capsys.readouterr().err
