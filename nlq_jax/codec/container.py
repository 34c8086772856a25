"""The .nlq container: one compressed signal, its model's identity, and checksums (versions 1-3).

A .nlq file holds the entropy-coded streams of one signal (an image; the format is the same
for audio or video) and enough to refuse decoding it with the wrong model: the model's name and
a hash of its weights and coding tables. Every integer is little-endian. `pack` writes version
3; `unpack` also reads versions 1 and 2, which are images. With `n` the length of the model
name, `r` the rank of the signal's shape and `k` the number of streams, version 3 is:

```
offset          size  field
0               4     magic b"\\x89NLQ" (the high byte catches 7-bit transfers, as in PNG)
4               1     format version, u8: 3
5               1     n = model name length, u8, 1..64
6               n     model name, ASCII [a-z0-9_]
6+n             16    model hash (opaque here: truncated sha256 of weights + tables)
22+n            1     domain, u8 (`nlq_jax.domains.Domain.code`): 0 image
23+n            1     r = rank of the shape, u8, 1..8
24+n            4r    the shape of the signal, each size u32, 1..2^32-1; the domain checks
                      it (an image: r = 3, (height, width, channels), each side 1..65535,
                      channels 1 (decode to greyscale) or 3 (RGB))
24+n+4r         1     flags, u8: bit 0 progressive (any prefix of the streams, from the
                      first, is a valid coarser file); the other bits are 0
25+n+4r         1     k = number of streams, u8, 1..32
26+n+4r         4k    length of each stream in bytes, u32, 0..2^32-1
26+n+4r+4k      4     CRC-32 (zlib.crc32) of every byte before it (header and lengths), u32
30+n+4r+4k      ...   each stream in order: its bytes, then the CRC-32 of every byte of the
                      file before that CRC (so the last one is a whole-file CRC)
```

Its overhead around the streams is `30 + n + 4r + 8k` bytes (`HEADER_OVERHEAD`; 42 + n + 8k
for an image). The maximum sizes: a name of 64 characters, 32 streams of 2^32-1 bytes each, a
shape of rank 8 whose sizes are each at most 2^32-1 (an image's sides 65535), and what
`unpack`'s `max_pixels` admits (the product of the spatial sizes: an image's pixels); a file
read from disk is at most `MAX_FILE_BYTES` (1 GiB). Version 1 (the files of every model
but the progressive ones, before version 3) is:

```
offset          size  field
0               4     magic b"\\x89NLQ"
4               1     format version, u8: 1
5               1     n = model name length, u8, 1..64
6               n     model name, ASCII [a-z0-9_]
6+n             16    model hash
22+n            4     image height, u32, 1..65535
26+n            4     image width, u32, 1..65535
30+n            1     channels, u8: 1 (decode to greyscale) or 3 (RGB)
31+n            1     k = number of streams, u8, 1..32
32+n            4k    length of each stream in bytes, u32
32+n+4k         sum   the streams' bytes, concatenated in order
end-4           4     CRC-32 (zlib.crc32) of every byte before it, u32
```

Its overhead is `36 + n + 4k` bytes. Version 2 (the files of a progressive model, before
version 3: an RVQ model's stages) checks the header and each stream on its own, as version 3
does, so that a file cut short keeps its complete streams:

```
offset          size  field
0               32+n  as version 1 up to k (the version byte is 2)
32+n            1     flags, u8: as version 3's
33+n            4k    length of each stream in bytes, u32
33+n+4k         4     CRC-32 of every byte before it (header and length table), u32
37+n+4k         ...   each stream in order: its bytes, then its CRC, as in version 3
```

Its overhead is `37 + n + 8k` bytes. A file of version 1 or 2 is an image: its `Header` has
the domain image and the shape (height, width, channels). `unpack` reads every version and
wants the whole file. `unpack_partial` also takes a progressive file (version 2 or 3) cut
short anywhere after its first stream (a download interrupted, a file truncated to a byte
budget): it returns the streams that are complete with their CRC, and how many the file
declares; a stream the data ends inside is dropped. What it refuses, like `unpack`: an end
inside the header or the length table or before the first stream and its CRC are complete
(truncation), and a complete stream or header whose CRC fails (corruption, never taken for
truncation); a non-progressive file must be whole.

`unpack` and `unpack_partial` trust nothing in the file: they check magic and version, then
the integrity (v1: the CRC of the whole file; v2, v3: the header's, once the bytes that locate
it are bounds-checked, then each stream's) before they believe a field, then each field's range
(the domain is known, the shape is valid for it and its size sane) and that the stream lengths
add up to exactly the bytes present. They never allocate according to a size they have not
validated, and any malformed input raises `FormatError` with a one-line message; no other
exception escapes for any byte string.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import struct
import zlib
from collections.abc import Sequence

from nlq_jax.domains import DOMAINS, IMAGE, Domain, domain_of_code, get_domain
from nlq_jax.errors import FormatError, NLQError

MAGIC = b"\x89NLQ"
# The version of the files `pack` writes.
VERSION = 3
# The first version with flags and a CRC per stream (an image's progressive files before 3).
PROGRESSIVE_VERSION = 2
SUPPORTED_VERSIONS = (1, 2, 3)
HASH_BYTES = 16
MAX_NAME_LENGTH = 64
# An image's largest side (in every version).
MAX_SIDE = IMAGE.max_size
# The largest rank of a shape (version 3); each size is a u32, 1..2^32-1 (`domains.MAX_SIZE`).
MAX_RANK = 8
MAX_STREAMS = 32
MAX_STREAM_BYTES = (1 << 32) - 1
# The largest file `read_file` reads: 1 GiB.
MAX_FILE_BYTES = 1 << 30
CHANNELS = IMAGE.channels
# The flag bits (versions 2 and 3): the only one defined.
FLAG_PROGRESSIVE = 0x01

_NAME_RE = re.compile(rb"[a-z0-9_]{1,64}")
_CRC_BYTES = 4
# magic, version, name length: what precedes the name.
_PREFIX_BYTES = len(MAGIC) + 2
# Versions 1, 2: hash, height, width, channels, stream count: what follows the name.
_SHAPE = struct.Struct(f"<{HASH_BYTES}sIIBB")
# Version 3: hash, domain, rank: what follows the name, before the shape.
_DOMAIN = struct.Struct(f"<{HASH_BYTES}sBB")
# The smallest well-formed file of any version: version 1's, a 1-character name and one empty
# stream (version 2's is 5 bytes longer, version 3's of rank 1 is 2 bytes longer).
MIN_FILE_BYTES = _PREFIX_BYTES + 1 + _SHAPE.size + 4 + _CRC_BYTES


def HEADER_OVERHEAD(
    num_streams: int, model_name_length: int, version: int = VERSION, rank: int = 3
) -> int:
    """Bytes a .nlq file spends besides its streams: header, stream lengths and CRCs.

    Args:
        num_streams: number of streams in the file, 1..32.
        model_name_length: length of the model name in characters, 1..64.
        version: the file's format version, 1, 2 or 3.
        rank: the rank of the signal's shape (version 3), 1..8; an image's is 3.

    Returns:
        `30 + model_name_length + 4 * rank + 8 * num_streams` (version 3; an image's:
        `42 + model_name_length + 8 * num_streams`), `36 + model_name_length + 4 * num_streams`
        (version 1), `37 + model_name_length + 8 * num_streams` (version 2); file size = this +
        sum of stream lengths.
    """
    if not 1 <= num_streams <= MAX_STREAMS:
        raise ValueError(f"num_streams must be in 1..{MAX_STREAMS}, got {num_streams}")
    if not 1 <= model_name_length <= MAX_NAME_LENGTH:
        raise ValueError(
            f"model_name_length must be in 1..{MAX_NAME_LENGTH}, got {model_name_length}"
        )
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"version must be one of {SUPPORTED_VERSIONS}, got {version!r}")
    if not 1 <= rank <= MAX_RANK or (version < 3 and rank != 3):
        raise ValueError(f"rank must be in 1..{MAX_RANK} (3 before version 3), got {rank!r}")
    overhead = _PREFIX_BYTES + model_name_length + _SHAPE.size + 4 * num_streams + _CRC_BYTES
    if version == 1:
        return overhead
    if version == 2:
        return overhead + 1 + _CRC_BYTES * num_streams
    return _PREFIX_BYTES + model_name_length + _DOMAIN.size + 4 * rank + 2 + 8 * num_streams + 4


@dataclasses.dataclass(frozen=True, init=False)
class Header:
    """What a .nlq file says about the signal and the model that coded it.

    `Header(name, hash, height, width, channels)` describes an image, as before domains;
    `Header(name, hash, shape=..., domain=...)` a signal of any domain. Equal headers have
    equal fields.

    Attributes:
        model_name: the model's registered name, 1..64 characters of [a-z0-9_].
        model_hash: 16 opaque bytes identifying the weights and coding tables.
        shape: one example's shape, 1..8 sizes each 1..2^32-1, valid for `domain`
            (`Domain.check_shape`; an image's (height, width, channels)).
        domain: the kind of signal (`nlq_jax.domains`; a name is looked up).
        progressive: any prefix of the streams (from the first) is a valid, coarser file, so
            one cut short still decodes (`unpack_partial`).
        height, width, channels: an image's shape (properties; an AttributeError for
            another domain): sides 1..65535, channels 1 if the image decodes to greyscale, 3
            for RGB.
    """

    model_name: str
    model_hash: bytes
    shape: tuple[int, ...]
    domain: Domain
    progressive: bool

    def __init__(
        self,
        model_name: str,
        model_hash: bytes,
        height: int | None = None,
        width: int | None = None,
        channels: int | None = None,
        progressive: bool = False,
        *,
        shape: Sequence[int] | None = None,
        domain: Domain | str = IMAGE,
    ):
        if not isinstance(model_name, str) or not re.fullmatch(r"[a-z0-9_]{1,64}", model_name):
            raise ValueError(
                f"model_name must be 1..64 characters of [a-z0-9_], got {model_name!r}"
            )
        if not isinstance(model_hash, bytes) or len(model_hash) != HASH_BYTES:
            raise ValueError(f"model_hash must be {HASH_BYTES} bytes, got {model_hash!r}")
        domain = get_domain(domain) if isinstance(domain, str) else domain
        if not isinstance(domain, Domain):
            raise ValueError(f"domain must be a Domain, got {domain!r}")
        image = (height, width, channels)
        if shape is None:
            if domain != IMAGE:
                raise ValueError(f"a {domain.name} header needs shape=, not height and width")
            for field, value in zip(("height", "width"), image[:2], strict=True):
                if not _is_int(value) or not 1 <= value <= MAX_SIDE:
                    raise ValueError(f"{field} must be an int in 1..{MAX_SIDE}, got {value!r}")
            if not _is_int(channels) or channels not in CHANNELS:
                raise ValueError(f"channels must be 1 or 3, got {channels!r}")
            shape = image
        elif image != (None, None, None):
            raise ValueError("give either shape= or height, width and channels, not both")
        if isinstance(shape, (str, bytes)) or not 1 <= len(shape) <= MAX_RANK:
            raise ValueError(f"shape must be 1..{MAX_RANK} sizes, got {shape!r}")
        shape = domain.check_shape(shape)
        if not isinstance(progressive, bool):
            raise ValueError(f"progressive must be a bool, got {progressive!r}")
        for name, value in (
            ("model_name", model_name),
            ("model_hash", model_hash),
            ("shape", tuple(int(n) for n in shape)),
            ("domain", domain),
            ("progressive", progressive),
        ):
            object.__setattr__(self, name, value)

    @property
    def height(self) -> int:
        """An image's height."""
        return self._image_shape()[0]

    @property
    def width(self) -> int:
        """An image's width."""
        return self._image_shape()[1]

    @property
    def channels(self) -> int:
        """An image's channels: 1 decodes to greyscale, 3 to RGB."""
        return self._image_shape()[2]

    def _image_shape(self) -> tuple[int, ...]:
        if self.domain != IMAGE:
            raise AttributeError(f"a {self.domain.name} file has no image size; use .shape")
        return self.shape


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def pack(header: Header, streams: Sequence[bytes], *, version: int | None = None) -> bytes:
    """Serializes one compressed signal to the bytes of a .nlq file.

    Args:
        header: the signal's domain and shape and the identity of the model that coded it.
        streams: 1..32 byte strings (e.g. the hyper-latent and latent bitstreams).
        version: the format version (default 3; 1 or 2 write an image as before version 3,
            for tests of old files).

    Returns:
        The complete file contents, CRCs included.

    Raises:
        TypeError: `header` is not a `Header` or `streams` holds something other than bytes.
        ValueError: `streams` is empty, has more than 32 entries, or one is too long; or the
            version is unknown, 1 for a progressive header, or 1 or 2 for another domain than
            image. Both are bugs in the caller, not bad user input.
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
    version = VERSION if version is None else version
    if (
        version not in SUPPORTED_VERSIONS
        or (version == 1 and header.progressive)
        or (version < 3 and header.domain != IMAGE)
    ):
        raise ValueError(
            f"cannot write version {version!r} (progressive: {header.progressive}, "
            f"domain: {header.domain.name})"
        )
    name = header.model_name.encode("ascii")
    parts = [MAGIC, struct.pack("<BB", version, len(name)), name]
    flags = bytes([FLAG_PROGRESSIVE if header.progressive else 0])
    count = len(streams)
    if version < 3:
        parts.append(_SHAPE.pack(header.model_hash, *header.shape, count))
    else:
        rank = len(header.shape)
        parts += [
            _DOMAIN.pack(header.model_hash, header.domain.code, rank),
            struct.pack(f"<{rank}I", *header.shape),
            flags,
            bytes([count]),
        ]
    lengths = struct.pack(f"<{count}I", *(len(s) for s in streams))
    if version == 1:
        body = b"".join([*parts, lengths, *streams])
        return body + struct.pack("<I", zlib.crc32(body))
    if version == 2:
        parts.append(flags)
    out = bytearray(b"".join([*parts, lengths]))
    crc = zlib.crc32(out)
    out += struct.pack("<I", crc)
    for stream in streams:
        crc = zlib.crc32(stream, zlib.crc32(out[-_CRC_BYTES:], crc))
        out += stream + struct.pack("<I", crc)
    return bytes(out)


def unpack(data: bytes, *, max_pixels: int = 1 << 28) -> tuple[Header, list[bytes]]:
    """Parses and validates the bytes of a whole .nlq file (version 1, 2 or 3).

    Args:
        data: the whole file.
        max_pixels: the largest product of the signal's spatial sizes accepted (an image's
            height * width); a file asking for more is refused before anything is allocated
            for it.

    Returns:
        `(header, streams)`.

    Raises:
        FormatError: `data` is not a .nlq file, of an unsupported version, corrupted,
            truncated, has trailing bytes, or describes an absurd or unknown signal. The
            message is one line.
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
    if version == 2:
        return _unpack_v2(data, max_pixels, partial)
    return _unpack_v3(data, max_pixels, partial)


