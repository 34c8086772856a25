"""NLQ and VQ-VAE-2: the model contract, and bitstreams that decode exactly, for every quantizer.

The exactness tests compare the decoder's reconstruction with the eval-mode forward's, bit for
bit, at an odd image size (the codec pads), for each quantizer of `nlq_jax.quantizers`.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from nlq_jax import checkpoint, losses, models, quantizers, train
from nlq_jax.codec import container
from nlq_jax.codec.api import Codec, pad_to_multiple, to_model_input
from nlq_jax.config_base import discrete_base
from nlq_jax.errors import CheckpointError, FormatError
from nlq_jax.models import nlq

TINY = {"N": 16, "latent_dim": 8}
RVQ2 = {"name": "rvq", "codebook_size": 32, "num_stages": 2}
# name → (model, kwargs): every quantizer, a conditional prior, and the two-level model.
VARIANTS = {
    "vq": ("nlq", {"quantizer": {"name": "vq", "codebook_size": 32}}),
    "rvq": ("nlq", {"quantizer": {"name": "rvq", "codebook_size": 32, "num_stages": 3}}),
    "rvq-conditional": ("nlq", {"quantizer": RVQ2, "conditional_prior": True}),
    "pvq": ("nlq", {"quantizer": {"name": "pvq", "codebook_size": 32, "groups": 2}}),
    "fsq": ("nlq", {"quantizer": {"name": "fsq", "levels": (5, 5, 3)}}),
    "scalar": ("nlq", {"quantizer": {"name": "scalar", "levels": 7}}),
    "gumbel": ("nlq", {"quantizer": {"name": "gumbel", "codebook_size": 32}}),
    "vqvae2": ("vqvae2", {"quantizer": {"name": "vq", "codebook_size": 32}}),
    "vqvae2-s4-rvq": ("vqvae2", {"quantizer": RVQ2, "bottom_stride": 4}),
}
RNGS = {"params": 0, "noise": 1, "quantizer": 2}
ROOT = Path(__file__).resolve().parents[2]


def _rngs(offset: int = 0) -> dict:
    return {k: jax.random.PRNGKey(v + offset) for k, v in RNGS.items()}


def _images(shape=(2, 48, 64, 3), seed=0) -> np.ndarray:
    x = np.random.default_rng(seed).uniform(size=shape).astype(np.float32)
    return (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3  # a little structure


def random_codec(variant: str) -> Codec:
    """Random weights; the quantizer state after one training call (k-means initialised)."""
    name, kwargs = VARIANTS[variant]
    kwargs = TINY | kwargs
    model = models.get_model(name, **kwargs)
    x = _images()
    variables = dict(model.init(_rngs(), x, training=True))
    _, state = model.apply(variables, x, training=True, rngs=_rngs(1), mutable=["quantizer_state"])
    variables.update(state)
    params = variables.pop("params")
    return Codec(name, kwargs, params, model_state=variables, label=variant)


def test_forward_contract():
    model = models.get_model("nlq", **TINY, quantizer=RVQ2)
    x = _images()
    variables = model.init(_rngs(), x, training=True)
    assert {"g_a", "g_s", "prior"} <= set(variables["params"])
    assert set(variables) == {"params", "quantizer_state"}  # EMA codebooks: no params
    assert set(variables["quantizer_state"]) == {"latent_quantizer"}
    for training in (True, False):
        out, _ = model.apply(
            variables, x, training=training, rngs=_rngs(1), mutable=["quantizer_state"]
        )
        assert out["x_hat"].shape == x.shape
        assert set(out["bits"]) == {"indices"} and out["bits"]["indices"].shape == (2,)
        assert {"loss", "usage", "perplexity", "dead_codes", "fixed_bits"} <= set(out["aux"])
        positions = (48 // 16) * (64 // 16)
        expected = positions * 2 * math.log2(32)  # S·log2 K per position, by hand
        np.testing.assert_allclose(out["aux"]["fixed_bits"], [expected] * 2, rtol=1e-6)
        # A fresh prior is uniform: the rate is exactly the fixed-length one.
        np.testing.assert_allclose(out["bits"]["indices"], out["aux"]["fixed_bits"], rtol=1e-5)
        _, metrics = losses.rate_distortion_loss(x, out, 0.01)
        assert {"aux_loss", "fixed_bpp", "usage", "perplexity", "dead_codes"} <= set(metrics)
        np.testing.assert_allclose(metrics["fixed_bpp"], expected / (48 * 64), rtol=1e-6)


def test_default_sizes_and_configs_build_the_models():
    for q in range(1, 9):
        sizes = nlq.get_default_sizes(q)
        assert sizes["quantizer"]["num_stages"] >= 1 and sizes["quantizer"]["codebook_size"] > 1
    with pytest.raises(ValueError):
        nlq.get_default_sizes(0)
    for name in ("vqvae", "rvq", "pvq", "fsq", "vqvae2"):
        spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for arg in (None, "runlocal"):
            c = module.get_config(arg)
            model = models.get_model(c.model.name, **train.model_kwargs(c))
            assert c.data.crop_size % model.stride == 0
            assert math.prod(nlq.build_quantizer(model).num_codes) > 1
            # The config writes out every option of its quantizer (but the shard_map-only
            # axis_name), so each one can be overridden on the locked config.
            options = c.model.quantizer.to_dict()
            expected = {"name", *quantizers.option_names(options["name"])} - {"axis_name"}
            assert set(options) == expected, name
            with pytest.raises(AttributeError):
                c.model.quantizer.codebook_sise = 3  # a typo is an error
    with pytest.raises(AttributeError):
        discrete_base("nlq").lock().model.codebook_sise = 3


def test_fit_priors_is_the_smoothed_code_frequency():
    model = models.get_model("nlq", **TINY, quantizer=RVQ2, conditional_prior=True)
    indices = np.random.default_rng(0).integers(0, 32, size=(3, 5, 7, 2)).astype(np.int32)
    counts = nlq.code_counts((32, 32), True, indices)
    params = {"prior": {"logits_0": np.zeros(32), "logits_1": np.zeros((32, 32))}}
    fitted = nlq.fit_priors(model, params, {"prior": counts}, alpha=0.5)["prior"]
    # Independent computation: numpy histograms of the codes and of the (previous, code) pairs.
    marginal = np.bincount(indices[..., 0].ravel(), minlength=32) + 0.5
    pairs = np.zeros((32, 32))
    np.add.at(pairs, (indices[..., 0].ravel(), indices[..., 1].ravel()), 1)
    for logits, expected in ((fitted["logits_0"], marginal), (fitted["logits_1"], pairs + 0.5)):
        p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        np.testing.assert_allclose(p, expected / expected.sum(-1, keepdims=True), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decompress_equals_eval_forward_exactly(variant):
    codec = random_codec(variant)
    pixels = (_images((37, 51, 3), seed=3) * 255).astype(np.uint8)  # odd size: padded to 48×64
    data = codec.compress(pixels)
    header, x_hat = codec.decompress_float(data)
    forward = codec.forward(pixels)
    assert x_hat.shape == (37, 51, 3)
    np.testing.assert_array_equal(x_hat, forward["x_hat"][0])
    # The decoded indices are the eval-mode encoder's, and the coder spends about the prior's
    # information (its overhead: a 32-bit flush per stream, an RVQ's one-byte stage map).
    x = pad_to_multiple(to_model_input(pixels), codec.model.stride)
    expected = codec.runner.call("indices", x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    shapes = codec.module.latent_shapes(codec.model, 48, 64)
    _, streams = container.unpack(data)
    prior = nlq.index_prior(codec.model)
    if codec.model_name == "nlq" and nlq.prefix_stages(codec.model):  # a stream per stage
        num_stages = codec.model.quantizer["num_stages"]
        assert streams[0] == b"\x00" and len(streams) == 1 + num_stages
        every = np.full(shapes["indices"][1:3], num_stages)
        decoded = nlq.decode_stages(
            codec.runner.coder("indices"), prior, streams[1:], shapes["indices"], every
        )
        np.testing.assert_array_equal(decoded, expected[0])
    else:
        keys = [spec.name for spec in codec.module.stream_specs(codec.model, 48, 64)]
        for key, stream, indices in zip(keys, streams, expected):
            decoded = nlq.decode_indices(codec.runner.coder(key), prior, stream, shapes[key])
            np.testing.assert_array_equal(decoded, indices, err_msg=key)
    information = sum(float(b[0]) for b in forward["bits"].values())
    payload = 8 * sum(len(s) for s in streams)
    assert information - 1 <= payload <= information + len(streams) * (32 + 8) + 8
    assert codec.decompress(data).shape == (37, 51, 3)


@pytest.mark.slow
def test_rvq_prefix_files_and_bad_stage_maps():
    codec = random_codec("rvq-conditional")
    pixels = (_images((40, 40, 3), seed=4) * 255).astype(np.uint8)
    full, prefix = codec.compress(pixels), codec.compress(pixels, num_stages=1)
    assert len(prefix) < len(full)
    _, x1 = codec.decompress_float(prefix)
    # A 1-stage file decodes to the synthesis of the first stage's code alone.
    x = pad_to_multiple(to_model_input(pixels), 16)
    indices = codec.runner.call("indices", x)
    first = codec.runner.call("synthesis_indices", indices[..., :1])
    np.testing.assert_array_equal(x1, first[0, :40, :40])
    np.testing.assert_array_equal(codec.decompress_float(full, num_stages=1)[1], x1)
    with pytest.raises(ValueError, match="num_stages"):
        codec.compress(pixels, num_stages=3)
    with pytest.raises(ValueError, match="num_stages"):
        codec.decompress(full, num_stages=3)
    header, streams = container.unpack(full)
    for bad in (b"\x00\x00", b"\x02", b"\x01", b"\x01" + bytes(8)):
        with pytest.raises(FormatError, match="stage map|region-of-interest map"):
            codec.decompress(container.pack(header, [bad, *streams[1:]]))
    with pytest.raises(ValueError, match="num_stages"):
        random_codec("fsq").compress(pixels, num_stages=1)


@pytest.mark.slow
def test_rvq_files_of_version_1_still_decode():
    """Before progressive files, an RVQ file was version 1 with one stream: a stage-count byte,
    then every stage in one range coder (`encode_indices`). It decodes as before: to the
    stages it holds, or fewer (`num_stages`); a bad stage count is one FormatError."""
    codec = random_codec("rvq-conditional")
    pixels = (_images((40, 40, 3), seed=6) * 255).astype(np.uint8)
    x = pad_to_multiple(to_model_input(pixels), 16)
    indices = codec.runner.call("indices", x)
    header = container.Header("nlq", codec.hash, 40, 40, 3)
    coder, prior = codec.runner.coder("indices"), nlq.index_prior(codec.model)
    for stages in (1, 2):
        stream = bytes([stages]) + nlq.encode_indices(coder, prior, indices, stages)
        old = container.pack(header, [stream], version=1)
        assert old[4] == 1
        new = codec.compress(pixels, num_stages=stages)
        np.testing.assert_array_equal(
            codec.decompress_float(old)[1], codec.decompress_float(new)[1]
        )
        assert codec.progress(old) == codec.progress(new)
    np.testing.assert_array_equal(
        codec.decompress(old, num_stages=1), codec.decompress(codec.compress(pixels, num_stages=1))
    )
    for count in (0, 3):
        bad = container.pack(header, [bytes([count]) + stream[1:]], version=1)
        with pytest.raises(FormatError, match="stage count"):
            codec.decompress(bad)


@pytest.mark.slow
def test_export_keeps_the_quantizer_state(tmp_path):
    codec = random_codec("vq")
    assert set(codec.model_state) == {"quantizer_state"}
    # Without model state the fingerprint is that of params and tables, as before.
    plain = checkpoint.model_hash(codec.params, codec.tables)
    assert checkpoint.model_hash(codec.params, codec.tables, {}) == plain != codec.hash
    restored = Codec.load(codec.save(tmp_path / "export"))
    assert restored.hash == codec.hash
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(codec.model_state), leaves(restored.model_state), strict=True):
        np.testing.assert_array_equal(a, b)
    pixels = (_images((33, 35, 3), seed=5) * 255).astype(np.uint8)
    data = codec.compress(pixels)
    assert restored.compress(pixels) == data
    np.testing.assert_array_equal(restored.decompress(data), codec.decompress(data))
    # Other codebooks, same params and tables: the file is refused, the export is refused.
    state = jax.tree_util.tree_map(lambda a: a, codec.model_state)
    state["quantizer_state"] = dict(state["quantizer_state"])
    q = dict(state["quantizer_state"]["latent_quantizer"])
    q["codebook"] = q["codebook"] * 1.001
    state["quantizer_state"]["latent_quantizer"] = q
    other = Codec("nlq", codec.model_kwargs, codec.params, codec.tables, model_state=state)
    assert other.hash != codec.hash
    meta = (tmp_path / "export" / "model.json").read_text()
    other.save(tmp_path / "export")
    (tmp_path / "export" / "model.json").write_text(meta)
    with pytest.raises(CheckpointError, match="hash"):
        Codec.load(tmp_path / "export")


@pytest.mark.parametrize("version", [1, 2])
def test_exports_with_flat_quantizer_arguments_still_load(tmp_path, version):
    """An export written before the quantizer sub-dict stores the quantizer's options flat
    (quantizer="rvq", codebook_size=...): it loads as the model they meant, with the parameter
    names it has (latent_quantizer, prior, ...), and keeps its hash, so its files decode."""
    codec = random_codec("rvq-conditional")
    flat = {**TINY, "quantizer": "rvq", "codebook_size": 32, "num_stages": 2,
            "conditional_prior": True}  # fmt: skip
    path = checkpoint.export(
        tmp_path / "old", "nlq", flat, codec.params, codec.tables,
        model_state=codec.model_state, version=version,
    )  # fmt: skip
    meta = json.loads((path / "model.json").read_text())
    assert meta["kwargs"] == flat
    old = Codec.load(path)
    assert old.hash.hex() == meta["hash"]  # what its files carry
    assert set(old.params) == {"g_a", "g_s", "prior"}
    assert set(old.model_state["quantizer_state"]) == {"latent_quantizer"}
    pixels = (_images((40, 40, 3), seed=7) * 255).astype(np.uint8)
    data = old.compress(pixels)
    assert len(container.unpack(data)[1]) == 3  # progressive: map, stage 1, stage 2
    for n in (1, 2):
        new = codec.compress(pixels, num_stages=n)
        np.testing.assert_array_equal(old.decompress(data, num_stages=n), codec.decompress(new))


def test_cli_codes_rvq_prefixes_and_refuses_them_elsewhere(tmp_path, capsys):
    from PIL import Image

    from nlq_jax import cli

    export = random_codec("rvq").save(tmp_path / "rvq")
    src = tmp_path / "in.png"
    Image.fromarray((_images((40, 40, 3), seed=6) * 255).astype(np.uint8)).save(src)
    sizes = {}
    for n in (1, 3):
        out = tmp_path / f"s{n}.nlq"
        argv = ["compress", str(src), str(out), "--checkpoint", str(export), "--num-stages"]
        assert cli.main([*argv, str(n), "-q"]) == 0
        sizes[n] = out.stat().st_size
        assert cli.main(["decompress", str(out), str(tmp_path / f"s{n}.png"), "-q"]) == 0
    assert sizes[1] < sizes[3]
    other = random_codec("fsq").save(tmp_path / "fsq")
    for directory, n in ((export, 4), (other, 1)):
        argv = ["compress", str(src), str(tmp_path / "x.nlq"), "--checkpoint", str(directory)]
        assert cli.main([*argv, "--num-stages", str(n)]) == 2
        assert "--num-stages" in capsys.readouterr().err
