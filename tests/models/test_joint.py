"""The joint autoregressive model: its wavefront decoding computes the paper's context model,
and a corrupted stream fails cleanly. (Exactness: `tests/models/test_exactness.py`.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL, init_params, small_codec

from nlq_jax import models
from nlq_jax.codec import container
from nlq_jax.entropy.context import MaskedConv, causal_taps, wavefront_schedule
from nlq_jax.errors import FormatError

SIZES = [(64, 64), (67, 131), (130, 70)]


@pytest.mark.parametrize("h, w", [(1, 1), (1, 7), (6, 1), (5, 9), (9, 4)])
def test_wavefronts_visit_every_position_once_after_its_causal_neighbours(h, w):
    positions, counts = wavefront_schedule(h, w)
    step = {}
    for t, (row, n) in enumerate(zip(positions, counts)):
        assert (row[:n] >= 0).all() and (row[n:] == -1).all()
        for p in row[:n]:
            assert p not in step
            step[int(p)] = t
    assert sorted(step) == list(range(h * w))
    for p, t in step.items():
        i, j = divmod(p, w)
        # Every position the 5×5 mask-A kernel reads (raster order: rows above, left in row)
        # was decoded in an earlier wavefront.
        for di in range(-2, 1):
            for dj in range(-2, 3):
                if (di < 0 or dj < 0) and 0 <= i + di < h and 0 <= j + dj < w:
                    assert step[(i + di) * w + j + dj] < t


def test_masked_conv_sees_only_the_causal_half_and_matches_its_tap_matrix():
    conv = MaskedConv(3, 4)
    x = np.random.default_rng(0).normal(size=(1, 7, 8, 3)).astype(np.float32)
    variables = conv.init(jax.random.PRNGKey(0), x)
    out = np.asarray(conv.apply(variables, x))
    i, j = 3, 4
    # Changing the centre or any later position leaves position (i, j)'s output unchanged.
    later = x.copy()
    later[0, i, j:] += 5.0
    later[0, i + 1 :] -= 3.0
    np.testing.assert_array_equal(np.asarray(conv.apply(variables, later))[0, i, j], out[0, i, j])
    # The tap-matrix form on the gathered neighbours gives the same output.
    w_taps, bias = conv.apply(variables, method=MaskedConv.tap_matrix)
    taps = causal_taps(5)
    assert len(taps) == 12
    gathered = np.concatenate([x[0, i + di, j + dj] for di, dj in taps])
    np.testing.assert_allclose(gathered @ np.asarray(w_taps) + bias, out[0, i, j], rtol=1e-5)


def test_wavefront_decoding_computes_the_parallel_context_model():
    """The loop's μ, σ equal e_p(h_s(ẑ), g_c(ŷ)) computed at once on its own final ŷ."""
    model = models.get_model("joint", **SMALL)
    params = init_params("joint")
    x = np.random.default_rng(1).uniform(size=(2, 64, 128, 3)).astype(np.float32)

    def run(mdl, x):
        y = mdl.analysis(x)
        z_hat, _ = mdl.entropy_bottleneck(mdl.h_a(y), training=False)
        hyper = mdl.h_s(z_hat)
        y_hat, scales, means = mdl.entropy.latent.sequential(hyper, y)
        ctx = mdl.context_prediction(y_hat)
        params = mdl.entropy_parameters(jnp.concatenate([hyper, ctx], -1))
        p_scales, p_means = params[..., : mdl.M], params[..., mdl.M :]
        return y, y_hat, scales, means, p_scales, p_means

    y, y_hat, scales, means, p_scales, p_means = jax.jit(
        lambda p, x: model.apply({"params": p}, x, method=run)
    )(params, x)
    np.testing.assert_allclose(means, p_means, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scales, p_scales, rtol=1e-4, atol=1e-4)
    # ŷ is y rounded around its own mean.
    np.testing.assert_array_equal(y_hat, np.round(y - means) + means)


def test_corrupted_y_streams_raise_format_errors_or_decode(photo):
    codec = small_codec("joint", trained=False)
    pixels = photo[:64, :64]
    header, streams = container.unpack(codec.compress(pixels))
    rng = np.random.default_rng(0)
    for _ in range(20):
        y = bytearray(streams[1])
        if rng.random() < 0.5:
            y = y[: 4 * int(rng.integers(0, len(y) // 4))]
        else:
            y[int(rng.integers(len(y)))] ^= 1 << int(rng.integers(8))
        try:
            _, x_hat = codec.decompress_float(container.pack(header, [streams[0], bytes(y)]))
            assert x_hat.shape == (64, 64, 3)
        except FormatError:
            pass
