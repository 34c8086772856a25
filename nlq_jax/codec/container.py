"""The .nlq container: one compressed image, its model's identity, and checksums (versions 1, 2).

A .nlq file holds the entropy-coded streams of one image and enough to refuse decoding it with
the wrong model: the model's name and a hash of its weights and coding tables. Every integer is
little-endian. With `n` the length of the model name and `k` the number of streams, version 1
(every model's files but the progressive ones) is:

```
offset          size  field
0               4     magic b"\\x89NLQ" (the high byte catches 7-bit transfers, as in PNG)
4               1     format version, u8: 1
5               1     n = model name length, u8, 1..64
6               n     model name, ASCII [a-z0-9_]
6+n             16    model hash (opaque here: truncated sha256 of weights + tables)
22+n            4     image height, u32, 1..65535
26+n            4     image width, u32, 1..65535
30+n            1     channels, u8: 1 (decode to greyscale) or 3 (RGB)
31+n            1     k = number of streams, u8, 1..32
32+n            4k    length of each stream in bytes, u32
32+n+4k         sum   the streams' bytes, concatenated in order
end-4           4     CRC-32 (zlib.crc32) of every byte before it, u32
```

Its overhead around the streams is `36 + n + 4k` bytes (`HEADER_OVERHEAD`). Version 2 (the
files of a progressive model, `Header.progressive`: an RVQ model's stages) checks the header
and each stream on its own, so that a file cut short keeps its complete streams:

```
offset          size  field
0               32+n  as version 1 up to k (the version byte is 2)
32+n            1     flags, u8: bit 0 progressive (any prefix of the streams, from the
                      first, is a valid coarser file); the other bits are 0
33+n            4k    length of each stream in bytes, u32
33+n+4k         4     CRC-32 of every byte before it (header and length table), u32
37+n+4k         ...   each stream in order: its bytes, then the CRC-32 of every byte of the
                      file before that CRC (so the last one is a whole-file CRC, as in v1)
```

Its overhead is `37 + n + 8k` bytes. `unpack` reads both versions and wants the whole file.
`unpack_partial` also takes a progressive file cut short anywhere after its first stream (a
download interrupted, a file truncated to a byte budget): it returns the streams that are
complete with their CRC, and how many the file declares; a stream the data ends inside is
dropped. What it refuses, like `unpack`: an end inside the header or the length table or
before the first stream and its CRC are complete (truncation), and a complete stream or header
whose CRC fails (corruption, never taken for truncation); a non-progressive file must be whole.

`unpack` and `unpack_partial` trust nothing in the file: they check magic and version, then
the integrity (v1: the CRC of the whole file; v2: the header's, bounds-checked, then each
stream's) before they believe a field, then each field's range, that the image size is sane
and that the stream lengths add up to exactly the bytes present. They never allocate according
to a size they have not validated, and any malformed input raises `FormatError` with a
one-line message; no other exception escapes for any byte string.
"""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import struct
import zlib
from collections.abc import Sequence

from nlq_jax.errors import FormatError, NLQError

MAGIC = b"\x89NLQ"
# The version of the files `pack` writes unless they are progressive (then version 2).
VERSION = 1
PROGRESSIVE_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
HASH_BYTES = 16
MAX_NAME_LENGTH = 64
MAX_SIDE = 65535
MAX_STREAMS = 32
MAX_STREAM_BYTES = (1 << 32) - 1
# The largest file `read_file` reads: 1 GiB.
MAX_FILE_BYTES = 1 << 30
CHANNELS = (1, 3)
# Version 2's flag bits: the only one defined.
FLAG_PROGRESSIVE = 0x01

_NAME_RE = re.compile(rb"[a-z0-9_]{1,64}")
_CRC_BYTES = 4
# magic, version, name length: what precedes the name.
_PREFIX_BYTES = len(MAGIC) + 2
# hash, height, width, channels, stream count: what follows the name, before the lengths.
_SHAPE = struct.Struct(f"<{HASH_BYTES}sIIBB")
# The smallest well-formed file: a 1-character name, one empty stream (version 1's; version
# 2's is 5 bytes longer).
MIN_FILE_BYTES = _PREFIX_BYTES + 1 + _SHAPE.size + 4 + _CRC_BYTES


