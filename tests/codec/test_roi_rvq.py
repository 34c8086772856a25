"""Region-of-interest bits for the RVQ model (issue 16, item 4): `compress(pixels, roi=MASK)`.

The latent positions the region touches get every coded stage, the others the first
`roi_stages_outside`; the file's stage map carries the region, so decoding needs nothing else.
The property: at equal file size, PSNR inside the region higher and outside lower than without
the mask. It is measured on a small trained RVQ model (tests/codec/test_progressive.py's
`trained_rvq`) and crops it never saw, against the no-mask files' curve of PSNR against file
size (1, 2, 3 stages) interpolated at the region file's size: real bytes, numpy's PSNR over
the mask's pixels.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from conftest import small_codec
from PIL import Image
from test_discrete_training import trained_rvq

from nlq_jax import cli, models
from nlq_jax.codec import container
from nlq_jax.codec.api import Codec, pad_to_multiple, to_model_input
from nlq_jax.errors import ImageError
from nlq_jax.models import nlq

# Small and quick to compile: no attention, random codebooks (no k-means on a first batch).
TINY = {"N": 16, "latent_dim": 8, "attention": False}
TINY_QUANTIZERS = {
    "rvq": {"name": "rvq", "codebook_size": 32, "num_stages": 3, "kmeans_init": False},
    "fsq": {"name": "fsq", "levels": (5, 3)},
}


@functools.cache
def random_nlq(quantizer: str = "rvq") -> Codec:
    """A tiny NLQ model with random weights."""
    kwargs = TINY | {"quantizer": TINY_QUANTIZERS[quantizer]}
    model = models.get_model("nlq", **kwargs)
    x = np.zeros((1, 16, 16, 3), np.float32)
    rngs = {name: jax.random.PRNGKey(i) for i, name in enumerate(("params", "quantizer"))}
    variables = dict(jax.jit(functools.partial(model.init, training=True))(rngs, x))
    params = variables.pop("params")
    return Codec("nlq", kwargs, params, model_state=variables, label=quantizer)


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    return float(10 * np.log10(255.0**2 / d[mask].mean()))


def centred_mask(h: int, w: int) -> np.ndarray:
    """Half the height, three quarters of the width, centred: on a 224² crop it touches 8 × 12
    of the 14 × 14 latent positions (49 %)."""
    mask = np.zeros((h, w), bool)
    mask[h // 4 : 3 * h // 4, w // 8 : 7 * w // 8] = True
    return mask


@pytest.mark.slow
def test_region_gets_the_bits_at_equal_file_size():
    """The region file (2 stages inside, 1 outside) against the no-mask curve at its size.

    Measured on the 8 held-out 224² crops, mean (and smallest) gain inside, mean (and
    smallest) loss outside: seed 0 (this test's) +0.32 (+0.14) / −0.44 (−0.14) dB; seed 1
    +0.40 (+0.12) / −0.56 (−0.20) dB; seed 2 +0.30 (+0.10) / −0.43 (−0.08) dB, every crop with
    the right sign on every seed. The region files were 0.87 × the 2-stage files' size, inside
    the 1..2-stage interval. Asserted: mean inside ≥ +0.15 dB, mean outside ≤ −0.2 dB, the
    sign on at least 6 of the 8 crops. (3 stages inside, 1 outside, near the 2-stage size,
    gains less inside: +0.17 / +0.21 / +0.13 dB, outside −0.80 / −0.94 / −0.76 dB; a third
    stage adds little at this size, see test_discrete_training.)
    """
    codec, held = trained_rvq()
    mask = centred_mask(*held.shape[1:3])
    inside, outside = [], []
    for pixels in held:
        sizes, curve_in, curve_out = [], [], []
        for stages in (1, 2, 3):
            data = codec.compress(pixels, num_stages=stages)
            decoded = codec.decompress(data)
            sizes.append(len(data))
            curve_in.append(masked_psnr(pixels, decoded, mask))
            curve_out.append(masked_psnr(pixels, decoded, ~mask))
        data = codec.compress(pixels, num_stages=2, roi=mask)
        decoded = codec.decompress(data)
        assert sizes[0] < len(data) < sizes[1]  # interpolated, not extrapolated
        inside.append(masked_psnr(pixels, decoded, mask) - np.interp(len(data), sizes, curve_in))
        outside.append(masked_psnr(pixels, decoded, ~mask) - np.interp(len(data), sizes, curve_out))
    inside, outside = np.array(inside), np.array(outside)
    print(f"region file against the no-mask curve: inside {np.round(inside, 2)} dB, "
          f"outside {np.round(outside, 2)} dB")  # fmt: skip
    assert inside.mean() >= 0.15 and outside.mean() <= -0.2
    assert (inside > 0).sum() >= 6 and (outside < 0).sum() >= 6


@pytest.mark.slow
def test_the_file_carries_the_region_and_decodes_from_it_alone():
    """The stage map holds the latent mask (the 16 × 16 blocks the region touches); stage s
    codes the positions with at least s stages; the decoder rebuilds the same indices and
    decodes each position from its own stages."""
    codec = random_nlq()
    pixels = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    mask = np.zeros((40, 56), bool)
    mask[20:22, 33:35] = True  # touches one position: row 1, column 2 (of 3 × 4)
    data = codec.compress(pixels, roi=mask, roi_stages_outside=2)
    header, streams = container.unpack(data)
    assert header.progressive and len(streams) == 4
    assert streams[0][0] == 2  # the stages outside
    latent = np.zeros((3, 4), bool)
    latent[1, 2] = True
    stages = np.where(latent, 3, 2)
    x = pad_to_multiple(to_model_input(pixels), 16)
    expected = codec.runner.call("indices", x)
    coder, prior = codec.runner.coder("indices"), nlq.index_prior(codec.model)
    decoded = nlq.decode_stages(coder, prior, streams[1:], (1, 3, 4, 3), stages)
    np.testing.assert_array_equal(decoded[..., :2], expected[..., :2])
    np.testing.assert_array_equal(decoded[0, ..., 2], np.where(latent, expected[0, ..., 2], 0))
    x_hat = codec.runner.call("synthesis_stages", decoded, stages[None].astype(np.int32))
    np.testing.assert_array_equal(codec.decompress_float(data)[1], x_hat[0, :40, :56])
    # Cut after stage 2: every position has its first two stages, a plain 2-stage decode.
    cut = data[: len(data) - len(streams[3]) - 4]
    np.testing.assert_array_equal(
        codec.decompress_float(cut)[1], codec.decompress_float(data, num_stages=2)[1]
    )
    np.testing.assert_array_equal(
        codec.decompress_float(cut)[1],
        codec.runner.call("synthesis_indices", expected[..., :2])[0, :40, :56],
    )


def test_a_region_of_everything_or_nothing_is_the_plain_file():
    codec = random_nlq()
    pixels = np.random.default_rng(2).integers(0, 256, (33, 47, 3), dtype=np.uint8)
    ones, zeros = np.ones((33, 47), np.uint8), np.zeros((33, 47), bool)
    assert codec.compress(pixels, roi=ones) == codec.compress(pixels)
    assert codec.compress(pixels, roi=zeros) == codec.compress(pixels, num_stages=1)
    assert codec.compress(pixels, roi=zeros, roi_stages_outside=2) == codec.compress(
        pixels, num_stages=2
    )
    # A float mask is a mask (nonzero: the region); one per image in a batch. (Batches against
    # batches: a batch's analysis may round a code differently from a single image's.)
    mask = np.zeros((33, 47), np.float32)
    mask[:10, :10] = 0.5
    pair = np.stack([pixels, pixels])
    batch = codec.compress_batch(pair, roi=np.stack([mask, zeros]))
    assert batch[0] == codec.compress_batch(pair, roi=mask > 0)[0]
    assert batch[1] == codec.compress_batch(pair, num_stages=1)[1]
    assert batch[0] != batch[1]


def test_bad_regions_are_refused():
    codec = random_nlq()
    pixels = np.zeros((32, 32, 3), np.uint8)
    for bad in (np.ones((32, 31)), np.ones((2, 32, 32)), np.ones(32)):
        with pytest.raises(ImageError, match="region-of-interest mask"):
            codec.compress(pixels, roi=bad)
    for outside in (0, 4):
        with pytest.raises(ValueError, match="roi_stages_outside"):
            codec.compress(pixels, roi=np.ones((32, 32)), roi_stages_outside=outside)
    with pytest.raises(ValueError, match="roi_stages_outside must be in 1..2"):
        codec.compress(pixels, roi=np.ones((32, 32)), num_stages=2, roi_stages_outside=3)
    with pytest.raises(ValueError, match="region-of-interest"):
        small_codec("factorized", trained=False).compress(pixels, roi=np.ones((32, 32)))


@pytest.mark.slow
def test_cli_compress_with_a_region(tmp_path, capsys):
    """`nlq compress IN OUT --roi MASK.png` (greyscale or RGB, the region above 127); a mask of
    another size, an unreadable one, or a model without region coding: one error line."""
    codec = random_nlq()
    export = codec.save(tmp_path / "rvq")
    pixels = np.random.default_rng(3).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    grey = np.zeros((48, 40), np.uint8)
    grey[:16, :16] = 200
    grey[30:, 30:] = 100  # not above 127: outside
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([np.zeros_like(grey), grey, grey], -1)).save(tmp_path / "rgb.png")
    expected = codec.compress(pixels, roi=grey > 127)
    for mask in ("grey.png", "rgb.png"):
        out = tmp_path / f"{mask}.nlq"
        argv = ["compress", str(tmp_path / "in.png"), str(out), "--checkpoint", str(export)]
        assert cli.main([*argv, "--roi", str(tmp_path / mask), "-q"]) == 0
        assert out.read_bytes() == expected
        assert cli.main(["decompress", str(out), str(tmp_path / "out.png"), "-q"]) == 0
    Image.fromarray(grey[:, :39]).save(tmp_path / "small.png")
    (tmp_path / "bad.png").write_text("not a png")
    factorized = small_codec("factorized", trained=False).save(tmp_path / "factorized")
    fsq = random_nlq("fsq").save(tmp_path / "fsq")
    cases = {
        (export, "small.png"): f"--roi: {tmp_path / 'small.png'} is 39×48, the image",
        (export, "bad.png"): "bad.png",
        (export, "missing.png"): "missing.png",
        (factorized, "grey.png"): "model 'factorized' has no region-of-interest coding",
        (fsq, "grey.png"): "model 'nlq' has no region-of-interest coding",
    }
    for (directory, mask), words in cases.items():
        argv = ["compress", str(tmp_path / "in.png"), str(tmp_path / "x.nlq"), "--checkpoint"]
        assert cli.main([*argv, str(directory), "--roi", str(tmp_path / mask)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nlq compress: error: --roi"), err
        assert words in err[0], (words, err)
        if directory != export:  # the models that have it, from their compress's signature
            assert "nlq" in err[0].split("region-of-interest coding")[-1], err
    assert not (tmp_path / "x.nlq").exists()
