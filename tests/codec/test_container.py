"""Tests of the .nlq container: layout, round trip, and refusal of every malformed input.

Every layout is built here byte by byte from the module docstring's tables (`_raw`: version 1,
`_raw_v2`, `_raw_v3`), independently of `pack`. `pack` writes version 3; files of versions 1
and 2 must still read as they always did.
"""

from __future__ import annotations

import contextlib
import datetime
import math
import struct
import time
import tracemalloc
import unittest.mock
import zlib

import hypothesis
import hypothesis.strategies as st
import pytest

from nlq_jax import domains
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
    assert container.pack(HEADER, STREAMS) == _raw_v3()
    assert container.pack(HEADER, STREAMS, version=1) == _raw()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_round_trip(version):
    header, streams = container.unpack(container.pack(HEADER, STREAMS, version=version))
    assert header == HEADER
    assert streams == STREAMS
    assert (header.height, header.width, header.channels) == (512, 768, 3)
    assert header.shape == (512, 768, 3) and header.domain == domains.IMAGE


@pytest.mark.parametrize(
    "header",
    [
        container.Header("a", bytes(16), 1, 1, 1),
        container.Header("z" * 64, b"\xff" * 16, 65535, 65535, 3),
        container.Header("model_0_9", HASH, 7, 3, 1),
    ],
)
@pytest.mark.parametrize("num_streams", [1, 2, 32])
@pytest.mark.parametrize("version", [1, 3])
def test_round_trip_extremes(header, num_streams, version):
    streams = [bytes([i]) * i for i in range(num_streams)]
    data = container.pack(header, streams, version=version)
    overhead = container.HEADER_OVERHEAD(num_streams, len(header.model_name), version=version)
    assert len(data) == overhead + sum(map(len, streams))
    got_header, got_streams = container.unpack(data, max_pixels=1 << 32)
    assert got_header == header
    assert got_streams == streams


def test_header_overhead_formula():
    # Version 1: 4 magic + 1 version + 1 name length + n + 16 hash + 4 + 4 + 1 + 1 + 4k + 4 CRC.
    assert container.HEADER_OVERHEAD(1, 1, version=1) == 41 == container.MIN_FILE_BYTES
    assert container.HEADER_OVERHEAD(2, 10, version=1) == 36 + 10 + 8
    # Version 3: 4 + 1 + 1 + n + 16 + 1 domain + 1 rank + 4r + 1 flags + 1 k + 4k + 4 + 4k.
    assert container.HEADER_OVERHEAD(2, 10) == 30 + 10 + 12 + 16 == 42 + 10 + 16
    assert container.HEADER_OVERHEAD(1, 1, rank=1) == 43
    assert container.HEADER_OVERHEAD(32, 64, rank=8) == 30 + 64 + 32 + 256
    for bad in ({"rank": 0}, {"rank": 9}, {"rank": 2, "version": 1}, {"version": 4}):
        with pytest.raises(ValueError):
            container.HEADER_OVERHEAD(1, 1, **bad)


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
        {"shape": (2, 2, 3)},  # and height, width, channels
        {"height": None, "width": None, "channels": None, "shape": (2, 2)},
        {"height": None, "width": None, "channels": None, "shape": (2, 2, 3, 1)},
        {"height": None, "width": None, "channels": None, "shape": (2, 65536, 3)},
        {"height": None, "width": None, "channels": None, "shape": (2, 2, 2)},
        {"domain": "audio"},
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
            _raw(version=4),
            "unsupported .nlq format version 4 (this nlq_jax reads versions 1, 2, 3)",
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


@pytest.mark.parametrize("version", [1, 2, 3])
def test_max_pixels_is_respected(version):
    data = container.pack(HEADER, STREAMS, version=version)
    container.unpack(data, max_pixels=512 * 768)
    with pytest.raises(FormatError, match="absurd image size 512x768"):
        container.unpack(data, max_pixels=512 * 768 - 1)