def HEADER_OVERHEAD(num_streams: int, model_name_length: int, version: int = VERSION) -> int:
    """Bytes a .nlq file spends besides its streams: header, stream lengths and CRCs.

    Args:
        num_streams: number of streams in the file, 1..32.
        model_name_length: length of the model name in characters, 1..64.
        version: the file's format version, 1 or 2.

    Returns:
        `36 + model_name_length + 4 * num_streams` (version 1), `37 + model_name_length +
        8 * num_streams` (version 2); file size = this + sum of stream lengths.
    """
    if not 1 <= num_streams <= MAX_STREAMS:
        raise ValueError(f"num_streams must be in 1..{MAX_STREAMS}, got {num_streams}")
    if not 1 <= model_name_length <= MAX_NAME_LENGTH:
        raise ValueError(
            f"model_name_length must be in 1..{MAX_NAME_LENGTH}, got {model_name_length}"
        )
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    overhead = _PREFIX_BYTES + model_name_length + _SHAPE.size + 4 * num_streams + _CRC_BYTES
    if version == 1:
        return overhead
    return overhead + 1 + _CRC_BYTES * num_streams


@dataclasses.dataclass(frozen=True)
class Header:
    """What a .nlq file says about the image and the model that coded it.

    Attributes:
        model_name: the model's registered name, 1..64 characters of [a-z0-9_].
        model_hash: 16 opaque bytes identifying the weights and coding tables.
        height: image height in pixels, 1..65535.
        width: image width in pixels, 1..65535.
        channels: 1 if the image decodes to greyscale, 3 for RGB.
        progressive: any prefix of the streams (from the first) is a valid, coarser file, so
            one cut short still decodes (`unpack_partial`); such a file is written in version 2.
    """

    model_name: str
    model_hash: bytes
    height: int
    width: int
    channels: int
    progressive: bool = False

    def __post_init__(self):
        if not isinstance(self.model_name, str) or not re.fullmatch(
            r"[a-z0-9_]{1,64}", self.model_name
        ):
            raise ValueError(
                f"model_name must be 1..64 characters of [a-z0-9_], got {self.model_name!r}"
            )
        if not isinstance(self.model_hash, bytes) or len(self.model_hash) != HASH_BYTES:
            raise ValueError(f"model_hash must be {HASH_BYTES} bytes, got {self.model_hash!r}")
        for field in ("height", "width"):
            value = getattr(self, field)
            if not _is_int(value) or not 1 <= value <= MAX_SIDE:
                raise ValueError(f"{field} must be an int in 1..{MAX_SIDE}, got {value!r}")
        if not _is_int(self.channels) or self.channels not in CHANNELS:
            raise ValueError(f"channels must be 1 or 3, got {self.channels!r}")
        if not isinstance(self.progressive, bool):
            raise ValueError(f"progressive must be a bool, got {self.progressive!r}")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def pack(header: Header, streams: Sequence[bytes], *, version: int | None = None) -> bytes:
    """Serializes one compressed image to the bytes of a .nlq file.

    Args:
        header: the image shape and the identity of the model that coded it.
        streams: 1..32 byte strings (e.g. the hyper-latent and latent bitstreams).
        version: the format version (default: 2 for a progressive header, else 1, whose bytes
            are those of every file before version 2 existed).

    Returns:
        The complete file contents, CRCs included.

    Raises:
        TypeError: `header` is not a `Header` or `streams` holds something other than bytes.
        ValueError: `streams` is empty, has more than 32 entries, or one is too long; or the
            version is unknown, or 1 for a progressive header.
        Both are bugs in the caller, not bad user input.
    """
    if not isinstance(header, Header):
        raise TypeError(f"header must be a Header, got {type(header).__name__}")
    if isinstance(streams, (bytes, bytearray, memoryview, str)):
        raise TypeError("streams must be a sequence of byte strings, not one byte string")
    streams = list(streams)
    if not 1 <= len(streams) <= MAX_STREAMS:
        raise ValueError(f"need 1..{MAX_STREAMS} streams, got {len(streams)}")
    for i, stream in enumerate(streams):
        if not isinstance(stream, (bytes, bytearray, memoryview)):
            raise TypeError(f"stream {i} must be bytes, got {type(stream).__name__}")
    streams = [bytes(s) for s in streams]
    for i, stream in enumerate(streams):
        if len(stream) > MAX_STREAM_BYTES:
            raise ValueError(f"stream {i} is longer than {MAX_STREAM_BYTES} bytes")
    if version is None:
        version = PROGRESSIVE_VERSION if header.progressive else VERSION
    if version not in SUPPORTED_VERSIONS or (version == 1 and header.progressive):
        raise ValueError(f"cannot write version {version!r} (progressive: {header.progressive})")
    name = header.model_name.encode("ascii")
    parts = [
        MAGIC,
        struct.pack("<BB", version, len(name)),
        name,
        _SHAPE.pack(
            header.model_hash,
            header.height,
            header.width,
            header.channels,
            len(streams),
        ),
    ]
    if version == 1:
        parts += [struct.pack(f"<{len(streams)}I", *(len(s) for s in streams)), *streams]
        body = b"".join(parts)
        return body + struct.pack("<I", zlib.crc32(body))
    parts += [
        bytes([FLAG_PROGRESSIVE if header.progressive else 0]),
        struct.pack(f"<{len(streams)}I", *(len(s) for s in streams)),
    ]
    out = bytearray(b"".join(parts))
    crc = zlib.crc32(out)
    out += struct.pack("<I", crc)
    for stream in streams:
        crc = zlib.crc32(stream, zlib.crc32(out[-_CRC_BYTES:], crc))
        out += stream + struct.pack("<I", crc)
    return bytes(out)


