"""Bounded decoding: a file's header cannot make the decoder allocate what it likes.

A .nlq file needs only its model's hash and a valid CRC; its declared image size decides what
the decoder allocates. These tests check that the streams are checked against the model before
anything is allocated, that the estimated memory is compared with a budget, and that an
out-of-memory inside XLA becomes one clean error.
"""

from __future__ import annotations

import contextlib
import resource

import jax
import numpy as np
import pytest
from conftest import small_codec

from nlq_jax import cli
from nlq_jax.codec import container
from nlq_jax.codec.api import DEFAULT_MAX_MEMORY, Codec
from nlq_jax.errors import FormatError, MemoryBudgetError

MiB = 1 << 20


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


class _PeakGrowth:
    """How much the process's peak RSS rose above its RSS at the start (bytes)."""

    bytes = 0


@contextlib.contextmanager
def peak_rss_growth():
    """Measures the peak RSS growth of the block: exactly where Linux lets the peak be reset
    (/proc/self/clear_refs), else from getrusage's lifetime peak (a lower bound)."""
    growth = _PeakGrowth()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status("VmRSS")
        peak = lambda: _status("VmHWM")  # noqa: E731
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731
    try:
        yield growth
    finally:
        growth.bytes = peak() - before


def _forged(codec: Codec, height: int, width: int, streams: list[bytes]) -> bytes:
    """A well-formed file for `codec` (its name, its hash, a valid CRC) with any streams."""
    header = container.Header(codec.model_name, codec.hash, height, width, 3)
    return container.pack(header, streams)


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_the_68_byte_bomb_is_refused_before_allocation():
    """Issue 15's file (54 bytes in version 1, 68 in version 3): a hyperprior declaring 2048²
    with two empty streams (it decoded, using gigabytes); a stream that codes symbols holds at
    least one word."""
    codec = small_codec("hyperprior", trained=False)
    data = _forged(codec, 2048, 2048, [b"", b""])
    assert len(data) == 68
    with peak_rss_growth() as growth, pytest.raises(FormatError, match="stream 'z': 0 bytes"):
        codec.decompress(data)
    assert growth.bytes < 64 * MiB


def test_a_declared_size_over_the_budget_is_refused_before_allocation():
    """Well-formed one-word streams behind a 4096² header: the budget refuses it, not the
    file's 76 bytes, and nothing is allocated for the image."""
    codec = small_codec("hyperprior", trained=False)
    data = _forged(codec, 4096, 4096, [bytes(4), bytes(4)])
    budget = 256 * MiB
    assert codec.decode_memory(4096, 4096) > budget
    with (
        peak_rss_growth() as growth,
        pytest.raises(MemoryBudgetError, match="over the limit of 0.25 GiB.*--max-memory"),
    ):
        codec.decompress(data, max_memory=budget)
    assert growth.bytes < 64 * MiB


def test_the_default_budget_refuses_what_would_not_fit_a_laptop():
    """The shipped model (mean-scale, N = 64) at 4096² needs ≈6 GB: over the 4 GiB default,
    refused by `decode_header` alone; 2048² fits."""
    codec = Codec.load("default")
    assert DEFAULT_MAX_MEMORY == 4 << 30
    assert codec.decode_memory(4096, 4096) > DEFAULT_MAX_MEMORY > codec.decode_memory(2048, 2048)
    with pytest.raises(MemoryBudgetError):
        codec.decode_header(_forged(codec, 4096, 4096, [bytes(4), bytes(4)]))
    header, _ = codec.decode_header(_forged(codec, 2048, 2048, [bytes(4), bytes(4)]))
    assert (header.height, header.width) == (2048, 2048)


def test_a_tiny_file_of_a_large_flat_image_is_valid_within_the_budget():
    """Entropy coding makes a flat 1024² image a few kilobytes (≈0.04 bpp with the shipped
    model; a trained model at a low rate makes it hundreds of bytes): that file decodes (the
    budget, not the file's size, is the guard), and the same file is refused by a budget below
    its estimate."""
    codec = Codec.load("default")
    flat = np.full((1024, 1024, 3), 128, np.uint8)
    data = codec.compress(flat)
    assert len(data) < 8192
    pixels = codec.decompress(data)
    assert pixels.shape == (1024, 1024, 3) and pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, codec.decompress(data, max_memory=1 << 40))
    with pytest.raises(MemoryBudgetError):
        codec.decompress(data, max_memory=codec.decode_memory(1024, 1024) - 1)


