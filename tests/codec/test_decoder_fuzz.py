"""Fuzzing the decoder: damaged, truncated or forged files give one clean error, nothing else."""

from __future__ import annotations

import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
from conftest import small_codec

from nlq_jax.codec import container
from nlq_jax.errors import NLQError


def _mutations(data: bytes, rng: np.random.Generator, count: int):
    """Random damage: bit flips, byte overwrites, insertions, deletions and truncations.

    Only real damage is yielded: a byte overwritten by its own value, or a bit flipped twice,
    leaves the file intact and is drawn again.
    """
    made = 0
    while made < count:
        d = bytearray(data)
        kind = rng.integers(5)
        if kind == 0:
            for _ in range(rng.integers(1, 4)):
                i = rng.integers(len(d))
                d[i] ^= 1 << rng.integers(8)
        elif kind == 1:
            i = rng.integers(len(d))
            d[i] = rng.integers(256)
        elif kind == 2:
            i = rng.integers(len(d) + 1)
            d[i:i] = rng.bytes(rng.integers(1, 9))
        elif kind == 3:
            i = rng.integers(len(d))
            del d[i : i + rng.integers(1, 9)]
        else:
            d = d[: rng.integers(len(d))]
        if bytes(d) != data:
            made += 1
            yield bytes(d)


def _with_valid_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def _decode_outcome(codec, data: bytes) -> str:
    start = time.perf_counter()
    try:
        pixels = codec.decompress(data)
    except NLQError:
        outcome = "error"
    else:
        assert pixels.dtype == np.uint8 and pixels.ndim == 3
        outcome = "decoded"
    assert time.perf_counter() - start < 30, "decoding a damaged file took too long"
    return outcome


@pytest.mark.slow
def test_damaged_files_raise_only_clean_errors():
    codec = small_codec("hyperprior", trained=False)
    pixels = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    data = codec.compress(pixels)
    rng = np.random.default_rng(1)
    outcomes = [_decode_outcome(codec, d) for d in _mutations(data, rng, 2000)]
    assert len(outcomes) == 2000
    # A damaged file is detected (CRC, lengths, header), never decoded into garbage.
    assert outcomes.count("decoded") == 0


@pytest.mark.slow
def test_forged_payloads_with_valid_crc_never_crash_the_decoder():
    """Streams replaced by garbage behind a valid header and CRC reach the range decoder: it
    must raise FormatError or decode something, never another exception or a hang."""
    codec = small_codec("mean_scale", trained=False)
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    header, streams = container.unpack(codec.compress(pixels))
    rng = np.random.default_rng(3)
    outcomes = []
    for _ in range(150):
        forged = []
        for s in streams:
            n = int(rng.integers(0, 2 * len(s) + 8))
            forged.append(rng.bytes(n) if rng.random() < 0.5 else s[:n] + rng.bytes(4))
        data = container.pack(header, forged)
        outcomes.append(_decode_outcome(codec, data))
    assert "error" in outcomes  # the decoder does notice some of them


def test_cli_reports_one_line_and_nonzero_exit(tmp_path):
    cases = {
        "truncated.nlq": b"\x89NLQ\x01",
        "foreign.nlq": b"GIF89a" + bytes(100),
        "absurd.nlq": _with_valid_crc(
            b"\x89NLQ\x01\x01a"
            + bytes(16)
            + (65535).to_bytes(4, "little") * 2
            + b"\x03\x01"
            + (0).to_bytes(4, "little")
        ),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "nlq_jax.cli",
                "decompress",
                str(tmp_path / name),
                str(tmp_path / "out.png"),
                "--checkpoint",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2, (name, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nlq decompress: error:"), result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / "out.png").exists()
