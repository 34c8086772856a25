"""The bitstream is exact: decompress(compress(x)) is the eval-mode forward's reconstruction."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import MODEL_NAMES, small_codec

from nlq_jax.codec import container
from nlq_jax.codec.api import Codec, pad_to_multiple, to_model_input
from nlq_jax.errors import ModelMismatchError

SIZES = [(64, 64), (67, 131), (130, 70)]


def forward_latents(codec: Codec, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """The quantized latents the eval-mode forward feeds on (captured, not recomputed)."""
    x = pad_to_multiple(to_model_input(pixels), codec.model.stride)
    _, state = codec.model.apply(
        {"params": codec.params}, x, training=False, capture_intermediates=True
    )
    inter = state["intermediates"]
    out = {}
    for name in ("entropy_bottleneck", "gaussian_conditional"):
        if name in inter:
            out[name] = np.asarray(inter[name]["__call__"][0][0])
    return out


def decoded_latents(codec: Codec, data: bytes) -> dict[str, np.ndarray]:
    """The dequantized latents the decoder reconstructs from the file's streams alone."""
    from nlq_jax.models import base

    header, streams = codec.decode_header(data)
    s = codec.model.stride
    h, w = header.height + (-header.height % s), header.width + (-header.width % s)
    shapes = codec.module.latent_shapes(codec.model, h, w)
    t, runner = codec.tables, codec.runner
    if codec.model_name == "factorized":
        sym = runner.coder("y").decode(streams[0], base.channel_indexes(shapes["y"]))
        return {"entropy_bottleneck": base.dequantize(sym, t["y_medians"])}
    z_sym = runner.coder("z").decode(streams[0], base.channel_indexes(shapes["z"]))
    z_hat = base.dequantize(z_sym, t["z_medians"])
    indexes, means = runner.call("hyper_synthesis", z_hat)
    y_hat = base.dequantize(runner.coder("y").decode(streams[1], indexes), means)
    return {"entropy_bottleneck": z_hat, "gaussian_conditional": y_hat}


@pytest.mark.slow
@pytest.mark.parametrize("trained", [False, True], ids=["random", "trained"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_decompress_equals_eval_forward_exactly(name, trained, photo):
    codec = small_codec(name, trained)
    for h, w in SIZES:
        pixels = photo[100 : 100 + h, 200 : 200 + w]
        data = codec.compress(pixels)
        _, x_hat = codec.decompress_float(data)
        expected = codec.forward(pixels)["x_hat"][0]
        assert x_hat.shape == (h, w, 3)
        np.testing.assert_array_equal(x_hat, expected)
        ours, theirs = decoded_latents(codec, data), forward_latents(codec, pixels)
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_file_bytes_match_eval_bits_within_one_percent(name, photo):
    codec = small_codec(name, trained=True)
    data = codec.compress(photo)
    bits = sum(float(b.sum()) for b in codec.forward(photo)["bits"].values())
    header, streams = container.unpack(data)
    overhead = container.HEADER_OVERHEAD(len(streams), len(header.model_name))
    assert len(data) == overhead + sum(len(s) for s in streams)
    payload_bits = 8 * (len(data) - overhead)
    assert abs(payload_bits / bits - 1) < 0.01, (payload_bits, bits)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_bytes_independent_of_batch_and_jit(name, photo):
    codec = small_codec(name, trained=True)
    images = np.stack([photo[i * 40 : i * 40 + 67, i * 50 : i * 50 + 131] for i in range(4)])
    singles = [codec.compress(im) for im in images]
    assert codec.compress_batch(images) == singles
    eager = Codec(name, codec.model_kwargs, codec.params, codec.tables, jit=False)
    assert eager.compress(images[1]) == singles[1]
    np.testing.assert_array_equal(eager.decompress(singles[2]), codec.decompress(singles[2]))


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
