"""Exports decode in a new process; other weights are refused; export metadata.

(The exactness of every model's bitstream: `tests/models/test_exactness.py`.)"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import small_codec

from nlq_jax.codec.api import Codec
from nlq_jax.errors import ModelMismatchError

SIZES = [(64, 64), (67, 131), (130, 70)]


@pytest.mark.slow
def test_restored_export_decodes_in_a_new_process(tmp_path, photo):
    codec = small_codec("mean_scale", trained=True)
    export = codec.save(tmp_path / "export")
    pixels = photo[:67, :131]
    (tmp_path / "in.nlq").write_bytes(codec.compress(pixels))
    script = f"""
import numpy as np, sys
from nlq_jax.codec.api import Codec
codec = Codec.load({str(export)!r})
data = open({str(tmp_path / "in.nlq")!r}, "rb").read()
_, x_hat = codec.decompress_float(data)
np.save({str(tmp_path / "out.npy")!r}, x_hat)
sys.stdout.write(codec.compress(np.load({str(tmp_path / "px.npy")!r})).hex())
"""
    np.save(tmp_path / "px.npy", pixels)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), codec.forward(pixels)["x_hat"][0])
    assert bytes.fromhex(result.stdout) == codec.compress(pixels)


def test_other_weights_are_refused(photo):
    a = small_codec("factorized", trained=False)
    params = jax.tree_util.tree_map(lambda p: p * 1.001, a.params)
    b = Codec("factorized", a.model_kwargs, params)
    data = a.compress(photo[:32, :32])
    with pytest.raises(ModelMismatchError, match="not by this"):
        b.decompress(data)


def test_export_metadata_is_complete(tmp_path):
    codec = small_codec("hyperprior", trained=False)
    meta = json.loads((codec.save(tmp_path / "e") / "model.json").read_text())
    assert meta["model"] == "hyperprior" and meta["kwargs"] == codec.model_kwargs
    assert bytes.fromhex(meta["hash"]) == codec.hash
    restored = Codec.load(tmp_path / "e")
    assert restored.hash == codec.hash
    for key, table in codec.tables.items():
        if hasattr(table, "cdf"):
            np.testing.assert_array_equal(restored.tables[key].cdf, table.cdf)