def test_truncated_file_is_reported_as_such():
    data = container.pack(HEADER, STREAMS, version=1)
    with pytest.raises(FormatError, match=r"CRC mismatch.*looks truncated"):
        container.unpack(data[:-10])
    data = container.pack(HEADER, STREAMS)
    with pytest.raises(FormatError, match=r"truncated .nlq file: .* end inside stream 2"):
        container.unpack(data[:-10])


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_truncation_is_refused(version):
    data = container.pack(HEADER, STREAMS, version=version)
    for length in range(len(data)):
        with pytest.raises(FormatError):
            container.unpack(data[:length])


@pytest.mark.parametrize("version", [1, 2, 3])
def test_every_single_byte_change_is_detected(version):
    # CRC-32 detects every error burst of up to 32 bits, so no one-byte change may pass.
    data = container.pack(HEADER, STREAMS, version=version)
    for position in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            mutated = bytearray(data)
            mutated[position] ^= flip
            with pytest.raises(FormatError):
                container.unpack(bytes(mutated))


@pytest.mark.parametrize("version", [1, 2, 3])
def test_appended_bytes_are_refused(version):
    data = container.pack(HEADER, STREAMS, version=version)
    with pytest.raises(FormatError):
        container.unpack(data + b"\x00")


@pytest.mark.parametrize("version", [1, 2, 3])
def test_huge_declared_sizes_allocate_nothing(version):
    # Lengths that claim 32 x 4 GiB, and the largest image, in a 200-byte file.
    sizes = {"height": 65535, "width": 65535, "lengths": [0xFFFFFFFF] * 32}
    if version == 1:
        data = _raw(**sizes, payload=bytes(10))
    elif version == 2:
        data = _raw_v2(**sizes, streams=[b"x"] * 3)
    else:
        data = _raw_v3(shape=(65535, 65535, 3), lengths=sizes["lengths"], streams=[b"x"] * 3)
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
    assert container.pack(header, STREAMS, version=2) == _raw_v2()
    assert container.pack(HEADER, STREAMS, version=2) == _raw_v2(flags=0)
    for streams in ([b"x"], STREAMS, [bytes([i]) * i for i in range(32)]):
        data = container.pack(header, streams, version=2)
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


@pytest.mark.parametrize("version", [2, 3])
def test_v2_truncated_non_progressive_file_is_refused(version):
    data = container.pack(HEADER, STREAMS, version=version)
    for length in range(len(container.MAGIC), len(data)):
        with pytest.raises(FormatError, match="truncated"):
            container.unpack_partial(data[:length])


@pytest.mark.parametrize("version", [2, 3])
def test_v2_corruption_is_never_taken_for_truncation(version):
    """Every single-byte change of a progressive file, whole or cut, fails a CRC (header or
    stream): FormatError, never a shorter file. (Bytes of a stream the cut leaves incomplete
    are dropped unread: damage there is indistinguishable from the cut.)"""
    streams = [b"map", bytes(range(40)), b"last stream"]
    data = container.pack(PROGRESSIVE, streams, version=version)
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
            assert header.progressive and data[4] in (2, 3)
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


# What the structured fuzz tests of versions 2 and 3 draw after the shape: the flags, the
# declared stream lengths and count, the streams, a cut, CRCs valid or not.
_STREAMS_AFTER_THE_SHAPE = {
    "flags": st.integers(0, 255),
    "lengths": st.lists(st.integers(0, 2**32 - 1), max_size=40),
    "num_streams_delta": st.integers(-2, 2),
    "streams": st.lists(st.binary(max_size=24), max_size=6),
    "cut": st.integers(0, 400),
    "valid_crcs": st.booleans(),
}


