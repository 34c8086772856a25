"""The .nlq container: one compressed image, its model's identity, and a checksum (version 1).

A .nlq file holds the entropy-coded streams of one image and enough to refuse decoding it with
the wrong model: the model's name and a hash of its weights and coding tables. Every integer is
little-endian. With `n` the length of the model name and `k` the number of streams:

```
offset          size  field
0               4     magic b"\\x89NLQ" (the high byte catches 7-bit transfers, as in PNG)
4               1     format version, u8; this module writes and reads 1
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

The overhead around the streams is therefore `36 + n + 4k` bytes (`HEADER_OVERHEAD`).

`unpack` trusts nothing in the file: it checks the total length, magic, version and CRC before
it reads any field, then each field's range, then that the image size is sane and that the
stream lengths add up to exactly the bytes present. It never allocates according to a size it
has not validated, and any malformed input raises `FormatError` with a one-line message; no
other exception escapes for any byte string.
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
VERSION = 1
SUPPORTED_VERSIONS = (1,)
HASH_BYTES = 16
MAX_NAME_LENGTH = 64
MAX_SIDE = 65535
MAX_STREAMS = 32
MAX_STREAM_BYTES = (1 << 32) - 1
# The largest file `read_file` reads: 1 GiB.
MAX_FILE_BYTES = 1 << 30
CHANNELS = (1, 3)

_NAME_RE = re.compile(rb"[a-z0-9_]{1,64}")
_CRC_BYTES = 4
# magic, version, name length: what precedes the name.
_PREFIX_BYTES = len(MAGIC) + 2
# hash, height, width, channels, stream count: what follows the name, before the lengths.
_SHAPE = struct.Struct(f"<{HASH_BYTES}sIIBB")
# The smallest well-formed file: a 1-character name, one empty stream.
MIN_FILE_BYTES = _PREFIX_BYTES + 1 + _SHAPE.size + 4 + _CRC_BYTES


def HEADER_OVERHEAD(num_streams: int, model_name_length: int) -> int:
    """Bytes a .nlq file spends besides its streams: header, stream lengths and CRC.

    Args:
        num_streams: number of streams in the file, 1..32.
        model_name_length: length of the model name in characters, 1..64.

    Returns:
        `36 + model_name_length + 4 * num_streams`; file size = this + sum of stream lengths.
    """
    if not 1 <= num_streams <= MAX_STREAMS:
        raise ValueError(f"num_streams must be in 1..{MAX_STREAMS}, got {num_streams}")
    if not 1 <= model_name_length <= MAX_NAME_LENGTH:
        raise ValueError(
            f"model_name_length must be in 1..{MAX_NAME_LENGTH}, got {model_name_length}"
        )
    return _PREFIX_BYTES + model_name_length + _SHAPE.size + 4 * num_streams + _CRC_BYTES


@dataclasses.dataclass(frozen=True)
class Header:
    """What a .nlq file says about the image and the model that coded it.

    Attributes:
        model_name: the model's registered name, 1..64 characters of [a-z0-9_].
        model_hash: 16 opaque bytes identifying the weights and coding tables.
        height: image height in pixels, 1..65535.
        width: image width in pixels, 1..65535.
        channels: 1 if the image decodes to greyscale, 3 for RGB.
    """

    model_name: str
    model_hash: bytes
    height: int
    width: int
    channels: int

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


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def pack(header: Header, streams: Sequence[bytes]) -> bytes:
    """Serializes one compressed image to the bytes of a .nlq file.

    Args:
        header: the image shape and the identity of the model that coded it.
        streams: 1..32 byte strings (e.g. the hyper-latent and latent bitstreams).

    Returns:
        The complete file contents, CRC included.

    Raises:
        TypeError: `header` is not a `Header` or `streams` holds something other than bytes.
        ValueError: `streams` is empty, has more than 32 entries, or one is too long.
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
    name = header.model_name.encode("ascii")
    parts = [
        MAGIC,
        struct.pack("<BB", VERSION, len(name)),
        name,
        _SHAPE.pack(
            header.model_hash,
            header.height,
            header.width,
            header.channels,
            len(streams),
        ),
        struct.pack(f"<{len(streams)}I", *(len(s) for s in streams)),
        *streams,
    ]
    body = b"".join(parts)
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(data: bytes, *, max_pixels: int = 1 << 28) -> tuple[Header, list[bytes]]:
    """Parses and validates the bytes of a .nlq file.

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
            f"unsupported .nlq format version {version} (this nlq_jax reads version {supported})"
        )

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
    if height * width > max_pixels:
        raise FormatError(
            f"absurd image size {height}x{width} = {height * width} pixels (limit {max_pixels})"
        )
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
    header = Header(
        model_name=name.decode("ascii"),
        model_hash=model_hash,
        height=height,
        width=width,
        channels=channels,
    )
    return header, streams


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
