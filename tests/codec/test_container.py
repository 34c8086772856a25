"""Tests of the .nlq container: layout, round trip, and refusal of every malformed input."""

from __future__ import annotations

import datetime
import struct
import time
import tracemalloc
import zlib

import hypothesis
import hypothesis.strategies as st
import pytest

from nlq_jax.codec import container
from nlq_jax.errors import FormatError, NLQError

HASH = bytes(range(100, 116))
HEADER = container.Header("hyperprior", HASH, height=512, width=768, channels=3)
STREAMS = [b"hyper-latent bits", b"", b"\x00\xff" * 40]


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def _raw(
    *,
    magic=b"\x89NLQ",
    version=1,
    name=b"hyperprior",
    name_length=None,
    model_hash=HASH,
    height=512,
    width=768,
    channels=3,
    num_streams=None,
    lengths=None,
    payload=None,
    crc=True,
) -> bytes:
    """Builds a file byte by byte from the documented layout, independently of `pack`."""
    lengths = [len(s) for s in STREAMS] if lengths is None else lengths
    payload = b"".join(STREAMS) if payload is None else payload
    body = (
        magic
        + bytes([version, len(name) if name_length is None else name_length])
        + name
        + model_hash
        + struct.pack(
            "<IIBB",
            height,
            width,
            channels,
            len(lengths) if num_streams is None else num_streams,
        )
        + b"".join(struct.pack("<I", n) for n in lengths)
        + payload
    )
    return _with_crc(body) if crc else body


def test_pack_matches_documented_layout():
    assert container.pack(HEADER, STREAMS) == _raw()


def test_round_trip():
    header, streams = container.unpack(container.pack(HEADER, STREAMS))
    assert header == HEADER
    assert streams == STREAMS


@pytest.mark.parametrize(
    "header",
    [
        container.Header("a", bytes(16), 1, 1, 1),
        container.Header("z" * 64, b"\xff" * 16, 65535, 65535, 3),
        container.Header("model_0_9", HASH, 7, 3, 1),
    ],
)
@pytest.mark.parametrize("num_streams", [1, 2, 32])
def test_round_trip_extremes(header, num_streams):
    streams = [bytes([i]) * i for i in range(num_streams)]
    data = container.pack(header, streams)
    assert len(data) == container.HEADER_OVERHEAD(num_streams, len(header.model_name)) + sum(
        map(len, streams)
    )
    got_header, got_streams = container.unpack(data, max_pixels=1 << 32)
    assert got_header == header
    assert got_streams == streams


def test_header_overhead_formula():
    # 4 magic + 1 version + 1 name length + n + 16 hash + 4 + 4 + 1 + 1 + 4k + 4 CRC.
    assert container.HEADER_OVERHEAD(1, 1) == 41 == container.MIN_FILE_BYTES
    assert container.HEADER_OVERHEAD(2, 10) == 36 + 10 + 8


def test_accepts_bytearray_and_memoryview():
    data = container.pack(HEADER, STREAMS)
    assert container.unpack(bytearray(data))[1] == STREAMS
    assert container.unpack(memoryview(data))[1] == STREAMS


@pytest.mark.parametrize(
    "kwargs",
    [
        {"model_name": ""},
        {"model_name": "a" * 65},
        {"model_name": "Hyperprior"},
        {"model_name": "hyper-prior"},
        {"model_name": "é"},
        {"model_hash": bytes(15)},
        {"model_hash": "0" * 16},
        {"height": 0},
        {"width": 65536},
        {"height": 2.0},
        {"width": True},
        {"channels": 2},
    ],
)
def test_header_rejects_invalid_fields(kwargs):
    fields = {
        "model_name": "m",
        "model_hash": HASH,
        "height": 2,
        "width": 2,
        "channels": 3,
    } | kwargs
    with pytest.raises(ValueError):
        container.Header(**fields)