@_FUZZ
@hypothesis.given(
    height=st.integers(0, 2**32 - 1),
    channels=st.integers(0, 255),
    **_STREAMS_AFTER_THE_SHAPE,
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


# Version 3: a domain byte and a shape of any rank; flags and CRCs as in version 2.

# Test-only domains, registered by `registered` (the format needs no change for them).
AUDIO = domains.Domain(
    name="audio", code=1, batch_key="audio", rate_unit="bps", spatial_axes=(1,), channels=(1, 2)
)
VIDEO = domains.Domain(
    name="video", code=2, batch_key="video", rate_unit="bpp", spatial_axes=(1, 2, 3),
    channels=(3,), max_size=65535,
)  # fmt: skip
TENSOR = domains.Domain(
    name="tensor", code=200, batch_key="x", rate_unit="bits", spatial_axes=tuple(range(1, 8)),
    channels=tuple(range(1, 256)),
)  # fmt: skip
TEST_DOMAINS = (AUDIO, VIDEO, TENSOR)


@contextlib.contextmanager
def registered(*extra: domains.Domain):
    """The test domains known to `nlq_jax.domains` for the duration (a hypothesis test cannot
    take a function-scoped fixture)."""
    with unittest.mock.patch.dict(domains.DOMAINS, {d.name: d for d in extra}):
        yield


@pytest.fixture
def audio():
    with registered(AUDIO):
        yield AUDIO


def _raw_v3(
    *,
    name=b"hyperprior",
    name_length=None,
    model_hash=HASH,
    domain=0,
    shape=(512, 768, 3),
    rank=None,
    flags=0,
    streams=None,
    lengths=None,
    num_streams=None,
    crcs=None,
) -> bytes:
    """A version-3 file byte by byte from the documented layout, independently of `pack`."""
    streams = STREAMS if streams is None else streams
    lengths = [len(s) for s in streams] if lengths is None else lengths
    out = (
        b"\x89NLQ"
        + bytes([3, len(name) if name_length is None else name_length])
        + name
        + model_hash
        + bytes([domain, len(shape) if rank is None else rank])
        + b"".join(struct.pack("<I", n) for n in shape)
        + bytes([flags, len(lengths) if num_streams is None else num_streams])
        + b"".join(struct.pack("<I", n) for n in lengths)
    )
    out += struct.pack("<I", zlib.crc32(out))
    for i, stream in enumerate(streams):
        out += stream
        out += struct.pack("<I", zlib.crc32(out) if crcs is None else crcs[i])
    return out


def test_v3_pack_matches_documented_layout(audio):
    assert container.pack(PROGRESSIVE, STREAMS) == _raw_v3(shape=(64, 96, 3), name=b"nlq", flags=1)
    header = container.Header("m", HASH, shape=(48000, 2), domain="audio")
    assert header.domain is audio and header.shape == (48000, 2)
    data = container.pack(header, [b"x"])
    assert data == _raw_v3(name=b"m", domain=1, shape=(48000, 2), streams=[b"x"])
    assert len(data) == container.HEADER_OVERHEAD(1, 1, rank=2) + 1 == 30 + 1 + 8 + 8 + 1
    for version in (1, 2):
        with pytest.raises(ValueError, match="cannot write version"):
            container.pack(header, [b"x"], version=version)


def test_audio_header_round_trips(audio):
    """An audio-like signal (samples, channels) with a test-only domain: the format needs no
    change for it, and it is told from an image by its domain byte."""
    header = container.Header("wave_codec", HASH, shape=(10 * 48000, 2), domain=audio,
                              progressive=True)  # fmt: skip
    data = container.pack(header, STREAMS)
    got, streams = container.unpack(data)
    assert got == header and streams == STREAMS
    assert got.domain is audio and got.shape == (480000, 2)
    with pytest.raises(AttributeError, match="no image size"):
        got.height  # noqa: B018
    # A sample count over an image's side, under the caller's limit of samples.
    with pytest.raises(FormatError, match="absurd audio size 480000 = 480000 samples"):
        container.unpack(data, max_pixels=479999)
    # Channels the domain does not take, a rank it does not have.
    with pytest.raises(FormatError, match=r"invalid channel count 3 \(must be 1 or 2\)"):
        container.unpack(_raw_v3(domain=1, shape=(100, 3)))
    with pytest.raises(FormatError, match="invalid audio shape"):
        container.unpack(_raw_v3(domain=1, shape=(100, 2, 1)))


def test_an_unknown_domain_is_refused():
    data = container.pack(
        container.Header("m", HASH, shape=(480000, 2), domain=AUDIO), [b"x"]
    )  # a Domain object needs no registry to be written
    with pytest.raises(FormatError, match="unknown domain 1 \\(this nlq_jax knows 0 image\\)"):
        container.unpack(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_raw_v3()[:30], "truncated .nlq file: 30 bytes"),
        (_raw_v3()[:42], "end inside the header"),
        (_raw_v3()[:47], "end inside the header"),
        (_raw_v3(name=b"m")[:41], "end inside the stream lengths"),
        (_raw_v3()[:62], "end inside the stream lengths or their CRC"),
        (_raw_v3(rank=0, shape=()), "invalid shape rank 0 (must be 1..8)"),
        (_raw_v3(rank=9, shape=(1,) * 9), "invalid shape rank 9"),
        (_raw_v3(shape=(512, 768)), "invalid image shape (512, 768)"),
        (_raw_v3(shape=(1, 2, 3, 3)), "invalid image shape"),
        (_raw_v3(shape=(0, 768, 3)), "absurd image size 0x768"),
        (_raw_v3(shape=(512, 65536, 3)), "absurd image size 512x65536"),
        (_raw_v3(shape=(65535, 65535, 3)), "absurd image size 65535x65535 = "),
        (_raw_v3(shape=(512, 768, 2)), "invalid channel count 2 (must be 1 or 3)"),
        (_raw_v3(shape=(512, 768, 0)), "absurd image shape (512, 768, 0)"),
        (_raw_v3(domain=7), "unknown domain 7"),
        (_raw_v3(flags=2), "unknown flags 0x02"),
        (_raw_v3(num_streams=0, lengths=[], streams=[]), "invalid stream count 0"),
        (_raw_v3(lengths=[1] * 33, streams=[b"x"] * 33), "invalid stream count 33"),
        (_raw_v3(name=b"Hyperprior"), "invalid model name"),
        (_raw_v3(name=b"", name_length=0), "invalid model name length 0"),
        (_raw_v3(crcs=[0, 0, 0]), "CRC mismatch in stream 0"),
        (_raw_v3(lengths=[17, 0, 79]), "CRC mismatch in stream 2"),
        (_raw_v3() + b"\x00", "trailing bytes in .nlq file: 1 after the last stream"),
        (_raw_v3(lengths=[0xFFFFFFFF] * 3), "end inside its first stream"),
    ],
)
def test_v3_refusals(data, message):
    with pytest.raises(FormatError) as info:
        container.unpack_partial(data)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_v3_header_crc_covers_domain_and_shape():
    data = bytearray(_raw_v3())
    for position in range(len(data) - sum(len(s) + 4 for s in STREAMS)):
        mutated = bytearray(data)
        mutated[position] ^= 0x04
        with pytest.raises(FormatError):
            container.unpack(bytes(mutated))


