"""Tests of the residual and attention blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax.layers.blocks import AttentionBlock, ResidualBlock, ResidualUnit, SelfAttention

# One input shape for (almost) every test: eager op-by-op compilation is cached per shape,
# which keeps this file fast on a small shared CPU.
SHAPE = (1, 4, 5, 8)


def random_input(seed=0, shape=SHAPE):
    return jax.random.normal(jax.random.key(seed), shape)


def zeros_like_tree(tree):
    return jax.tree.map(jnp.zeros_like, tree)


def leaky_relu(x, slope=0.01):
    return np.where(x >= 0, x, slope * x)


@pytest.mark.parametrize(
    "module", [ResidualBlock(8), ResidualUnit(8), AttentionBlock(8), SelfAttention(8, num_heads=2)]
)
def test_output_shape_equals_input_shape(module):
    x = random_input()
    variables = module.init(jax.random.key(1), x)
    assert module.apply(variables, x).shape == x.shape


def test_residual_block_changes_channels_with_1x1_skip():
    x = random_input(shape=(1, 4, 5, 3))
    variables = ResidualBlock(8).init(jax.random.key(1), x)
    assert variables["params"]["skip"]["kernel"].shape == (1, 1, 3, 8)
    assert ResidualBlock(8).apply(variables, x).shape == (1, 4, 5, 8)
    same = ResidualBlock(3).init(jax.random.key(1), x)
    assert "skip" not in same["params"]


def test_residual_block_is_identity_with_zero_weights():
    x = random_input()
    variables = zeros_like_tree(ResidualBlock(8).init(jax.random.key(1), x))
    np.testing.assert_array_equal(ResidualBlock(8).apply(variables, x), x)


def test_residual_block_matches_numpy_with_1x1_convs():
    # 3x3 kernels that are nonzero only at the centre act as 1x1 convs: a per-pixel formula.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 4, 5, 3)).astype(np.float32)
    variables = ResidualBlock(8).init(jax.random.key(1), jnp.asarray(x))
    params = jax.tree.map(np.asarray, variables["params"])
    w1, w2, ws = (rng.normal(size=s).astype(np.float32) for s in [(3, 8), (8, 8), (3, 8)])
    b1, b2, bs = (rng.normal(size=8).astype(np.float32) for _ in range(3))
    for name, w, b in [("conv1", w1, b1), ("conv2", w2, b2)]:
        kernel = np.zeros_like(params[name]["kernel"])
        kernel[1, 1] = w
        params[name] = {"kernel": kernel, "bias": b}
    params["skip"] = {"kernel": ws[None, None], "bias": bs}
    y = ResidualBlock(8).apply({"params": params}, jnp.asarray(x))
    expected = leaky_relu(leaky_relu(x @ w1 + b1) @ w2 + b2) + x @ ws + bs
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


def test_attention_block_is_identity_when_trunk_is_zero():
    # Zero weights: each residual unit is relu(x + 0), so the trunk is relu(x) -- zero for x < 0.
    x = -jnp.abs(random_input()) - 0.1
    variables = zeros_like_tree(AttentionBlock(8).init(jax.random.key(1), x))
    np.testing.assert_array_equal(AttentionBlock(8).apply(variables, x), x)


def test_attention_block_with_zero_weights_matches_formula():
    # Zero weights: trunk = relu(x), mask = sigmoid(0) = 1/2, out = x + relu(x) / 2.
    x = random_input(1)
    variables = zeros_like_tree(AttentionBlock(8).init(jax.random.key(1), x))
    expected = np.asarray(x) + np.maximum(np.asarray(x), 0) / 2
    np.testing.assert_allclose(AttentionBlock(8).apply(variables, x), expected, rtol=1e-6)


def test_attention_block_structure_is_three_units_per_branch():
    x = jnp.zeros(SHAPE)
    params = AttentionBlock(8).init(jax.random.key(0), x)["params"]
    assert sorted(params) == sorted(
        [f"trunk_{i}" for i in range(3)] + [f"mask_{i}" for i in range(3)] + ["mask_conv"]
    )
    assert params["trunk_0"]["conv2"]["kernel"].shape == (3, 3, 4, 4)


@pytest.mark.parametrize("num_heads", [1, 2])
def test_self_attention_is_identity_at_init(num_heads):
    x = random_input()
    block = SelfAttention(8, num_heads=num_heads)
    variables = block.init(jax.random.key(1), x)
    np.testing.assert_array_equal(variables["params"]["proj_out"]["kernel"], 0.0)
    np.testing.assert_array_equal(block.apply(variables, x), x)


def test_self_attention_output_changes_with_params():
    x = random_input()
    block = SelfAttention(8)
    variables = block.init(jax.random.key(1), x)
    proj = variables["params"]["proj_out"]
    kernel = jax.random.normal(jax.random.key(2), proj["kernel"].shape)
    changed = {"params": {**variables["params"], "proj_out": {**proj, "kernel": kernel}}}
    y = block.apply(changed, x)
    assert not np.allclose(y, x, atol=1e-3)
    # The gradient reaches q, k, v once the output projection is nonzero.
    grads = jax.grad(lambda v: jnp.sum(block.apply(v, x) ** 2))(changed)["params"]
    for name in ("q", "k", "v"):
        assert np.abs(np.asarray(grads[name]["kernel"])).max() > 0


@pytest.mark.parametrize("num_heads", [1, 2])
def test_self_attention_matches_numpy(num_heads):
    rng = np.random.default_rng(0)
    n, h, w, c = SHAPE
    x = rng.normal(size=SHAPE).astype(np.float32)
    block = SelfAttention(c, num_heads=num_heads, num_groups=2)
    variables = block.init(jax.random.key(1), jnp.asarray(x))
    params = jax.tree.map(np.asarray, variables["params"])
    params["norm"] = {
        "scale": rng.normal(size=c).astype(np.float32),
        "bias": rng.normal(size=c).astype(np.float32),
    }
    params["proj_out"] = {
        "kernel": rng.normal(size=(1, 1, c, c)).astype(np.float32),
        "bias": rng.normal(size=c).astype(np.float32),
    }
    y = block.apply({"params": params}, jnp.asarray(x))

    # GroupNorm: 2 groups of c/2 channels, statistics over all positions of each group.
    g = x.reshape(h * w, 2, c // 2).astype(np.float64)
    g = (g - g.mean(axis=(0, 2), keepdims=True)) / np.sqrt(g.var(axis=(0, 2), keepdims=True) + 1e-6)
    g = g.reshape(h * w, c) * params["norm"]["scale"] + params["norm"]["bias"]

    def proj(name, inputs):
        return inputs @ params[name]["kernel"][0, 0] + params[name]["bias"]

    q, k, v = proj("q", g), proj("k", g), proj("v", g)
    d = c // num_heads
    heads = []
    for i in range(num_heads):
        part = slice(i * d, (i + 1) * d)
        logits = q[:, part] @ k[:, part].T / np.sqrt(d)
        weights = np.exp(logits - logits.max(axis=1, keepdims=True))
        weights /= weights.sum(axis=1, keepdims=True)
        heads.append(weights @ v[:, part])
    out = proj("proj_out", np.concatenate(heads, axis=1))
    expected = x + out.reshape(SHAPE)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_channel_mismatch_is_refused():
    x = jnp.zeros((1, 4, 5, 6))
    for block in (AttentionBlock(8), SelfAttention(8)):
        with pytest.raises(ValueError, match="features=8"):
            block.init(jax.random.key(0), x)
