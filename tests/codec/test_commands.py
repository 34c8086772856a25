"""`nlq compress` / `nlq decompress` / `nlq init` on real files, as a user runs them."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import small_codec
from PIL import Image

from nlq_jax import cli
from nlq_jax.codec.api import Codec
from nlq_jax.codec.image_io import load_image


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return small_codec("hyperprior", trained=True).save(tmp_path_factory.mktemp("m") / "export")


def _inputs(photo):
    rgb = photo[:67, :131]
    grey = np.round(rgb.mean(-1)).astype(np.uint8)
    return {
        "rgb.png": (Image.fromarray(rgb), 3, []),
        "grey.png": (Image.fromarray(grey, "L"), 1, []),
        "rgba.png": (Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])), 3,
                     ["alpha"]),
        "deep.png": (Image.fromarray(grey.astype(np.uint16) * 257), 1, ["16-bit"]),
        "photo.jpg": (Image.fromarray(rgb), 3, []),
    }  # fmt: skip


def test_compress_then_decompress_files_of_every_kind(tmp_path, photo, export, capsys):
    for name, (image, channels, notes) in _inputs(photo).items():
        src = tmp_path / name
        image.save(src)
        assert cli.main(["compress", str(src), str(tmp_path / "f.nlq"), "--checkpoint",
                         str(export)]) == 0  # fmt: skip
        err = capsys.readouterr().err
        for note in notes:
            assert note in err, (name, err)
        # No --checkpoint: the model is found from the hash in the file.
        out = tmp_path / (name + ".out.png")
        assert cli.main(["decompress", str(tmp_path / "f.nlq"), str(out), "-q"]) == 0
        decoded = Image.open(out)
        assert decoded.mode == ("L" if channels == 1 else "RGB")
        assert decoded.size == image.size
        codec = Codec.load(export)
        expected = codec.decompress((tmp_path / "f.nlq").read_bytes())
        if channels == 1:
            expected = expected[..., 0]
        np.testing.assert_array_equal(np.asarray(decoded), expected)
        assert load_image(src).pixels.shape == (67, 131, 3)


def test_bad_input_is_one_line_and_exit_2(tmp_path, export, capsys):
    (tmp_path / "not_an_image.png").write_text("hello")
    cases = [
        ["compress", str(tmp_path / "missing.png"), str(tmp_path / "x.nlq"), "--checkpoint",
         str(export)],
        ["compress", str(tmp_path / "not_an_image.png"), str(tmp_path / "x.nlq"),
         "--checkpoint", str(export)],
        ["compress", str(tmp_path / "not_an_image.png"), str(tmp_path / "x.nlq"),
         "--checkpoint", str(tmp_path)],
        ["decompress", str(tmp_path / "not_an_image.png"), str(tmp_path / "x.png")],
        ["init", "--model", "nope", "--out", str(tmp_path / "m")],
    ]  # fmt: skip
    for argv in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"nlq {argv[0]}: error:"), (argv, err)
    assert not (tmp_path / "x.nlq").exists()