def unpack(data: bytes, *, max_pixels: int = 1 << 28) -> tuple[Header, list[bytes]]:
    """Parses and validates the bytes of a whole .nlq file (version 1 or 2).

    Args:
        data: the whole file.
        max_pixels: largest height * width accepted; a file asking for more is refused before
            anything is allocated for it.

    Returns:
        `(header, streams)`.

    Raises:
        FormatError: `data` is not a .nlq file, of an unsupported version, corrupted,
            truncated, has trailing bytes, or describes an absurd image. The message is one line.
        TypeError: `data` is not a bytes-like object (a bug in the caller).
    """
    header, streams, _ = _unpack(data, max_pixels, partial=False)
    return header, streams


def unpack_partial(data: bytes, *, max_pixels: int = 1 << 28) -> tuple[Header, list[bytes], int]:
    """As `unpack`, but a progressive file may be cut short after its first stream.

    Args:
        data: the file, or the start of a progressive one.
        max_pixels: as in `unpack`.

    Returns:
        `(header, streams, declared)`: the streams complete with their CRC (all of them for a
        whole file), and the number the file declares (more than `len(streams)` when it was
        cut short: a stream the data ends inside is dropped with the ones after it).

    Raises:
        FormatError: as `unpack`, and for a truncated file unless it is progressive and its
            header and first stream are complete. A complete stream whose CRC fails is
            corruption, refused like any other.
        TypeError: `data` is not a bytes-like object (a bug in the caller).
    """
    return _unpack(data, max_pixels, partial=True)


def _unpack(data: bytes, max_pixels: int, partial: bool) -> tuple[Header, list[bytes], int]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data) if not isinstance(data, bytes) else data
    size = len(data)

    # 1. Enough bytes for the smallest possible file; magic; version.
    if size < MIN_FILE_BYTES:
        if size >= len(MAGIC) and data.startswith(MAGIC):
            raise FormatError(
                f"truncated .nlq file: {size} bytes, the smallest valid file has {MIN_FILE_BYTES}"
            )
        raise FormatError(f"not a .nlq file (only {size} bytes)")
    if not data.startswith(MAGIC):
        raise FormatError("not a .nlq file (bad magic bytes)")
    version = data[4]
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise FormatError(
            f"unsupported .nlq format version {version} (this nlq_jax reads versions {supported})"
        )
    if version == 1:
        return _unpack_v1(data, max_pixels)
    return _unpack_v2(data, max_pixels, partial)