def _unpack_v1(data: bytes, max_pixels: int) -> tuple[Header, list[bytes], int]:
    size = len(data)
    # 2. Integrity of everything, before any field is believed.
    (stored_crc,) = struct.unpack_from("<I", data, size - _CRC_BYTES)
    if zlib.crc32(memoryview(data)[: size - _CRC_BYTES]) != stored_crc:
        raise FormatError("corrupted (CRC mismatch)" + _truncation_hint(data))

    # 3. Fields, each bounds-checked against the bytes present before it is read.
    name_length = _name_length(data)
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
    shape_at = _PREFIX_BYTES + _name_length(data)
    lengths_at = shape_at + _SHAPE.size + 1
    if lengths_at > size:
        raise FormatError(f"truncated .nlq file: {size} bytes end inside the header")
    num_streams = _stream_count(data[lengths_at - 2])
    crc_at = lengths_at + 4 * num_streams
    crc = _header_crc(data, crc_at)

    # 3. Fields.
    header, _ = _header_fields(data, shape_at, max_pixels, flags=data[lengths_at - 1])
    lengths = struct.unpack_from(f"<{num_streams}I", data, lengths_at)

    # 4. Each stream and its CRC.
    return _checked_streams(data, header, lengths, crc_at, crc, partial)


def _unpack_v3(data: bytes, max_pixels: int, partial: bool) -> tuple[Header, list[bytes], int]:
    size = len(data)
    # 2. Where the header's CRC is, from the bytes that locate it (the name length, the rank,
    # the stream count), each bounds-checked first; then that CRC.
    domain_at = _PREFIX_BYTES + _name_length(data)
    shape_at = domain_at + _DOMAIN.size
    if shape_at > size:
        raise FormatError(f"truncated .nlq file: {size} bytes end inside the header")
    rank = data[shape_at - 1]
    if not 1 <= rank <= MAX_RANK:
        raise FormatError(f"invalid shape rank {rank} (must be 1..{MAX_RANK})")
    flags_at = shape_at + 4 * rank
    lengths_at = flags_at + 2
    if lengths_at > size:
        raise FormatError(f"truncated .nlq file: {size} bytes end inside the header")
    num_streams = _stream_count(data[flags_at + 1])
    crc_at = lengths_at + 4 * num_streams
    crc = _header_crc(data, crc_at)

    # 3. Fields: the name, the domain, the shape (valid for the domain, of a sane size).
    name = _model_name(data, domain_at)
    model_hash, code, _ = _DOMAIN.unpack_from(data, domain_at)
    try:
        domain = domain_of_code(code)
    except ValueError:
        known = ", ".join(f"{d.code} {d.name}" for d in _known_domains())
        raise FormatError(f"unknown domain {code} (this nlq_jax knows {known})") from None
    shape = struct.unpack_from(f"<{rank}I", data, shape_at)
    try:
        shape = domain.check_shape(shape)
    except ValueError as e:
        raise FormatError(str(e)) from None
    _check_flags(data[flags_at])
    _check_size(domain, shape, max_pixels)
    header = Header(
        name, model_hash, shape=shape, domain=domain, progressive=bool(data[flags_at] & 1)
    )
    lengths = struct.unpack_from(f"<{num_streams}I", data, lengths_at)

    # 4. Each stream and its CRC.
    return _checked_streams(data, header, lengths, crc_at, crc, partial)


