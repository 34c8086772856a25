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
            _raw(version=3),
            "unsupported .nlq format version 3 (this nlq_jax reads versions 1, 2)",
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


@pytest.mark.parametrize("version", [1, 2])
def test_huge_declared_sizes_allocate_nothing(version):
    # Lengths that claim 32 x 4 GiB, and the largest image, in a 200-byte file.
    sizes = {"height": 65535, "width": 65535, "lengths": [0xFFFFFFFF] * 32}
    if version == 1:
        data = _raw(**sizes, payload=bytes(10))
    else:
        data = _raw_v2(**sizes, streams=[b"x"] * 3)
    tracemalloc.start()
    try:
        with pytest.raises(FormatError):
            container.unpack_partial(data, max_pixels=1 << 40)
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
        assert container.pack(header, streams, version=data[4]) == data
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


# Version 2: a CRC over the header and one per stream; progressive files may be cut short.

PROGRESSIVE = container.Header("nlq", HASH, height=64, width=96, channels=3, progressive=True)


def _raw_v2(*, flags=1, streams=None, crcs=None, lengths=None, num_streams=None, **fields):
    """A version-2 file byte by byte from the documented layout, independently of `pack`:
    version 1's header up to the stream count (`_raw`'s `fields`), the flags, the lengths, then
    CRCs that each cover every byte before them (`crcs`: the stream CRCs to write instead)."""
    streams = STREAMS if streams is None else streams
    lengths = [len(s) for s in streams] if lengths is None else lengths
    count = len(lengths) if num_streams is None else num_streams
    head = _raw(version=2, num_streams=count, lengths=[], payload=b"", crc=False, **fields)
    out = head + bytes([flags]) + b"".join(struct.pack("<I", n) for n in lengths)
    out += struct.pack("<I", zlib.crc32(out))
    for i, stream in enumerate(streams):
        out += stream
        crc = zlib.crc32(out) if crcs is None else crcs[i]
        out += struct.pack("<I", crc)
    return out


def test_v2_pack_matches_documented_layout():
    header = container.Header("hyperprior", HASH, 512, 768, 3, progressive=True)
    assert container.pack(header, STREAMS) == _raw_v2()
    assert container.pack(HEADER, STREAMS, version=2) == _raw_v2(flags=0)
    assert container.pack(HEADER, STREAMS) == _raw()  # not progressive: version 1, as before
    for streams in ([b"x"], STREAMS, [bytes([i]) * i for i in range(32)]):
        data = container.pack(header, streams)
        assert len(data) == container.HEADER_OVERHEAD(len(streams), 10, version=2) + sum(
            map(len, streams)
        )
    assert container.HEADER_OVERHEAD(1, 1, version=2) == 46
    with pytest.raises(ValueError):
        container.pack(header, STREAMS, version=1)
    with pytest.raises(ValueError):
        container.Header("m", HASH, 1, 1, 3, progressive=1)


def test_v2_round_trip_and_flags():
    for flags in (0, 1):
        data = _raw_v2(flags=flags)
        header, streams = container.unpack(data)
        assert streams == STREAMS and header.progressive == bool(flags)
        assert container.unpack_partial(data) == (header, STREAMS, 3)
    for flags in (2, 3, 0x80):
        with pytest.raises(FormatError, match="unknown flags"):
            container.unpack(_raw_v2(flags=flags))


def _stream_ends(data: bytes, streams) -> list[int]:
    """The offset just past each stream's CRC in a version-2 file."""
    end = len(data) - sum(len(s) + 4 for s in streams)
    ends = []
    for s in streams:
        end += len(s) + 4
        ends.append(end)
    return ends


def test_v2_truncated_non_progressive_file_is_refused():
    data = container.pack(HEADER, STREAMS, version=2)
    for length in range(len(container.MAGIC), len(data)):
        with pytest.raises(FormatError, match="truncated"):
            container.unpack_partial(data[:length])