def _unpack_v1(data: bytes, max_pixels: int) -> tuple[Header, list[bytes], int]:
    size = len(data)
    # 2. Integrity of everything, before any field is believed.
    (stored_crc,) = struct.unpack_from("<I", data, size - _CRC_BYTES)
    if zlib.crc32(memoryview(data)[: size - _CRC_BYTES]) != stored_crc:
        raise FormatError("corrupted (CRC mismatch)" + _truncation_hint(data))

    # 3. Fields, each bounds-checked against the bytes present before it is read.
    name_length = data[5]
    if not 1 <= name_length <= MAX_NAME_LENGTH:
        raise FormatError(f"invalid model name length {name_length} (must be 1..64)")
    shape_at = _PREFIX_BYTES + name_length
    lengths_at = shape_at + _SHAPE.size
    if lengths_at + _CRC_BYTES > size:
        raise FormatError(f"truncated .nlq file: {size} bytes end inside the header")
    header, num_streams = _header_fields(data, shape_at, max_pixels, flags=0)
    payload_at = lengths_at + 4 * num_streams
    if payload_at + _CRC_BYTES > size:
        raise FormatError(f"truncated .nlq file: {size} bytes end inside the stream lengths")
    lengths = struct.unpack_from(f"<{num_streams}I", data, lengths_at)

    # 4. The streams fill the payload exactly.
    payload_bytes = size - _CRC_BYTES - payload_at
    declared = sum(lengths)
    if declared > payload_bytes:
        raise FormatError(
            f"truncated .nlq file: streams declare {declared} bytes, {payload_bytes} present"
        )
    if declared < payload_bytes:
        raise FormatError(
            f"trailing bytes in .nlq file: streams declare {declared} bytes, "
            f"{payload_bytes} present"
        )
    streams = []
    offset = payload_at
    for length in lengths:
        streams.append(data[offset : offset + length])
        offset += length
    return header, streams, num_streams


def _unpack_v2(data: bytes, max_pixels: int, partial: bool) -> tuple[Header, list[bytes], int]:
    size = len(data)
    # 2. Where the header's CRC is, from two bytes bounds-checked first; then that CRC.
    name_length = data[5]
    if not 1 <= name_length <= MAX_NAME_LENGTH:
        raise FormatError(f"invalid model name length {name_length} (must be 1..64)")
    shape_at = _PREFIX_BYTES + name_length
    lengths_at = shape_at + _SHAPE.size + 1
    if lengths_at > size:
        raise FormatError(f"truncated .nlq file: {size} bytes end inside the header")
    num_streams = data[lengths_at - 2]
    if not 1 <= num_streams <= MAX_STREAMS:
        raise FormatError(f"invalid stream count {num_streams} (must be 1..{MAX_STREAMS})")
    crc_at = lengths_at + 4 * num_streams
    if crc_at + _CRC_BYTES > size:
        raise FormatError(
            f"truncated .nlq file: {size} bytes end inside the stream lengths or their CRC"
        )
    (stored_crc,) = struct.unpack_from("<I", data, crc_at)
    crc = zlib.crc32(memoryview(data)[:crc_at])
    if crc != stored_crc:
        raise FormatError("corrupted (header CRC mismatch)")

    # 3. Fields.
    header, _ = _header_fields(data, shape_at, max_pixels, flags=data[lengths_at - 1])
    lengths = struct.unpack_from(f"<{num_streams}I", data, lengths_at)

    # 4. Each stream and its CRC; a progressive file may end after any complete one.
    streams = []
    offset = crc_at + _CRC_BYTES
    crc = zlib.crc32(data[crc_at:offset], crc)
    for i, length in enumerate(lengths):
        end = offset + length
        if end + _CRC_BYTES > size:
            if partial and header.progressive and i > 0:
                return header, streams, num_streams
            where = "its first stream" if i == 0 else f"stream {i}"
            raise FormatError(
                f"truncated .nlq file: {size} bytes end inside {where} (the header declares "
                f"{offset + sum(lengths[i:]) + _CRC_BYTES * (num_streams - i)})"
            )
        crc = zlib.crc32(memoryview(data)[offset:end], crc)
        (stored_crc,) = struct.unpack_from("<I", data, end)
        if crc != stored_crc:
            raise FormatError(f"corrupted (CRC mismatch in stream {i})")
        crc = zlib.crc32(data[end : end + _CRC_BYTES], crc)
        streams.append(data[offset:end])
        offset = end + _CRC_BYTES
    if offset != size:
        raise FormatError(
            f"trailing bytes in .nlq file: {size - offset} after the last stream's CRC"
        )
    return header, streams, num_streams