def test_decode_memory_bounds_the_measured_peak():
    """The estimate the budget is compared with is an upper bound of what decoding takes."""
    codec = small_codec("hyperprior", trained=False)
    data = codec.compress(_noise(640, 576))
    with peak_rss_growth() as growth:
        codec.decompress(data)
    assert 0 < growth.bytes <= codec.decode_memory(640, 576)


@pytest.mark.parametrize("name", ["hyperprior", "checkerboard"])
def test_a_wrong_number_of_streams_gives_one_clean_error(name):
    """One stream where the model writes two (it was an IndexError), or more than it writes
    (the scale hyperprior's third stream, a region-of-interest map, is optional)."""
    codec = small_codec(name, trained=False)
    header, streams = container.unpack(codec.compress(_noise(64, 64)))
    assert len(streams) == 2
    writes = r"2\.\.3 \(z, y, roi \(optional\)\)" if name == "hyperprior" else r"2 \(z, y\)"
    extra = 2 if name == "hyperprior" else 1
    for wrong in (streams[:1], [*streams, *[streams[1]] * extra]):
        with pytest.raises(FormatError, match=r"\d stream\(s\), this model writes " + writes):
            codec.decompress(container.pack(header, wrong))
    if name == "hyperprior":  # a third stream that is no region map
        with pytest.raises(FormatError, match="roi|region-of-interest"):
            codec.decompress(container.pack(header, [*streams, streams[1]]))


def test_stream_lengths_are_checked_against_the_declared_size():
    codec = small_codec("factorized", trained=False)
    header, (stream,) = container.unpack(codec.compress(_noise(32, 48)))
    cases = {
        "not whole words": stream + b"\x00",
        "longer than its symbols can need": stream + bytes(4 * 8 * 6 * 48 * 3),
    }
    for bad in cases.values():
        with pytest.raises(FormatError, match="corrupted stream 'y'"):  # noqa: PT012
            codec.decompress(container.pack(header, [bad]))
    assert codec.decompress(container.pack(header, [stream])).shape == (32, 48, 3)


def _raise(error: BaseException):
    def call(*args, **kwargs):
        raise error

    return call


def test_an_out_of_memory_in_xla_becomes_one_clean_error(monkeypatch):
    """XLA's RESOURCE_EXHAUSTED (issue 15: an 84-byte nlq file asked for 34 GB) and numpy's
    MemoryError become MemoryBudgetError; other runtime errors are bugs and propagate."""
    codec = small_codec("hyperprior", trained=False)
    data = codec.compress(_noise(64, 64))
    oom = jax.errors.JaxRuntimeError(
        "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 36507222016 bytes."
    )
    for error in (oom, MemoryError()):
        monkeypatch.setattr(codec.runner, "call", _raise(error))
        with pytest.raises(MemoryBudgetError, match="out of memory decoding this 64×64 image"):
            codec.decompress(data)
    internal = jax.errors.JaxRuntimeError("INTERNAL: something else")
    monkeypatch.setattr(codec.runner, "call", _raise(internal))
    with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
        codec.decompress(data)


def test_cli_max_memory(tmp_path, capsys):
    """`nlq decompress IN OUT --max-memory SIZE`: one line and exit 2 over it, nothing written;
    a larger budget decodes; a bad size is a usage error."""
    codec = small_codec("hyperprior", trained=False)
    export = codec.save(tmp_path / "export")
    src = tmp_path / "in.nlq"
    src.write_bytes(codec.compress(_noise(64, 64)))
    out = tmp_path / "out.png"
    argv = ["decompress", str(src), str(out), "--checkpoint", str(export)]
    assert cli.main([*argv, "--max-memory", "64M"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "over the limit of 0.06 GiB" in lines[0], lines
    assert lines[0].startswith("nlq decompress: error: decoding this 64×64 image needs about")
    assert not out.exists()
    assert cli.main([*argv, "--max-memory", "1.5GiB"]) == 0
    assert out.exists()
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--max-memory", "lots"])
    assert exit_.value.code == 2
    assert "not a memory size: 'lots'" in capsys.readouterr().err