@st.composite
def _headers(draw) -> container.Header:
    """A valid header of any of the domains (the image and the test ones): random name, hash,
    shape within the domain's limits, progressive or not."""
    domain = draw(st.sampled_from((domains.IMAGE, *TEST_DOMAINS)))
    spatial = [draw(st.integers(1, domain.max_size)) for _ in domain.spatial_axes]
    shape = (*spatial, draw(st.sampled_from(domain.channels)))
    return container.Header(
        draw(st.from_regex(r"[a-z0-9_]{1,64}", fullmatch=True)),
        draw(st.binary(min_size=16, max_size=16)),
        shape=shape,
        domain=domain,
        progressive=draw(st.booleans()),
    )


_NO_LIMIT = 1 << 300  # above any product of 8 u32 sizes


@_FUZZ
@hypothesis.given(
    header=_headers(), streams=st.lists(st.binary(max_size=40), min_size=1, max_size=6)
)
def test_fuzz_v3_round_trip_of_any_domain_and_shape(header, streams):
    with registered(*TEST_DOMAINS):
        data = container.pack(header, streams)
        assert data[4] == 3 and data[22 + len(header.model_name)] == header.domain.code
        overhead = container.HEADER_OVERHEAD(
            len(streams), len(header.model_name), rank=len(header.shape)
        )
        assert len(data) == overhead + sum(map(len, streams))
        assert container.unpack(data, max_pixels=_NO_LIMIT) == (header, streams)
        samples = math.prod(header.domain.spatial_shape(header.shape))
        with pytest.raises(FormatError, match="absurd"):
            container.unpack(data, max_pixels=samples - 1)


