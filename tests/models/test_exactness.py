"""One exactness test for every registered model (`nlq_jax.models.MODELS`): a model is tested
by being registered.

For each: the decoder's reconstruction is the eval-mode forward's, bit for bit, at a size the
codec pads (odd sides); an image's bytes do not depend on the batch it came in, nor on jit
(whose decoded latents are the same; its pixels within one code value, see the test);
and the file's payload is the eval forward's information within 1 % (the continuous models,
briefly trained, on a 768×512 photograph; a discrete model's tiny latent is within its
streams' fixed overhead instead: a 32-bit flush per stream and a byte of stage map).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from conftest import is_discrete, small_codec

from nlq_jax import models
from nlq_jax.codec import container
from nlq_jax.codec.api import Codec, pad_to_multiple, to_model_input
from nlq_jax.latent_codecs import Context
from nlq_jax.models import composed

SIZES = [(64, 64), (67, 131)]


def test_every_model_module_has_the_model_interface():
    for name in models.MODELS:
        module = models.get_module(name)
        for attr in ("Model", "get_default_sizes", "build_tables", "compress", "decompress"):
            assert hasattr(module, attr), (name, attr)
        for attr in ("stream_specs", "decode_memory", "latent_shapes"):
            assert callable(getattr(module, attr)), (name, attr)


@pytest.mark.slow
@pytest.mark.parametrize("name", models.MODELS)
def test_decode_is_the_eval_forward_for_any_batch_and_jit(name, photo):
    codec = small_codec(name, trained=False)
    files = []
    for h, w in SIZES:
        pixels = photo[100 : 100 + h, 200 : 200 + w]
        data = codec.compress(pixels)
        _, x_hat = codec.decompress_float(data)
        assert x_hat.shape == (h, w, 3)
        np.testing.assert_array_equal(x_hat, codec.forward(pixels)["x_hat"][0])
        files.append(data)
    # The batch an image came in does not change its bytes.
    images = np.stack([photo[:67, :131], photo[200:267, 300:431]])
    assert codec.compress_batch(images) == [codec.compress(im) for im in images]
    # Nor does jit: the eager codec writes the same bytes and decodes the same latents; its
    # synthesis transform, run op by op, may round a pixel differently from the compiled one
    # (XLA fuses float ops differently), by at most one code value.
    eager = Codec(
        name, codec.model_kwargs, codec.params, codec.tables, jit=False,
        model_state=codec.model_state,
    )  # fmt: skip
    assert eager.compress(photo[100:167, 200:331]) == files[1]
    difference = eager.decompress(files[0]).astype(int) - codec.decompress(files[0])
    assert np.abs(difference).max() <= 1 and np.mean(difference != 0) < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("name", models.MODELS)
def test_file_bits_are_the_eval_bits(name, photo):
    codec = small_codec(name, trained=True)
    pixels = photo if not is_discrete(name) else photo[:48, :64]
    data = codec.compress(pixels)
    information = sum(float(b.sum()) for b in codec.forward(pixels)["bits"].values())
    _, streams = container.unpack(data)
    payload = 8 * sum(len(s) for s in streams)
    if is_discrete(name):
        assert information - 1 <= payload <= information + len(streams) * (32 + 8) + 8
    else:
        assert abs(payload / information - 1) < 0.01, (payload, information)


@pytest.mark.slow
@pytest.mark.parametrize("name", models.MODELS)
def test_decoded_latent_is_the_forward_latent(name, photo):
    """The ŷ a model's codec tree decodes from the file alone is the ŷ the eval forward feeds
    its synthesis (not only the same pixels after it)."""
    codec = small_codec(name, trained=False)
    assert isinstance(codec.model, composed.LatentCodecModel)  # every model is, now
    pixels = photo[:67, :131]
    header, streams = codec.decode_header(codec.compress(pixels))
    s = codec.model.stride
    h, w = header.height + (-header.height % s), header.width + (-header.width % s)
    shapes = codec.module.latent_shapes(codec.model, h, w)
    runner = codec.runner
    decoded = runner.bound.entropy.decompress(Context(runner, composed.ROOT), streams, shapes)
    x = pad_to_multiple(to_model_input(pixels), s)
    forward = codec.model.apply(
        codec.variables, x, method=lambda m, x: m.entropy(m.analysis(x), training=False)[0]
    )
    # ŷ may be a pytree (VQ-VAE-2's two levels).
    decoded, forward = jax.tree_util.tree_leaves(decoded), jax.tree_util.tree_leaves(forward)
    assert len(decoded) == len(forward)
    for ours, theirs in zip(decoded, forward):
        np.testing.assert_array_equal(ours, np.asarray(theirs))
