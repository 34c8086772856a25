"""`nlq eval` with a fake neural codec (JPEG in a header) standing in for `Codec.load`."""

from __future__ import annotations

import io
import json
import sys
import types

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from nlq_jax import cli
from nlq_jax.errors import CheckpointError

MAGIC = b"FAKE-NLQ-HEADER!"  # 16 bytes of "header" that bpp must count


class FakeCodec:
    """JPEG at the quality written in the checkpoint directory's name, behind a header."""

    def __init__(self, directory: str):
        self.quality = int(str(directory).rsplit("-q", 1)[1])
        self.name = f"fake-q{self.quality}"
        self.calls: list[tuple[int, ...]] = []

    def compress(self, pixels: np.ndarray) -> bytes:
        self.calls.append(pixels.shape)
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", quality=self.quality)
        return MAGIC + buf.getvalue()

    def decompress(self, data: bytes) -> np.ndarray:
        assert data.startswith(MAGIC)
        return np.asarray(Image.open(io.BytesIO(data[len(MAGIC) :])).convert("RGB"))


@pytest.fixture()
def loaded(monkeypatch):
    """Patches Codec.load; returns the codecs it made."""
    try:
        from nlq_jax.codec import api
    except ImportError:  # the real API is not there yet: a stand-in module
        api = types.ModuleType("nlq_jax.codec.api")
        api.Codec = type("Codec", (), {})
        monkeypatch.setitem(sys.modules, "nlq_jax.codec.api", api)
    made = []

    def fake_load(directory, **kwargs):
        if "bad" in str(directory):
            raise CheckpointError(f"{directory}: not an export")
        made.append(FakeCodec(directory))
        return made[-1]

    monkeypatch.setattr(api.Codec, "load", staticmethod(fake_load), raising=False)
    return made


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    Image.fromarray(skdata.astronaut()[:176, :176]).save(d / "a.png")
    Image.fromarray(skdata.chelsea()[:176, :176]).save(d / "b.png")
    return d


def test_eval_writes_one_point_per_checkpoint_from_real_file_sizes(loaded, folder, tmp_path):
    out = tmp_path / "res.json"
    argv = ["eval", "--checkpoint", "run-q20", "run-q80", "--data", str(folder), "--out", str(out)]
    assert cli.main([*argv, "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert res["name"] == "fake"
    assert [p["codec"] for p in res["points"]] == ["fake-q20", "fake-q80"]
    assert set(res["results"]) == {
        "bpp",
        "psnr-rgb",
        "ms-ssim-rgb",
        "encoding_time",
        "decoding_time",
    }
    for i, codec in enumerate(loaded):
        bpps, psnrs = [], []
        for name in ("a.png", "b.png"):
            pixels = np.asarray(Image.open(folder / name).convert("RGB"))
            data = codec.compress(pixels)
            bpps.append(len(data) * 8 / (176 * 176))  # header included
            err = np.mean((pixels.astype(float) - codec.decompress(data)) ** 2)
            psnrs.append(10 * np.log10(255**2 / err))
        assert res["results"]["bpp"][i] == pytest.approx(np.mean(bpps), rel=1e-12)
        assert res["results"]["psnr-rgb"][i] == pytest.approx(np.mean(psnrs), rel=1e-12)
        assert 0.5 < res["results"]["ms-ssim-rgb"][i] < 1.0
    assert res["results"]["bpp"][0] < res["results"]["bpp"][1]
    assert res["per_image"]["b.png"]["bpp"][1] == pytest.approx(bpps[1])


def test_one_untimed_warmup_per_image_size(loaded, folder, tmp_path):
    out = tmp_path / "res.json"
    argv = ["eval", "--checkpoint", "run-q50", "--data", str(folder), "--out", str(out)]
    assert cli.main([*argv, "--no-progress"]) == 0
    assert len(loaded[0].calls) == 3  # warm-up on a.png, then a.png and b.png (same size)
    assert cli.main([*argv, "--no-progress", "--no-warmup"]) == 0
    assert len(loaded[1].calls) == 2


def test_bad_checkpoint_is_a_one_line_error(loaded, folder, tmp_path, capsys):
    argv = ["eval", "--checkpoint", "run-q50", "bad-dir", "--data", str(folder)]
    assert cli.main([*argv, "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "nlq eval: error: bad-dir: not an export"
    assert not (tmp_path / "r.json").exists()