@pytest.mark.parametrize(
    ("header", "streams", "error"),
    [
        ("not a header", [b""], TypeError),
        (HEADER, b"bytes", TypeError),
        (HEADER, ["str"], TypeError),
        (HEADER, [], ValueError),
        (HEADER, [b""] * 33, ValueError),
    ],
)
def test_pack_rejects_programmer_errors(header, streams, error):
    with pytest.raises(error):
        container.pack(header, streams)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a .nlq file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "not a .nlq file"),
        (b"\x89NLQ\x01", "truncated"),
        (_raw(magic=b"NLQ\x89"), "not a .nlq file"),
        (
            _raw(version=2),
            "unsupported .nlq format version 2 (this nlq_jax reads version 1)",
        ),
        (_raw(version=0), "unsupported .nlq format version 0"),
        (_raw(crc=False) + b"\x00\x00\x00\x00", "corrupted (CRC mismatch)"),
        (_raw(name=b"", name_length=0), "invalid model name length 0"),
        (_raw(name=b"a" * 65), "model name length 65"),
        (_raw(name=b"Hyperprior"), "invalid model name"),
        (_raw(name=b"hyper\xffprior"), "invalid model name"),
        (_raw(name=b"hyper prior"), "invalid model name"),
        (_raw(height=0), "absurd image size 0x768"),
        (_raw(width=65536), "absurd image size"),
        (_raw(height=1 << 31, width=1 << 31), "absurd image size"),
        (_raw(channels=0), "invalid channel count 0"),
        (_raw(channels=4), "invalid channel count 4"),
        (_raw(num_streams=0, lengths=[], payload=b"xy"), "invalid stream count 0"),
        (_raw(lengths=[1] * 33, payload=bytes(33)), "invalid stream count 33"),
        (_raw(height=65535, width=65535), "absurd image size 65535x65535"),
        (_raw(lengths=[17, 0, 81]), "truncated"),
        (_raw(lengths=[17, 0, 79]), "trailing bytes"),
        (_raw(lengths=[0xFFFFFFFF] * 3), "truncated"),
        (
            _raw(num_streams=32, lengths=[1, 2], payload=b""),
            "end inside the stream lengths",
        ),
        (_with_crc(b"\x89NLQ\x01\x40" + b"a" * 40), "end inside the header"),
    ],
)
def test_refusals(data, message):
    with pytest.raises(FormatError) as info:
        container.unpack(data)
    text = str(info.value)
    assert message in text
    assert "\n" not in text


def test_header_ending_inside_lengths_is_truncated():
    # A valid CRC over a header whose stream-length table runs past the end.
    body = _raw(num_streams=5, lengths=[], payload=b"", crc=False)
    with pytest.raises(FormatError, match="truncated"):
        container.unpack(_with_crc(body))


def test_max_pixels_is_respected():
    data = container.pack(HEADER, STREAMS)
    container.unpack(data, max_pixels=512 * 768)
    with pytest.raises(FormatError, match="absurd image size 512x768"):
        container.unpack(data, max_pixels=512 * 768 - 1)


def test_truncated_file_is_reported_as_such():
    data = container.pack(HEADER, STREAMS)
    with pytest.raises(FormatError, match=r"CRC mismatch.*looks truncated"):
        container.unpack(data[:-10])


def test_every_truncation_is_refused():
    data = container.pack(HEADER, STREAMS)
    for length in range(len(data)):
        with pytest.raises(FormatError):
            container.unpack(data[:length])


def test_every_single_byte_change_is_detected():
    # CRC-32 detects every error burst of up to 32 bits, so no one-byte change may pass.
    data = container.pack(HEADER, STREAMS)
    for position in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[position] ^= flip
            with pytest.raises(FormatError):
                container.unpack(bytes(mutated))


def test_appended_bytes_are_refused():
    data = container.pack(HEADER, STREAMS)
    with pytest.raises(FormatError):
        container.unpack(data + b"\x00")


