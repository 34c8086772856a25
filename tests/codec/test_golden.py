"""Golden bitstreams: the .nlq containers around range-coded streams must stay byte-stable.

A change to the format, the tables or the coder that alters these bytes breaks every file
users have written. `golden_v1.nlq` is a version-1 file (every non-progressive file before
version 3): it must still decode, and `pack(..., version=1)` still write it. `golden_v3.nlq` is
what `pack` writes now. Regenerate deliberately, with a format version bump, by running
`NLQ_REGEN_GOLDEN=1 pytest tests/codec/test_golden.py` (it rewrites the file of the version
`pack` writes, never an older one).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from nlq_jax.codec import container
from nlq_jax.entropy.coder import TableCoder
from nlq_jax.entropy.gaussian import build_tables

GOLDEN = {
    1: Path(__file__).with_name("golden_v1.nlq"),
    container.VERSION: Path(__file__).with_name(f"golden_v{container.VERSION}.nlq"),
}


def _payload() -> tuple[container.Header, list[bytes], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2026)
    idx = rng.integers(0, 64, size=(3, 5, 7)).astype(np.int32)
    sym = np.round(rng.normal(size=idx.shape) * np.exp(idx / 10)).astype(np.int32)
    sym[0, 0, :3] = [100_000, -70_000, 5000]  # escapes
    stream = TableCoder(build_tables()).encode(sym, idx)
    header = container.Header("hyperprior", bytes(range(16)), 67, 131, 3)
    return header, [b"\x01\x02\x03\x04", stream], sym, idx


@pytest.mark.parametrize("version", sorted(GOLDEN))
def test_golden_file_is_byte_identical_and_decodes(version):
    header, streams, sym, idx = _payload()
    data = container.pack(header, streams, version=version)
    if os.environ.get("NLQ_REGEN_GOLDEN") == "1" and version == container.VERSION:
        GOLDEN[version].write_bytes(data)
    golden = GOLDEN[version].read_bytes()
    assert golden[4] == version
    assert data == golden, f"the v{version} bitstream changed: bump the format version"
    if version == container.VERSION:
        assert container.pack(header, streams) == golden  # what every new file is
    parsed, parsed_streams = container.unpack(golden)
    assert parsed == header
    assert (parsed.height, parsed.width, parsed.channels) == (67, 131, 3)
    assert parsed.domain.name == "image" and parsed.shape == (67, 131, 3)
    np.testing.assert_array_equal(TableCoder(build_tables()).decode(parsed_streams[1], idx), sym)
