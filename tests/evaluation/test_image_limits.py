"""`nlq eval` and `nlq baselines` on a folder holding an image over Pillow's pixel limit: one
line and exit 2, not a DecompressionBombError traceback (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_codec
from PIL import Image

from nlq_jax import cli


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    """Two images, the first over twice Pillow's pixel limit (lowered here to 100 pixels:
    Pillow refuses such an image when it opens it, as it would a real 180-megapixel one)."""
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(data / "a.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(data / "b.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    return data


def test_baselines_and_eval_refuse_a_bomb_in_one_line(tmp_path, folder, capsys):
    export = small_codec("hyperprior", trained=False).save(tmp_path / "export")
    for argv in (
        ["baselines", "--codec", "jpeg", "--quality", "jpeg=50", "--no-progress"],
        ["eval", "--checkpoint", str(export), "--no-warmup", "--no-progress"],
    ):
        out = tmp_path / argv[0]
        argv = [*argv, "--data", str(folder), "--out", str(out / "r.json")]
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"nlq {argv[0]}: error:"), err
        assert "a.png" in err[0] and "decompression bomb" in err[0].lower(), err
