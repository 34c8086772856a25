"""Exports' model.json: every field validated, `model` and `kwargs` covered by the hash from
version 2 on, version-1 exports (the shipped model among them) loading as before."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import small_codec
from PIL import Image

from nlq_jax import checkpoint, cli, pretrained
from nlq_jax.codec.api import Codec
from nlq_jax.errors import CheckpointError


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The same small model exported as version 2 (the default) and as version 1."""
    codec = small_codec("hyperprior", trained=False)
    root = tmp_path_factory.mktemp("exports")
    v2 = codec.save(root / "v2")
    v1 = checkpoint.export(root / "v1", codec.model_name, codec.model_kwargs, codec.params,
                           codec.tables, version=1)  # fmt: skip
    return {2: v2, 1: v1}


def _damaged(tmp_path, export, **fields):
    copy = shutil.copytree(export, tmp_path / f"damaged-{export.name}")
    meta = json.loads((copy / "model.json").read_text())
    for key, value in fields.items():
        if value is ...:
            del meta[key]
        else:
            meta[key] = value
    (copy / "model.json").write_text(json.dumps(meta))
    return copy


DAMAGES = {
    "unknown model": {"model": "nope"},
    "model not a string": {"model": 5},
    "no model": {"model": ...},
    "kwargs a list": {"kwargs": []},
    "kwargs missing": {"kwargs": ...},
    "unknown argument": {"kwargs": {"N": 32, "M": 48, "bogus": 1}},
    "string for an int": {"kwargs": {"N": "32", "M": 48}},
    "bool for an int": {"kwargs": {"N": True, "M": 48}},
    "object for a tuple": {"kwargs": {"N": 32, "M": 48, "prior_filters": {"a": 1}}},
    "string in a tuple": {"kwargs": {"N": 32, "M": 48, "prior_filters": [3, "3"]}},
    "version a string": {"version": "1"},
    "future version": {"version": 3},
    "hash a number": {"hash": 5},
    "label a list": {"label": ["x"]},
}


@pytest.mark.parametrize("version", [1, 2])
def test_damaged_fields_are_one_line(tmp_path, exports, version, capsys):
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    for name, fields in DAMAGES.items():
        damaged = _damaged(tmp_path / name.replace(" ", "_"), exports[version], **fields)
        with pytest.raises(CheckpointError):
            checkpoint.read_meta(damaged)
        argv = ["compress", str(image), str(tmp_path / "x.nlq"), "--checkpoint", str(damaged)]
        assert cli.main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nlq compress: error:"), (name, err)
        assert "model.json" in err[0], (name, err)


def test_version_2_hash_covers_model_and_kwargs(tmp_path, exports):
    meta = checkpoint.read_meta(exports[2])
    assert meta["version"] == 2
    # Valid descriptions, but not the ones the weights were exported with.
    for i, fields in enumerate([
        {"model": "mean_scale"},  # hyperprior's weights, read as another architecture
        {"kwargs": {**meta["kwargs"], "prior_medians": "stored"}},
        {"kwargs": {**meta["kwargs"], "upsampling": "transposed"}},
    ]):  # fmt: skip
        damaged = _damaged(tmp_path / str(i), exports[2], **fields)
        with pytest.raises(CheckpointError, match="model or kwargs do not match"):
            Codec.load(damaged)


def test_version_1_kwargs_must_build_the_weights(tmp_path, exports, capsys):
    """A version-1 hash does not cover kwargs: valid ones of another model size are refused
    by the shapes of the weights, in one line (they ended in a ScopeParamShapeError)."""
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    for i, kwargs in enumerate([{"N": 32, "M": 64}, {"N": 32}]):  # M: 48; default 192
        damaged = _damaged(tmp_path / str(i), exports[1], kwargs=kwargs)
        with pytest.raises(CheckpointError, match="the weights do not fit hyperprior"):
            Codec.load(damaged)
        argv = ["compress", str(image), str(tmp_path / "x.nlq"), "--checkpoint", str(damaged)]
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "do not fit" in err[0], err


def test_version_1_exports_load_with_their_hash(tmp_path, exports):
    v1, v2 = Codec.load(exports[1]), Codec.load(exports[2])
    assert v1.hash_version == 1 and v2.hash_version == 2
    # Version 1: the arrays only, as before version 2 existed.
    assert v1.hash == checkpoint.model_hash(v1.params, v1.tables)
    assert v2.hash != v1.hash
    # A version-1 codec saved again stays version 1, so its files stay decodable.
    again = v1.save(tmp_path / "again")
    assert checkpoint.read_meta(again)["version"] == 1
    assert Codec.load(again).hash == v1.hash
    data = v1.compress(np.zeros((16, 16, 3), np.uint8))
    assert Codec.load(again).decompress(data).shape == (16, 16, 3)
    # The shipped model is a version-1 export whose hash is quoted in the README.
    shipped = Codec.load("default")
    assert checkpoint.read_meta(pretrained.resolve("default"))["version"] == 1
    assert shipped.hash.hex() == "54a61cce9a6374fa06bb89452d3604ac"
