"""Golden bitstream: the .nlq v1 container around range-coded streams must stay byte-stable.

A change to the format, the tables or the coder that alters these bytes breaks every file
users have written. Regenerate deliberately, with a format version bump, by running
`NLQ_REGEN_GOLDEN=1 pytest tests/codec/test_golden.py`.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from nlq_jax.codec import container
from nlq_jax.entropy.coder import TableCoder
from nlq_jax.entropy.gaussian import build_tables

GOLDEN = Path(__file__).with_name("golden_v1.nlq")


def _payload() -> tuple[container.Header, list[bytes], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2026)
    idx = rng.integers(0, 64, size=(3, 5, 7)).astype(np.int32)
    sym = np.round(rng.normal(size=idx.shape) * np.exp(idx / 10)).astype(np.int32)
    sym[0, 0, :3] = [100_000, -70_000, 5000]  # escapes
    stream = TableCoder(build_tables()).encode(sym, idx)
    header = container.Header("hyperprior", bytes(range(16)), 67, 131, 3)
    return header, [b"\x01\x02\x03\x04", stream], sym, idx


def test_golden_file_is_byte_identical_and_decodes():
    header, streams, sym, idx = _payload()
    data = container.pack(header, streams)
    if os.environ.get("NLQ_REGEN_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_bytes(data)
    golden = GOLDEN.read_bytes()
    assert data == golden, "the v1 bitstream changed: bump the format version, then regenerate"
    parsed, parsed_streams = container.unpack(golden)
    assert parsed == header
    np.testing.assert_array_equal(TableCoder(build_tables()).decode(parsed_streams[1], idx), sym)
