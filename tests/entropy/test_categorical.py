"""The categorical prior over code indices: its bits, its tables, and real range coding."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlq_jax.entropy import coder as coder_lib
from nlq_jax.entropy.categorical import (
    CategoricalPrior,
    build_tables,
    fixed_length_bits,
    table_indexes,
)
from nlq_jax.entropy.coder import TableCoder

NUM_CODES = (6, 4, 5)
RNG = np.random.default_rng(0)


def random_params(conditional: bool) -> dict:
    params = {}
    for g, k in enumerate(NUM_CODES):
        shape = (NUM_CODES[g - 1], k) if conditional and g else (k,)
        params[f"logits_{g}"] = jnp.asarray(RNG.normal(size=shape) * 2, jnp.float32)
    return params


def random_indices(shape=(2, 5, 7)) -> np.ndarray:
    return np.stack([RNG.integers(0, k, size=shape) for k in NUM_CODES], -1).astype(np.int32)


def log2_softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    m = logits.max(axis=-1, keepdims=True)
    return (logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))) / math.log(2)


@pytest.mark.parametrize("conditional", [False, True])
def test_bits_are_the_information_of_the_indices(conditional):
    prior = CategoricalPrior(NUM_CODES, conditional)
    params = random_params(conditional)
    indices = random_indices()
    _, bits = prior.apply({"params": params}, indices, training=False)
    expected = np.zeros(indices.shape[0])
    for b in range(indices.shape[0]):
        for pos in indices[b].reshape(-1, len(NUM_CODES)):
            for g in range(len(NUM_CODES)):
                table = params[f"logits_{g}"]
                row = table[pos[g - 1]] if conditional and g else table
                expected[b] -= log2_softmax(row)[pos[g]]
    np.testing.assert_allclose(bits, expected, rtol=1e-5)


def test_unconditional_round_trip_is_exact_and_escapes_out_of_range_indices():
    prior = CategoricalPrior(NUM_CODES)
    tables = build_tables(prior, random_params(False))
    assert tables.num_tables == 3 and tables.precision == 24
    np.testing.assert_array_equal(tables.length, np.array(NUM_CODES) + 1)
    indices = random_indices()
    indices[0, 0, 0, 1] = 9  # out of range: escaped, still exact
    tidx = table_indexes(prior, indices)
    assert tidx.dtype == np.int32 and tidx.shape == indices.shape
    coder = TableCoder(tables)
    data = coder.encode(indices, tidx)
    np.testing.assert_array_equal(coder.decode(data, tidx), indices)


def test_conditional_round_trip_decodes_group_by_group():
    prior = CategoricalPrior(NUM_CODES, conditional=True)
    tables = build_tables(prior, random_params(True))
    assert tables.num_tables == 1 + NUM_CODES[0] + NUM_CODES[1]
    indices = random_indices()
    coder = TableCoder(tables)
    tidx = table_indexes(prior, indices)
    encoder = coder_lib.new_encoder()
    for g in range(len(NUM_CODES)):
        coder.encode_chunk(encoder, indices[..., g], tidx[..., g])
    data = coder_lib.finish(encoder)

    decoded = np.zeros_like(indices)
    decoder = coder_lib.new_decoder(data)
    for g in range(len(NUM_CODES)):
        # Group g's tables depend only on the groups decoded so far.
        column = table_indexes(prior, decoded)[..., g]
        decoded[..., g] = coder.decode_chunk(decoder, column)
    np.testing.assert_array_equal(decoded, indices)
    # The same table indexes from jax arrays.
    np.testing.assert_array_equal(table_indexes(prior, jnp.asarray(indices)), tidx)


def test_oversized_conditional_tables_are_refused():
    prior = CategoricalPrior((4096, 2048), conditional=True)
    with pytest.raises(ValueError, match="2\\*\\*22"):
        prior.init(jax.random.PRNGKey(0), np.zeros((1, 1, 2), np.int32), training=True)
    CategoricalPrior((4096, 1024), conditional=True)  # exactly 2**22 entries is allowed


def test_fixed_length_bits():
    assert fixed_length_bits((8, 4), 10) == 50.0
    np.testing.assert_allclose(fixed_length_bits((6,), 3), 3 * math.log2(6))


@pytest.mark.parametrize("conditional", [False, True])
def test_training_beats_the_fixed_length_code_and_the_coder_matches_the_bits(conditional):
    num_codes = (8, 8)
    rng = np.random.default_rng(1)
    first = rng.choice(8, size=(4, 32, 32), p=np.r_[0.5, 0.2, 0.1, np.full(5, 0.04)])
    # Group 1 copies group 0 half of the time: a conditional prior can use it.
    second = np.where(rng.random(first.shape) < 0.5, first, rng.integers(0, 8, first.shape))
    indices = np.stack([first, second], -1).astype(np.int32)
    prior = CategoricalPrior(num_codes, conditional)
    params = prior.init(jax.random.PRNGKey(0), indices, training=True)["params"]
    opt = optax.adam(0.1)

    @jax.jit
    def step(params, state):
        def loss(p):
            return prior.apply({"params": p}, indices, training=True)[1].mean()

        grads = jax.grad(loss)(params)
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    state = opt.init(params)
    for _ in range(150):
        params, state = step(params, state)

    bits = float(prior.apply({"params": params}, indices, training=False)[1].sum())
    coder = TableCoder(build_tables(prior, params))
    tidx = table_indexes(prior, indices)
    encoder = coder_lib.new_encoder()
    for g in range(2):
        coder.encode_chunk(encoder, indices[..., g], tidx[..., g])
    coded_bits = 8 * len(coder_lib.finish(encoder))
    fixed = fixed_length_bits(num_codes, first.size)
    assert coded_bits < 0.9 * fixed
    assert abs(coded_bits - bits) < 0.01 * bits
    # Fitted: the model's bits approach the empirical entropy (its minimum), computed here.
    assert bits < 1.01 * empirical_bits(indices.reshape(-1, 2), num_codes, conditional)


def empirical_bits(pairs: np.ndarray, num_codes, conditional: bool) -> float:
    def entropy_bits(symbols, k):
        counts = np.bincount(symbols, minlength=k).astype(np.float64)
        p = counts[counts > 0] / counts.sum()
        return -symbols.size * np.sum(p * np.log2(p))

    total = entropy_bits(pairs[:, 0], num_codes[0])
    if not conditional:
        return total + entropy_bits(pairs[:, 1], num_codes[1])
    for r in range(num_codes[0]):
        total += entropy_bits(pairs[pairs[:, 0] == r, 1], num_codes[1])
    return total
