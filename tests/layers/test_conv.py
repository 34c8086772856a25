"""Tests of the down/up-sampling convolutions against independent numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.layers.conv_ops import (
    _input_grad_by_phases,
    _kernel_grad_method,
    conv2d,
    conv_general_dilated,
    depth_to_space,
)


def numpy_transposed_conv(x, kernel, bias, stride=2):
    """PyTorch ConvTranspose2d(k, stride, padding=k//2, output_padding=stride-1), by scatter.

    Every input pixel i adds x[i] @ kernel[k] to output stride*i - k//2 + k; outputs outside
    [0, stride*H) are dropped.
    """
    n, h, w, _ = x.shape
    k = kernel.shape[0]
    p = k // 2
    out = np.zeros((n, stride * h, stride * w, kernel.shape[3]), np.float64)
    for i in range(h):
        for j in range(w):
            for ky in range(k):
                for kx in range(k):
                    oy, ox = stride * i - p + ky, stride * j - p + kx
                    if 0 <= oy < stride * h and 0 <= ox < stride * w:
                        out[:, oy, ox] += x[:, i, j].astype(np.float64) @ kernel[ky, kx]
    return out + bias


def numpy_depth_to_space(x, block):
    n, h, w, c = x.shape
    out_c = c // (block * block)
    out = np.zeros((n, h * block, w * block, out_c), x.dtype)
    for i in range(h):
        for j in range(w):
            for a in range(block):
                for b in range(block):
                    start = (a * block + b) * out_c
                    out[:, i * block + a, j * block + b] = x[:, i, j, start : start + out_c]
    return out


def random_upconv_params(rng, k, cin, cout):
    return {
        "kernel": jnp.asarray(rng.normal(size=(k, k, cin, cout)), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=cout), jnp.float32),
    }


# 4 output channels: phase_conv's single conv; 40: one conv per output phase.
@pytest.mark.parametrize("features", [4, 40])
@pytest.mark.parametrize("kernel_size", [3, 5])
@pytest.mark.parametrize("size", [(4, 6), (5, 7), (1, 3)])
def test_transpose_and_phase_equal_numpy_scatter(kernel_size, size, features):
    rng = np.random.default_rng(kernel_size * 100 + size[0])
    x = rng.normal(size=(2, *size, 3)).astype(np.float32)
    params = random_upconv_params(rng, kernel_size, 3, features)
    expected = numpy_transposed_conv(x, np.asarray(params["kernel"]), np.asarray(params["bias"]))
    outputs = {}
    for method in ("transpose", "phase"):
        up = UpConv(features, kernel_size=kernel_size, method=method)
        outputs[method] = np.asarray(up.apply({"params": params}, jnp.asarray(x)))
        assert outputs[method].shape == (2, 2 * size[0], 2 * size[1], features)
        np.testing.assert_allclose(outputs[method], expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["phase"], outputs["transpose"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("features", [3, 36])
@pytest.mark.parametrize("kernel_size", [3, 7])
def test_phase_equals_numpy_scatter_for_stride_3(kernel_size, features):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 3, 4, 2)).astype(np.float32)
    params = random_upconv_params(rng, kernel_size, 2, features)
    expected = numpy_transposed_conv(
        x, np.asarray(params["kernel"]), np.asarray(params["bias"]), stride=3
    )
    for method in ("transpose", "phase"):
        up = UpConv(features, kernel_size=kernel_size, stride=3, method=method)
        y = up.apply({"params": params}, jnp.asarray(x))
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_one_dimensional_phase_formula_for_kernel_5():
    # out[2m] = x[m-1] w4 + x[m] w2 + x[m+1] w0; out[2m+1] = x[m] w3 + x[m+1] w1.
    w = np.arange(1.0, 6.0)
    kernel = np.zeros((5, 5, 1, 1), np.float32)
    kernel[2, :, 0, 0] = w  # acts along the width only, row offset 0
    x = np.asarray([1.0, 10.0, 100.0, 1000.0], np.float32)
    params = {"kernel": jnp.asarray(kernel), "bias": jnp.zeros(1)}
    y = UpConv(1, method="phase").apply({"params": params}, jnp.asarray(x).reshape(1, 1, 4, 1))
    y = np.asarray(y)[0, 0, :, 0]
    xp = np.concatenate([[0.0], x, [0.0]])  # xp[m + 1] = x[m], zero outside
    even = [xp[m] * w[4] + xp[m + 1] * w[2] + xp[m + 2] * w[0] for m in range(4)]
    odd = [xp[m + 1] * w[3] + xp[m + 2] * w[1] for m in range(4)]
    np.testing.assert_allclose(y[0::2], even, rtol=1e-6)
    np.testing.assert_allclose(y[1::2], odd, rtol=1e-6)


def test_transpose_and_phase_share_parameter_tree():
    x = jnp.ones((1, 3, 5, 6))
    trees = {
        m: jax.tree.map(jnp.shape, UpConv(4, method=m).init(jax.random.key(0), x))
        for m in ("transpose", "phase")
    }
    assert trees["transpose"] == trees["phase"]
    assert trees["phase"] == {"params": {"kernel": (5, 5, 6, 4), "bias": (4,)}}


@pytest.mark.parametrize("features", [4, 40])
def test_gradients_of_phase_and_transpose_agree(features):
    rng = np.random.default_rng(7)
    x = jnp.asarray(rng.normal(size=(2, 5, 6, 3)), jnp.float32)
    target = jnp.asarray(rng.normal(size=(2, 10, 12, features)), jnp.float32)
    params = random_upconv_params(rng, 5, 3, features)

    def loss(params, x, method):
        y = UpConv(features, method=method).apply({"params": params}, x)
        return jnp.mean((y - target) ** 2)

    grads = {m: jax.grad(loss, argnums=(0, 1))(params, x, m) for m in ("transpose", "phase")}
    for g_t, g_p in zip(
        jax.tree.leaves(grads["transpose"]), jax.tree.leaves(grads["phase"]), strict=True
    ):
        np.testing.assert_allclose(g_p, g_t, rtol=1e-4, atol=1e-6)


def test_subpixel_is_conv3x3_then_depth_to_space():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(1, 4, 5, 3)), jnp.float32)
    up = UpConv(2, method="subpixel")
    variables = up.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, variables) == {
        "params": {"conv": {"kernel": (3, 3, 3, 8), "bias": (8,)}}
    }
    kernel = np.asarray(variables["params"]["conv"]["kernel"], np.float64)
    bias = np.asarray(variables["params"]["conv"]["bias"], np.float64)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = np.zeros((1, 4, 5, 8))
    for i in range(4):
        for j in range(5):
            conv[:, i, j] = np.einsum("nabc,abcd->nd", xp[:, i : i + 3, j : j + 3], kernel)
    expected = numpy_depth_to_space(conv + bias, 2)
    np.testing.assert_allclose(up.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", [2, 3])
def test_depth_to_space_matches_numpy(block):
    x = np.arange(2 * 3 * 4 * block * block * 5, dtype=np.float32).reshape(
        2, 3, 4, block * block * 5
    )
    np.testing.assert_array_equal(
        depth_to_space(jnp.asarray(x), block), numpy_depth_to_space(x, block)
    )


@pytest.mark.parametrize(
    ("size", "expected"), [((67, 131), (34, 66)), ((64, 96), (32, 48)), ((1, 2), (1, 1))]
)
def test_downconv_output_is_ceil_half(size, expected):
    x = jnp.zeros((1, *size, 3))
    variables = DownConv(8).init(jax.random.key(0), x)
    y = DownConv(8).apply(variables, x)
    assert y.shape == (1, *expected, 8)


def test_downconv_matches_numpy_strided_correlation():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(1, 7, 6, 2)), jnp.float32)
    down = DownConv(3)
    variables = down.init(jax.random.key(0), x)
    kernel = np.asarray(variables["params"]["conv"]["kernel"], np.float64)
    bias = np.asarray(variables["params"]["conv"]["bias"], np.float64)
    xp = np.pad(np.asarray(x, np.float64), ((0, 0), (2, 2), (2, 2), (0, 0)))
    expected = np.zeros((1, 4, 3, 3))
    for i in range(4):
        for j in range(3):
            window = xp[:, 2 * i : 2 * i + 5, 2 * j : 2 * j + 5]
            expected[:, i, j] = np.einsum("nabc,abcd->nd", window, kernel) + bias
    np.testing.assert_allclose(down.apply(variables, x), expected, rtol=1e-5, atol=1e-5)


def test_even_kernel_and_unknown_method_are_refused():
    x = jnp.zeros((1, 2, 2, 1))
    with pytest.raises(ValueError, match="odd"):
        UpConv(1, kernel_size=4).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="unknown method"):
        UpConv(1, method="nearest").init(jax.random.key(0), x)


# (input H, W), kernel size, Cin, Cout, strides, padding: cases chosen so that every input- and
# kernel-gradient path of `conv2d` on CPU is taken (checked below), at odd sizes.
CONV2D_CASES = [
    ((9, 7), 3, 16, 4, (1, 1), ((1, 1), (1, 1))),  # kernel grad: cols_of_grad
    ((9, 7), 3, 8, 64, (1, 1), ((1, 1), (1, 1))),  # kernel grad: cols_of_input
    ((13, 10), 5, 3, 64, (2, 2), ((2, 2), (2, 2))),  # cols_of_input, input grad by phases
    ((11, 12), 5, 96, 8, (2, 2), ((2, 2), (2, 2))),  # XLA kernel grad, input grad by phases
    ((10, 11), 3, 5, 7, (3, 3), ((1, 1), (1, 1))),  # stride 3 by phases
    ((9, 8), 5, 4, 6, (2, 2), ((1, 2), (2, 1))),  # asymmetric padding: XLA's input grad
]


@pytest.mark.parametrize("case", CONV2D_CASES)
def test_conv2d_value_and_gradients_equal_xla_autodiff(case):
    (h, w), k, cin, cout, strides, padding = case
    rng = np.random.default_rng(11)
    x = jnp.asarray(rng.normal(size=(2, h, w, cin)), jnp.float32)
    kernel = jnp.asarray(rng.normal(size=(k, k, cin, cout)) / np.sqrt(k * k * cin), jnp.float32)

    def reference(x, kernel):
        return jax.lax.conv_general_dilated(
            x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    y_ref, vjp_ref = jax.vjp(reference, x, kernel)
    y, vjp = jax.vjp(lambda x, kernel: conv2d(x, kernel, strides, padding), x, kernel)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    g = jnp.asarray(rng.normal(size=y.shape), jnp.float32)
    for got, want in zip(jax.jit(vjp)(g), vjp_ref(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def test_conv2d_cases_cover_every_gradient_path():
    methods = {_kernel_grad_method((k, k, ci, co), s) for _, k, ci, co, s, _ in CONV2D_CASES}
    assert methods == {"cols_of_grad", "cols_of_input", "xla"}
    by_phases = {_input_grad_by_phases((k, k, ci, co), s, p) for _, k, ci, co, s, p in CONV2D_CASES}
    assert by_phases == {True, False}


def test_flax_conv_through_conv_general_dilated_equals_plain_conv():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(1, 9, 8, 4)), jnp.float32)
    for kwargs in ({"padding": ((2, 2), (2, 2)), "strides": 2}, {"padding": "SAME"}):
        plain = nn.Conv(6, (5, 5), **kwargs)
        routed = nn.Conv(6, (5, 5), conv_general_dilated=conv_general_dilated, **kwargs)
        params = plain.init(jax.random.key(0), x)
        grads = [
            jax.grad(lambda p, m=m: jnp.sum(jnp.sin(m.apply(p, x))))(params)
            for m in (plain, routed)
        ]
        for a, b in zip(jax.tree.leaves(grads[0]), jax.tree.leaves(grads[1]), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, kwargs", [("hyperprior", {"N": 32, "M": 48}), ("nlq", {})])
def test_model_gradients_equal_xla_autodiff(name, kwargs, monkeypatch):
    """A whole model's gradients with the custom VJPs equal JAX's autodiff of plain convs."""
    from nlq_jax import models
    from nlq_jax.layers import conv_ops

    x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 64, 64, 3)), jnp.float32)
    keys = {k: jax.random.key(i) for i, k in enumerate(("params", "noise", "quantizer"))}

    def grads():
        model = models.get_model(name, **kwargs)
        variables = model.init(keys, x, training=True)

        def loss(params):
            out, _ = model.apply(
                {**variables, "params": params}, x, training=True, rngs=keys, mutable=True
            )
            rate = sum(jnp.mean(b) for b in out["bits"].values())
            return jnp.mean((out["x_hat"] - x) ** 2) + 1e-3 * rate

        return jax.jit(jax.grad(loss))(variables["params"])

    ours = grads()
    monkeypatch.setattr(conv_ops, "conv2d", lambda x, k, s, p: conv_ops._xla_conv(x, k, s, p))
    monkeypatch.setattr(conv_ops, "_phase_conv", conv_ops._phase_conv_single)
    reference = grads()
    leaves = jax.tree.leaves(reference)
    assert len(leaves) > 40
    for got, want in zip(jax.tree.leaves(ours), leaves, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(jnp.abs(want).max()))