def test_v2_corruption_is_never_taken_for_truncation():
    """Every single-byte change of a progressive file, whole or cut, fails a CRC (header or
    stream): FormatError, never a shorter file. (Bytes of a stream the cut leaves incomplete
    are dropped unread: damage there is indistinguishable from the cut.)"""
    streams = [b"map", bytes(range(40)), b"last stream"]
    data = container.pack(PROGRESSIVE, streams)
    ends = _stream_ends(data, streams)
    for length in (ends[0], len(data) - 5, len(data)):
        for position in range(max(end for end in ends if end <= length)):
            for flip in (0x01, 0x80):
                mutated = bytearray(data[:length])
                mutated[position] ^= flip
                with pytest.raises(FormatError):
                    container.unpack_partial(bytes(mutated))
    corrupted = bytearray(data)
    corrupted[len(data) - 8] ^= 1  # inside the last stream
    with pytest.raises(FormatError, match="CRC mismatch in stream 2"):
        container.unpack_partial(bytes(corrupted))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_raw_v2()[:42], "end inside the header"),
        (_raw_v2()[:48], "end inside the stream lengths or their CRC"),
        (_raw_v2(num_streams=0, lengths=[], streams=[]), "invalid stream count 0"),
        (_raw_v2(lengths=[1] * 33, streams=[b"x"] * 33), "invalid stream count 33"),
        (_raw_v2(crcs=[0, 0, 0]), "CRC mismatch in stream 0"),
        (_raw_v2(lengths=[17, 0, 79]), "CRC mismatch in stream 2"),
        (_raw_v2(height=0), "absurd image size 0x768"),
        (_raw_v2(channels=2), "invalid channel count 2"),
        (_raw_v2(name=b"Hyperprior"), "invalid model name"),
        (_raw_v2() + b"\x00", "trailing bytes in .nlq file: 1 after the last stream"),
        (_raw_v2(streams=[*STREAMS, b""], lengths=[17, 0, 80]), "trailing bytes"),
    ],
)
def test_v2_refusals(data, message):
    with pytest.raises(FormatError) as info:
        container.unpack_partial(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def _unpack_partial_only_format_errors(data: bytes) -> None:
    start = time.perf_counter()
    try:
        header, streams, declared = container.unpack_partial(data)
    except FormatError as e:
        assert str(e) and "\n" not in str(e)
    else:
        # What parses is a prefix of what its complete streams pack to.
        assert 1 <= len(streams) <= declared
        packed = container.pack(header, streams, version=data[4])
        if len(streams) == declared:
            assert packed == data
        else:
            assert header.progressive and data[4] == 2
    assert time.perf_counter() - start < 0.5


@_FUZZ
@hypothesis.given(st.binary(max_size=300))
def test_fuzz_v2_random_body_with_valid_header_crc(rest):
    # The header CRC's position depends on the name length and stream count it covers.
    n = rest[0] if rest else 0
    k_at = 6 + n + 25
    body = b"\x89NLQ\x02" + rest
    crc_at = k_at + 2 + 4 * (body[k_at] if len(body) > k_at else 0)
    if len(body) >= crc_at:
        body = body[:crc_at] + struct.pack("<I", zlib.crc32(body[:crc_at])) + body[crc_at:]
    _unpack_partial_only_format_errors(body)


@_FUZZ
@hypothesis.given(
    height=st.integers(0, 2**32 - 1),
    channels=st.integers(0, 255),
    flags=st.integers(0, 255),
    lengths=st.lists(st.integers(0, 2**32 - 1), max_size=40),
    num_streams_delta=st.integers(-2, 2),
    streams=st.lists(st.binary(max_size=24), max_size=6),
    cut=st.integers(0, 400),
    valid_crcs=st.booleans(),
)
def test_fuzz_v2_structured_headers(
    height, channels, flags, lengths, num_streams_delta, streams, cut, valid_crcs
):
    num_streams = max(0, min(255, len(lengths) + num_streams_delta))
    crcs = None if valid_crcs else [0] * len(streams)
    data = _raw_v2(
        height=height,
        channels=channels,
        flags=flags,
        num_streams=num_streams,
        lengths=lengths,
        streams=streams,
        crcs=crcs,
    )
    _unpack_partial_only_format_errors(data[: max(0, len(data) - cut)])
    _unpack_only_format_errors(data)


@_FUZZ
@hypothesis.given(
    position=st.integers(0, 10**6),
    value=st.integers(0, 255),
    cut=st.integers(0, 200),
)
def test_fuzz_v2_single_byte_mutations_of_a_cut_file(position, value, cut):
    streams = [b"m", bytes(range(50)), b"x" * 30]
    data = container.pack(PROGRESSIVE, streams)
    ends = _stream_ends(data, streams)
    data = bytearray(data[: max(1, len(data) - cut)])
    # Within what it reads: the header and the complete streams (or all, if none is).
    read = max([end for end in ends if end <= len(data)], default=len(data))
    original = bytes(data)
    data[position % read] = value
    if bytes(data) == original:
        return
    with pytest.raises(FormatError):
        container.unpack_partial(bytes(data))
