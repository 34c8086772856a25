"""Fuzzing the decoder: damaged, truncated or forged files give one clean error, nothing else."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path

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


def _decode_outcome(codec, data: bytes, max_memory: int | None = None) -> str:
    """ "decoded", or "error" for a clean NLQError; anything else escapes and fails the test."""
    start = time.perf_counter()
    try:
        pixels = codec.decompress(data, max_memory=max_memory)
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


def _v3_with_valid_crcs(head: bytes, streams: list[bytes]) -> bytes:
    """A version-3 file from its header bytes (through the stream lengths): the header's CRC,
    then each stream and the CRC of everything before it."""
    out = _with_valid_crc(head)
    for stream in streams:
        out = _with_valid_crc(out + stream)
    return out


def test_cli_reports_one_line_and_nonzero_exit(tmp_path):
    u32 = lambda n: n.to_bytes(4, "little")  # noqa: E731
    cases = {
        "truncated.nlq": b"\x89NLQ\x03",
        "foreign.nlq": b"GIF89a" + bytes(100),
        # Version 3: an image of 65535² (domain 0, rank 3), an unknown domain, a bad rank.
        "absurd_v3.nlq": _v3_with_valid_crcs(
            b"\x89NLQ\x03\x01a"
            + bytes(16)
            + b"\x00\x03"
            + u32(65535) * 2
            + u32(3)
            + b"\x00\x01"
            + u32(0),
            [b""],
        ),
        "domain_v3.nlq": _v3_with_valid_crcs(
            b"\x89NLQ\x03\x01a"
            + bytes(16)
            + b"\x09\x02"
            + u32(48000)
            + u32(2)
            + b"\x00\x01"
            + u32(0),
            [b""],
        ),
        "rank_v3.nlq": _v3_with_valid_crcs(
            b"\x89NLQ\x03\x01a" + bytes(16) + b"\x00\x09" + u32(1) * 9 + b"\x00\x01" + u32(0),
            [b""],
        ),
        # Version 1 (files written before version 3): an image of 65535².
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


def _fuzzer():
    """benchmarks/fuzz_decoder.py, the project's structure-aware fuzzer, as a module."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_decoder.py"
    spec = importlib.util.spec_from_file_location("fuzz_decoder", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.parametrize(("label", "cases"), [("hyperprior", 2000), ("nlq_rvq", 600)])
def test_structure_aware_fuzz_cases_end_in_an_image_or_one_clean_error(label, cases):
    """A few thousand of the fuzzer's cases (header fields, declared sizes and stream lengths,
    streams spliced, duplicated, removed, emptied, truncated, bit-flipped, behind a valid CRC),
    on a continuous and a discrete model, with fixed seeds. The seeds share one padded size
    and the budget admits none larger, so that the cases compile few shapes (the whole run
    stays well under a minute); larger declared sizes must be refused before decoding."""
    fuzz = _fuzzer()
    # The fuzzer's hyperprior target is the tests' small one, already built for other tests.
    codec = small_codec(label, trained=False) if label == "hyperprior" else fuzz.make_codec(label)
    seeds = fuzz.seed_files(label, codec, shapes=((64, 64), (50, 60)))
    budget = codec.decode_memory(64, 64)
    rng = np.random.default_rng(15)
    outcomes, kinds = Counter(), Counter()
    for i in range(cases):
        mutations, data = fuzz.mutate(seeds[i % len(seeds)], seeds, rng)
        kinds.update(mutations)
        outcomes[_decode_outcome(codec, data, max_memory=budget)] += 1
    assert sum(outcomes.values()) == cases
    assert set(kinds) >= set(fuzz.MUTATIONS) - ({"stages"} if label == "hyperprior" else set())
    # Some damage leaves a decodable file (a flipped bit in a stream), most does not.
    assert outcomes["decoded"] > 0 and outcomes["error"] > cases // 2