def _known_domains() -> list[Domain]:
    return sorted(DOMAINS.values(), key=lambda d: d.code)


def _name_length(data: bytes) -> int:
    name_length = data[5]
    if not 1 <= name_length <= MAX_NAME_LENGTH:
        raise FormatError(f"invalid model name length {name_length} (must be 1..64)")
    return name_length


def _model_name(data: bytes, end: int) -> str:
    name = data[_PREFIX_BYTES:end]
    if not _NAME_RE.fullmatch(name):
        raise FormatError("invalid model name (must be ASCII [a-z0-9_])")
    return name.decode("ascii")


def _stream_count(num_streams: int) -> int:
    if not 1 <= num_streams <= MAX_STREAMS:
        raise FormatError(f"invalid stream count {num_streams} (must be 1..{MAX_STREAMS})")
    return num_streams


def _check_flags(flags: int) -> None:
    if flags & ~FLAG_PROGRESSIVE:
        raise FormatError(f"unknown flags {flags:#04x} (this nlq_jax knows 0x01, progressive)")


def _check_size(domain: Domain, shape: tuple[int, ...], max_pixels: int) -> None:
    spatial = domain.spatial_shape(shape)
    count = math.prod(spatial)
    if count > max_pixels:
        size = "x".join(str(n) for n in spatial)
        unit = "pixels" if domain == IMAGE else "samples"
        raise FormatError(f"absurd {domain.name} size {size} = {count} {unit} (limit {max_pixels})")