def test_huge_declared_sizes_allocate_nothing():
    # Lengths that claim 32 x 4 GiB, and the largest image, in a 200-byte file.
    data = _raw(height=65535, width=65535, lengths=[0xFFFFFFFF] * 32, payload=bytes(10))
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            container.unpack(data, max_pixels=1 << 40)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_large_file_round_trip_is_fast():
    streams = [bytes(range(256)) * (1 << 16), b"z" * 1000]  # 16 MiB + 1 kB
    data = container.pack(HEADER, streams)
    start = time.perf_counter()
    header, got = container.unpack(data)
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 1
    with pytest.raises(FormatError, match="CRC mismatch"):
        container.unpack(bytes(corrupted))
    assert time.perf_counter() - start < 5
    assert header == HEADER and got == streams


def test_not_bytes_is_a_type_error():
    with pytest.raises(TypeError):
        container.unpack("\x89NLQ")


_FUZZ = hypothesis.settings(
    max_examples=300,
    database=None,
    deadline=datetime.timedelta(milliseconds=500),
    suppress_health_check=[hypothesis.HealthCheck.too_slow],
)


def _unpack_only_format_errors(data: bytes) -> None:
    start = time.perf_counter()
    try:
        header, streams = container.unpack(data)
    except FormatError as e:
        assert str(e) and "\n" not in str(e)
    else:
        # Whatever parses must be exactly what packing its contents gives back.
        assert container.pack(header, streams) == data
    assert time.perf_counter() - start < 0.5


@_FUZZ
@hypothesis.given(st.binary(max_size=512))
def test_fuzz_random_bytes(data):
    _unpack_only_format_errors(data)


@_FUZZ
@hypothesis.given(st.binary(max_size=300))
def test_fuzz_random_body_with_valid_magic_version_and_crc(rest):
    # Reaches the field checks behind the CRC, which random bytes almost never pass.
    _unpack_only_format_errors(_with_crc(b"\x89NLQ\x01" + rest))


@_FUZZ
@hypothesis.given(
    name_length=st.integers(0, 255),
    height=st.integers(0, 2**32 - 1),
    width=st.integers(0, 2**32 - 1),
    channels=st.integers(0, 255),
    lengths=st.lists(st.integers(0, 2**32 - 1), max_size=40),
    num_streams_delta=st.integers(-2, 2),
    payload=st.binary(max_size=64),
)
def test_fuzz_structured_headers_with_valid_crc(
    name_length, height, width, channels, lengths, num_streams_delta, payload
):
    num_streams = max(0, min(255, len(lengths) + num_streams_delta))
    data = _raw(
        name=b"m" * min(name_length, 80),
        name_length=name_length,
        height=height,
        width=width,
        channels=channels,
        num_streams=num_streams,
        lengths=lengths,
        payload=payload,
    )
    _unpack_only_format_errors(data)


@_FUZZ
@hypothesis.given(
    position=st.integers(0, 10**6),
    value=st.integers(0, 255),
    crc_fixed=st.booleans(),
)
def test_fuzz_single_byte_mutations(position, value, crc_fixed):
    data = bytearray(container.pack(HEADER, STREAMS))
    position %= len(data)
    data[position] = value
    if crc_fixed:
        data = bytearray(_with_crc(bytes(data[:-4])))
    _unpack_only_format_errors(bytes(data))


def test_read_file(tmp_path):
    data = container.pack(HEADER, STREAMS)
    path = tmp_path / "image.nlq"
    path.write_bytes(data)
    assert container.read_file(path) == data
    assert container.read_file(str(path), max_bytes=len(data)) == data


def test_read_file_refuses_large_file_without_reading(tmp_path):
    path = tmp_path / "big.nlq"
    with open(path, "wb") as f:
        f.truncate(10**12)  # sparse: 1 TB on paper, nothing on disk.
    with pytest.raises(FormatError, match="too large"):
        container.read_file(path)


def test_read_file_errors(tmp_path):
    with pytest.raises(NLQError, match="no such file"):
        container.read_file(tmp_path / "missing.nlq")
    with pytest.raises(NLQError, match="directory"):
        container.read_file(tmp_path)
    path = tmp_path / "small.nlq"
    path.write_bytes(bytes(11))
    with pytest.raises(FormatError, match="too large"):
        container.read_file(path, max_bytes=10)