def _header_fields(data: bytes, shape_at: int, max_pixels: int, flags: int) -> tuple[Header, int]:
    """The header's fields after the name length (present: the caller checked), validated."""
    name = data[_PREFIX_BYTES:shape_at]
    if not _NAME_RE.fullmatch(name):
        raise FormatError("invalid model name (must be ASCII [a-z0-9_])")
    model_hash, height, width, channels, num_streams = _SHAPE.unpack_from(data, shape_at)
    if not 1 <= height <= MAX_SIDE or not 1 <= width <= MAX_SIDE:
        raise FormatError(f"absurd image size {height}x{width} (each side must be 1..{MAX_SIDE})")
    if channels not in CHANNELS:
        raise FormatError(f"invalid channel count {channels} (must be 1 or 3)")
    if not 1 <= num_streams <= MAX_STREAMS:
        raise FormatError(f"invalid stream count {num_streams} (must be 1..{MAX_STREAMS})")
    if flags & ~FLAG_PROGRESSIVE:
        raise FormatError(f"unknown flags {flags:#04x} (this nlq_jax knows 0x01, progressive)")
    if height * width > max_pixels:
        raise FormatError(
            f"absurd image size {height}x{width} = {height * width} pixels (limit {max_pixels})"
        )
    header = Header(
        model_name=name.decode("ascii"),
        model_hash=model_hash,
        height=height,
        width=width,
        channels=channels,
        progressive=bool(flags & FLAG_PROGRESSIVE),
    )
    return header, num_streams


def _truncation_hint(data: bytes) -> str:
    """Says whether a file that failed its CRC looks cut short, from its (untrusted) header.

    Only arithmetic on fields that are present; any inconsistency gives no hint.
    """
    size = len(data)
    name_length = data[5]
    lengths_at = _PREFIX_BYTES + name_length + _SHAPE.size
    if not 1 <= name_length <= MAX_NAME_LENGTH or lengths_at > size:
        return ""
    num_streams = data[lengths_at - 1]
    if not 1 <= num_streams <= MAX_STREAMS or lengths_at + 4 * num_streams > size:
        return ""
    lengths = struct.unpack_from(f"<{num_streams}I", data, lengths_at)
    expected = lengths_at + 4 * num_streams + sum(lengths) + _CRC_BYTES
    if expected > size:
        return f"; the file looks truncated ({size} bytes, its header declares {expected})"
    return ""


def read_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """Reads a .nlq file whole, refusing one larger than `max_bytes` without reading it.

    Only regular files and pipes are read (a pipe up to `max_bytes`); a device such as
    /dev/zero is refused before any byte is read.

    Args:
        path: the file.
        max_bytes: the largest file accepted.

    Returns:
        The file's bytes, to give to `unpack`.

    Raises:
        FormatError: the file is larger than `max_bytes`.
        NLQError: the file is missing, a directory, a device or socket, or cannot be read.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not (stat.S_ISREG(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
                raise NLQError(f"{os.fspath(path)}: not a regular file (a device or socket)")
            size = st.st_size
            if size > max_bytes:
                raise FormatError(
                    f"{os.fspath(path)}: too large for a .nlq file ({size} bytes, "
                    f"limit {max_bytes})"
                )
            # st_size is 0 for pipes and may be stale for a file being written: cap the read.
            data = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise NLQError(f"{os.fspath(path)}: no such file") from None
    except IsADirectoryError:
        raise NLQError(f"{os.fspath(path)}: is a directory, not a .nlq file") from None
    except OSError as e:
        raise NLQError(f"{os.fspath(path)}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise FormatError(f"{os.fspath(path)}: too large for a .nlq file (limit {max_bytes})")
    return data