def _header_crc(data: bytes, crc_at: int) -> int:
    """The CRC of the header before `crc_at`, checked against the one stored there."""
    size = len(data)
    if crc_at + _CRC_BYTES > size:
        raise FormatError(
            f"truncated .nlq file: {size} bytes end inside the stream lengths or their CRC"
        )
    (stored_crc,) = struct.unpack_from("<I", data, crc_at)
    crc = zlib.crc32(memoryview(data)[:crc_at])
    if crc != stored_crc:
        raise FormatError("corrupted (header CRC mismatch)")
    return crc


def _checked_streams(
    data: bytes, header: Header, lengths: Sequence[int], crc_at: int, crc: int, partial: bool
) -> tuple[Header, list[bytes], int]:
    """Each stream after the header's CRC, and its CRC (versions 2, 3); a progressive file may
    end after any complete one (`partial`)."""
    size = len(data)
    num_streams = len(lengths)
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
    """A version-1 or -2 header's fields after the name length (present: the caller checked),
    validated."""
    name = _model_name(data, shape_at)
    model_hash, height, width, channels, num_streams = _SHAPE.unpack_from(data, shape_at)
    if not 1 <= height <= MAX_SIDE or not 1 <= width <= MAX_SIDE:
        raise FormatError(f"absurd image size {height}x{width} (each side must be 1..{MAX_SIDE})")
    if channels not in CHANNELS:
        raise FormatError(f"invalid channel count {channels} (must be 1 or 3)")
    _stream_count(num_streams)
    _check_flags(flags)
    _check_size(IMAGE, (height, width, channels), max_pixels)
    header = Header(
        name, model_hash, height, width, channels, progressive=bool(flags & FLAG_PROGRESSIVE)
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