@_FUZZ
@hypothesis.given(
    header=_headers(),
    streams=st.lists(st.binary(max_size=24), min_size=1, max_size=5),
    cut=st.integers(0, 10**6),
    position=st.integers(0, 10**6),
    bit=st.integers(0, 7),
)
def test_fuzz_v3_every_cut_or_bit_flip_is_an_error_or_a_prefix(header, streams, cut, position, bit):
    """A cut file is a FormatError, or (progressive, cut after a complete stream) its complete
    streams; a flipped bit anywhere in a whole file is always a FormatError."""
    with registered(*TEST_DOMAINS):
        data = container.pack(header, streams)
        short = data[: cut % len(data)]
        try:
            got, got_streams, declared = container.unpack_partial(short, max_pixels=_NO_LIMIT)
        except FormatError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert header.progressive and got == header and declared == len(streams)
            assert 1 <= len(got_streams) < len(streams)
            assert got_streams == streams[: len(got_streams)]
        flipped = bytearray(data)
        flipped[position % len(data)] ^= 1 << bit
        with pytest.raises(FormatError):
            container.unpack_partial(bytes(flipped), max_pixels=_NO_LIMIT)


@_FUZZ
@hypothesis.given(st.binary(max_size=300))
def test_fuzz_v3_random_body_with_valid_header_crc(rest):
    # The header CRC's position depends on the name length, rank and stream count.
    body = b"\x89NLQ\x03" + rest
    n = body[5] if len(body) > 5 else 0
    r_at = 23 + n
    k_at = r_at + 2 + 4 * (body[r_at] if len(body) > r_at else 0)
    crc_at = k_at + 1 + 4 * (body[k_at] if len(body) > k_at else 0)
    if len(body) >= crc_at:
        body = body[:crc_at] + struct.pack("<I", zlib.crc32(body[:crc_at])) + body[crc_at:]
    _unpack_partial_only_format_errors(body)
    _unpack_only_format_errors(body)


@_FUZZ
@hypothesis.given(
    name_length=st.integers(0, 255),
    domain=st.sampled_from((0, 1, 2, 200, 255)),
    rank=st.integers(0, 12),
    shape=st.lists(st.integers(0, 2**32 - 1), max_size=12),
    **_STREAMS_AFTER_THE_SHAPE,
)
def test_fuzz_v3_structured_headers(
    name_length, domain, rank, shape, flags, lengths, num_streams_delta, streams, cut, valid_crcs
):
    data = _raw_v3(
        name=b"m" * min(name_length, 80),
        name_length=name_length,
        domain=domain,
        rank=rank,
        shape=shape,
        flags=flags,
        num_streams=max(0, min(255, len(lengths) + num_streams_delta)),
        lengths=lengths,
        streams=streams,
        crcs=None if valid_crcs else [0] * len(streams),
    )
    with registered(*TEST_DOMAINS):
        _unpack_partial_only_format_errors(data[: max(0, len(data) - cut)])
        _unpack_only_format_errors(data)
