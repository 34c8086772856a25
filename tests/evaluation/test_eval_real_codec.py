"""`nlq eval` on real exports: bpp from the real file, PSNR from the real decoded image."""

from __future__ import annotations

import json

import numpy as np
from conftest import small_codec
from PIL import Image

from nlq_jax import cli
from nlq_jax.codec.api import Codec


def test_eval_reports_real_bytes_and_psnr_per_checkpoint(tmp_path, photo):
    folder = tmp_path / "images"
    folder.mkdir()
    crops = {"a.png": photo[:64, :96], "b.png": photo[100:171, 200:253]}
    for name, px in crops.items():
        Image.fromarray(px).save(folder / name)
    exports = []
    for i, name in enumerate(("factorized", "hyperprior")):
        exports.append(str(small_codec(name, trained=False).save(tmp_path / f"e{i}")))
    out = tmp_path / "results.json"
    argv = ["eval", "--checkpoint", *exports, "--data", str(folder), "--out", str(out)]
    assert cli.main([*argv, "--no-progress"]) == 0
    res = json.loads(out.read_text())
    assert set(res["results"]) >= {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time"}
    for point, export in enumerate(exports):
        codec = Codec.load(export)
        bpps, psnrs = [], []
        for px in crops.values():
            data = codec.compress(px)
            rec = codec.decompress(data).astype(np.float64)
            bpps.append(8 * len(data) / (px.shape[0] * px.shape[1]))
            psnrs.append(10 * np.log10(255**2 / np.mean((rec - px) ** 2)))
        assert res["results"]["bpp"][point] == np.mean(bpps)
        np.testing.assert_allclose(res["results"]["psnr-rgb"][point], np.mean(psnrs), rtol=1e-9)
