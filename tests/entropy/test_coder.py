"""The range coder: exact round trips (escapes included) at the rate the tables promise."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nlq_jax.entropy.coder import MAX_ABS_SYMBOL, TableCoder
from nlq_jax.entropy.gaussian import scale_table
from nlq_jax.entropy.tables import PRECISION, gaussian_tables
from nlq_jax.errors import FormatError

TABLES = gaussian_tables(scale_table())
CODER = TableCoder(TABLES)


def _ideal_bits(symbols, indexes):
    """−log2 of each symbol's integer-table probability, computed independently of the coder."""
    total = 0.0
    for s, t in zip(symbols.ravel(), indexes.ravel()):
        counts = TABLES.pmf(int(t))
        b = int(s) - int(TABLES.offset[t])
        inside = 0 <= b < TABLES.length[t] - 1
        total -= np.log2(counts[b if inside else -1] / 2.0**PRECISION)
    return total


def test_round_trip_and_rate_of_gaussian_symbols():
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 64, size=(8, 12, 20)).astype(np.int32)
    sym = np.round(rng.normal(size=idx.shape) * scale_table()[idx]).astype(np.int32)
    data = CODER.encode(sym, idx)
    np.testing.assert_array_equal(CODER.decode(data, idx), sym)
    ideal = _ideal_bits(sym, idx)
    assert ideal <= 8 * len(data) <= ideal + 64  # a range coder's few words of termination


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(-MAX_ABS_SYMBOL, MAX_ABS_SYMBOL), min_size=1, max_size=50),
    st.integers(0, 63),
)
def test_any_symbol_in_range_round_trips_through_escapes(values, table):
    sym = np.asarray(values, np.int32)
    idx = np.full(sym.shape, table, np.int32)
    np.testing.assert_array_equal(CODER.decode(CODER.encode(sym, idx), idx), sym)


def test_empty_input_round_trips():
    idx = np.zeros((0,), np.int32)
    assert CODER.decode(CODER.encode(idx, idx), idx).shape == (0,)


def test_out_of_range_symbols_are_refused_on_encode():
    with pytest.raises(ValueError, match="exceeds"):
        CODER.encode(np.array([MAX_ABS_SYMBOL + 1]), np.array([0]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_streams_give_format_errors_or_symbols(data):
    idx = np.arange(64, dtype=np.int32).repeat(3)
    try:
        out = CODER.decode(data, idx)
    except FormatError:
        return
    assert out.shape == idx.shape and np.abs(out).max() <= MAX_ABS_SYMBOL


def test_chunks_of_two_coders_share_one_stream_in_order():
    """Context models code a latent in steps: chunks (with escapes) interleave in one stream."""
    from nlq_jax.entropy.coder import finish, new_decoder, new_encoder
    from nlq_jax.entropy.tables import CodingTables, quantize_pmf

    rng = np.random.default_rng(3)
    gauss = TableCoder(gaussian_tables(scale_table()))
    small = TableCoder(
        CodingTables(cdf=quantize_pmf(np.full((1, 4), 0.25), [5]), length=[5], offset=[0])
    )
    chunks = []
    for step in range(6):
        n = int(rng.integers(0, 40))
        coder = gauss if step % 2 else small
        idx = rng.integers(0, coder.tables.num_tables, n)
        sym = rng.integers(-300, 300, n)  # many escapes in `small`, some in `gauss`
        chunks.append((coder, sym, idx))
    enc = new_encoder()
    for coder, sym, idx in chunks:
        coder.encode_chunk(enc, sym, idx)
    dec = new_decoder(finish(enc))
    for coder, sym, idx in chunks:
        np.testing.assert_array_equal(coder.decode_chunk(dec, idx), sym)
