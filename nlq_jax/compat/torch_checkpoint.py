"""The tensors of a PyTorch checkpoint (`torch.save`), read without torch and without running it.

A `torch.save` file is a pickle, and unpickling calls whatever functions the file names: a .pth
from the internet can run arbitrary code under `torch.load`. This reader never runs anything
from the file. Its unpickler resolves only an allow-list of names — the ordered dict, torch's
tensor-rebuild functions and the typed storages — each to a stand-in of our own that merely
records a tensor's storage, offset, shape and strides; any other name stops the load before
anything happens. The tensors are then copied out of the raw storage bytes into numpy arrays,
their geometry checked against the bytes actually present.

Both layouts of torch's serialization.py are read:

zip (the default since torch 1.6), records under one directory ROOT:
  ROOT/data.pkl     the pickle; a storage is a persistent id
                    ("storage", <Type>Storage, key, location, numel)
  ROOT/data/KEY     its raw bytes, numel × element size
  ROOT/byteorder    "little" or "big" (absent from older files: little-endian assumed)
  ROOT/version ...  not needed

legacy (`torch.save(..., _use_new_zipfile_serialization=False)`), consecutive pickles:
  the magic number 0x1950a86a20f9469cfc6c, the protocol version 1001, a sys_info dict,
  the object (persistent ids ("storage", <Type>Storage, key, location, numel, view)),
  the list of storage keys, then per key in that order: its element count (int64
  little-endian) and its raw bytes (always little-endian).

Not read: the tar layout of the earliest torch releases, TorchScript archives, pickled
modules (`torch.save(model)`: save `model.state_dict()`), quantized, sparse and nested tensors,
and the dtypes torch saves as untyped storages (uint16/32/64, float8, complex32). bfloat16
becomes float32 (exactly).
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any

import numpy as np

from nlq_jax.errors import NLQError

MAX_FILE_BYTES = 2 * 1024**3  # larger files are refused
MAX_OUTPUT_BYTES = 4 * 1024**3  # all arrays together (views of one storage may overlap)
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # first pickle of a legacy file
PROTOCOL_VERSION = 1001  # second pickle of a legacy file
# Names looked for, in this order, in a training checkpoint's top-level dict.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")


class _Corrupt(Exception):
    """The file is not a torch checkpoint, or a damaged one (the message says how)."""


class _Sealed:
    """Objects handed to the unpickler: a pickle's BUILD must not change them (it would
    otherwise set attributes, e.g. a tensor's offset after its bounds were checked)."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _Corrupt(f"the pickle tries to modify a {type(self).__name__.strip('_')}")


class _StorageType(_Sealed):
    """Stand-in for `torch.<Name>Storage`: the element type of a storage.

    `dtype` is the type of the raw elements (uint16 for bfloat16, uint8 for bool), `kind` what
    they become: "plain", "bool" (nonzero) or "bfloat16" (to float32).
    """

    __slots__ = ("name", "dtype", "kind")

    def __init__(self, name: str, dtype: str, kind: str = "plain"):
        self.name, self.dtype, self.kind = name, np.dtype(dtype), kind


_STORAGE_TYPES = {
    t.name: t
    for t in (
        _StorageType("FloatStorage", "f4"),
        _StorageType("DoubleStorage", "f8"),
        _StorageType("HalfStorage", "f2"),
        _StorageType("BFloat16Storage", "u2", "bfloat16"),
        _StorageType("LongStorage", "i8"),
        _StorageType("IntStorage", "i4"),
        _StorageType("ShortStorage", "i2"),
        _StorageType("CharStorage", "i1"),
        _StorageType("ByteStorage", "u1"),
        _StorageType("BoolStorage", "u1", "bool"),
        _StorageType("ComplexFloatStorage", "c8"),
        _StorageType("ComplexDoubleStorage", "c16"),
    )
}


class _Storage(_Sealed):
    """A storage named by the pickle: `numel` elements of `type`, found under `key` (or, for a
    legacy view, elements `start ..` of the storage `root`). `data` is filled after the pickle
    is read: the flat raw elements, in the file's byte order."""

    __slots__ = ("key", "type", "numel", "root", "start", "data")

    def __init__(self, key: str, type: _StorageType, numel: int, root=None, start: int = 0):
        self.key, self.type, self.numel = key, type, numel
        self.root, self.start = root, start
        self.data: np.ndarray | None = None


class _Tensor(_Sealed):
    """A tensor named by the pickle: a strided view of `storage` (in elements)."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _OrderedDict(dict):
    """Stand-in for `collections.OrderedDict` (dicts keep their order). A state dict's
    attributes (`_metadata`, set by the pickle's BUILD) are ignored."""

    def __setstate__(self, state: Any) -> None:
        pass


class _Function(_Sealed):
    """Stand-in for one of torch's rebuild functions, sealed against BUILD like the rest."""

    __slots__ = ("name", "fn")

    def __init__(self, name: str, fn: Callable[..., _Tensor]):
        self.name, self.fn = name, fn

    def __call__(self, *args: Any) -> _Tensor:
        return self.fn(*args)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_ignored: Any) -> _Tensor:
    """`torch._utils._rebuild_tensor(_v2)`: checks the geometry against the storage's declared
    size (requires_grad, backward hooks and metadata are ignored)."""
    if not isinstance(storage, _Storage):
        raise _Corrupt("a tensor without a storage")
    if not isinstance(size, tuple | list) or not isinstance(stride, tuple | list):
        raise _Corrupt("a tensor whose size or stride is not a tuple")
    size, stride = tuple(size), tuple(stride)
    if len(size) != len(stride) or len(size) > 32:
        raise _Corrupt(f"a tensor of size {size[:33]} and stride {stride[:33]}")
    if not all(_is_int(v) and v >= 0 for v in (offset, *size, *stride)):
        raise _Corrupt(f"a tensor of offset {offset!r}, size {size} and stride {stride}")
    if 0 not in size:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise _Corrupt(
                f"a tensor of size {size}, stride {stride} and offset {offset} reaches past "
                f"its storage of {storage.numel} elements"
            )
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, *_ignored: Any) -> _Tensor:
    """`torch._utils._rebuild_parameter(_with_state)`: a parameter is read as its tensor."""
    if not isinstance(data, _Tensor):
        raise _Corrupt("a parameter that is not a tensor")
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): _OrderedDict,
    **{
        ("torch._utils", name): _Function(name, fn)
        for name, fn in (
            ("_rebuild_tensor", _rebuild_tensor),
            ("_rebuild_tensor_v2", _rebuild_tensor),
            ("_rebuild_parameter", _rebuild_parameter),
            ("_rebuild_parameter_with_state", _rebuild_parameter),
        )
    },
    **{("torch", name): t for name, t in _STORAGE_TYPES.items()},
}


def _one_line(text: Any, limit: int = 120) -> str:
    """`text` as a short single line (names and messages may come from a hostile file)."""
    s = str(text)
    if not s.isprintable():
        s = ascii(s)[1:-1]
    return s if len(s) <= limit else s[: limit - 3] + "..."


class _Refused(Exception):
    """The pickle names a global outside the allow-list (the message is the global)."""


class _Unpickler(pickle.Unpickler):
    """An unpickler that resolves only `_ALLOWED` names and torch's storage persistent ids.

    `storages` collects the storages by key. `legacy`: the file is in the legacy layout, whose
    persistent ids have a sixth item, None or a view (key, first element, numel) into the
    storage.
    """

    def __init__(self, file: IO[bytes], *, legacy: bool):
        super().__init__(file, encoding="utf-8")
        self.legacy = legacy
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or len(pid) != (6 if self.legacy else 5):
            raise _Corrupt(f"unknown persistent id {_one_line(repr(pid), 60)}")
        kind, storage_type, key, _location, numel = pid[:5]
        kind, key = (v.decode("ascii") if isinstance(v, bytes) else v for v in (kind, key))
        if kind != "storage" or not isinstance(storage_type, _StorageType):
            raise _Corrupt(f"unknown persistent id {_one_line(repr(pid), 60)}")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise _Corrupt(f"storage {_one_line(repr(key), 40)} of {numel!r} elements")
        storage = self._storage(key, storage_type, numel)
        view = pid[5] if self.legacy else None
        if view is None:
            return storage
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _Corrupt(f"storage view {_one_line(repr(view), 60)}")
        view_key, start, view_numel = view
        if not (isinstance(view_key, str) and _is_int(start) and _is_int(view_numel)):
            raise _Corrupt(f"storage view {_one_line(repr(view), 60)}")
        if start < 0 or view_numel < 0 or start + view_numel > numel:
            raise _Corrupt(f"a view of {view_numel} elements at {start} of a storage of {numel}")
        existing = self.storages.get(view_key)
        if existing is None:
            existing = _Storage(view_key, storage_type, view_numel, storage, start)
            self.storages[view_key] = existing
        return existing

    def _storage(self, key: str, storage_type: _StorageType, numel: int) -> _Storage:
        existing = self.storages.get(key)
        if existing is None:
            existing = self.storages[key] = _Storage(key, storage_type, numel)
        elif (
            existing.type is not storage_type
            or existing.numel != numel
            or existing.root is not None
        ):
            raise _Corrupt(f"storage {_one_line(key, 40)} is declared twice, differently")
        return existing


class _DataUnpickler(pickle.Unpickler):
    """For the legacy file's plain pickles (magic number, version, sys_info, keys): no
    globals, no persistent ids."""

    def __init__(self, file: IO[bytes]):
        super().__init__(file, encoding="utf-8")

    def find_class(self, module: str, name: str) -> Any:
        raise _Corrupt(f"unexpected global {_one_line(module, 40)}.{_one_line(name, 40)}")

    def persistent_load(self, pid: Any) -> Any:
        raise _Corrupt("unexpected persistent id")


# What a hostile or damaged file can make the unpickler, zipfile and numpy raise.
_MALFORMED = (
    _Corrupt,
    pickle.UnpicklingError,
    EOFError,
    ValueError,  # includes UnicodeDecodeError
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    OverflowError,
    RuntimeError,  # includes RecursionError; zipfile: encrypted records
    NotImplementedError,  # zipfile: unknown compression
    MemoryError,
    struct.error,
    zlib.error,
    zipfile.BadZipFile,
)


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch checkpoint as numpy arrays, read without torch.

    Nothing from the file is executed (see the module docstring): a file that asks for anything
    other than tensors, storages and ordered dicts is refused.

    Args:
      path: a file written by `torch.save`, in the zip or the legacy layout: a state dict, or a
        training checkpoint (a dict holding it under "state_dict", "model_state_dict" or
        "model"; its other entries — epoch, optimizer state... — are read and dropped).

    Returns:
      {name: array} in the file's order: C-contiguous native-endian copies of the tensors of
      the state dict, with their dtypes (bfloat16 as float32). Its non-tensor entries are
      dropped.

    Raises:
      NLQError: one line naming the file — it is missing, too large, not a torch checkpoint,
        truncated or corrupted, holds no tensors, or names something outside the allow-list.
    """
    shown = _one_line(os.fspath(path), 200)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise NLQError(
                    f"{shown}: too large for a PyTorch checkpoint ({size} bytes, "
                    f"limit {MAX_FILE_BYTES})"
                )
            head = f.read(512)
            f.seek(0)
            if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
                obj = _read_zip(f)
            elif len(head) >= 262 and head[257:262] == b"ustar":
                raise NLQError(
                    f"{shown}: a PyTorch checkpoint in the tar layout of the earliest torch "
                    "releases, which is not supported (load it with torch and save it again)"
                )
            else:
                obj = _read_legacy(f, size)
            return _state_dict(obj, shown)
    except FileNotFoundError:
        raise NLQError(f"{shown}: no such file") from None
    except IsADirectoryError:
        raise NLQError(f"{shown}: is a directory, not a PyTorch checkpoint") from None
    except _Refused as e:
        name = _one_line(e.args[0], 100)
        hint = ""
        if name.startswith(("torch.nn.", "__main__.", "__torch__.")):
            hint = "; save model.state_dict() rather than the model"
        raise NLQError(
            f"refusing to load {shown}: the pickle asks for '{name}', which is not a tensor or "
            "an ordered dict (only torch tensors are read; nothing from the file is executed)"
            f"{hint}"
        ) from None
    except _MALFORMED as e:
        reason = _one_line(f"{type(e).__name__}: {e}" if not isinstance(e, _Corrupt) else e)
        raise NLQError(
            f"{shown}: not a PyTorch checkpoint, or a truncated or corrupted one ({reason})"
        ) from None
    except OSError as e:
        if e.errno == errno.EINVAL:  # a seek to a negative offset read from a damaged zip
            raise NLQError(f"{shown}: not a PyTorch checkpoint, or a corrupted one") from None
        raise NLQError(f"{shown}: cannot read ({_one_line(e.strerror or e)})") from None


def _read_zip(f: IO[bytes]) -> Any:
    """The object of a zip-layout file, with its storages' data filled in."""
    with zipfile.ZipFile(f) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        roots = [n[: -len("data.pkl")] for n in infos if n.endswith("/data.pkl")]
        roots = [r for r in roots if r.count("/") == 1]
        if len(roots) != 1:
            raise _Corrupt(f"a zip archive with {len(roots)} records <dir>/data.pkl, not one")
        root = roots[0]
        pickled = _read_record(archive, infos.get(root + "data.pkl"), None)
        _scan(io.BytesIO(pickled))
        unpickler = _Unpickler(io.BytesIO(pickled), legacy=False)
        obj = unpickler.load()
        byteorder = "<"
        if root + "byteorder" in infos:
            mark = _read_record(archive, infos[root + "byteorder"], None)
            if mark not in (b"little", b"big"):
                raise _Corrupt(f"unknown byte order {_one_line(repr(mark), 30)}")
            byteorder = "<" if mark == b"little" else ">"
        budget = MAX_FILE_BYTES
        for storage in _needed(obj):
            dtype = storage.type.dtype.newbyteorder(byteorder)
            nbytes = storage.numel * dtype.itemsize
            budget -= nbytes
            if budget < 0:
                raise _Corrupt(f"storages of more than {MAX_FILE_BYTES} bytes")
            record = root + "data/" + storage.key
            data = _read_record(archive, infos.get(record), nbytes)
            storage.data = np.frombuffer(data, dtype)
    return obj


def _read_record(archive: zipfile.ZipFile, info: zipfile.ZipInfo | None, nbytes: int | None):
    """The bytes of one record, which must hold exactly `nbytes` (if given)."""
    if info is None:
        raise _Corrupt("a storage record is missing")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _Corrupt(f"record {_one_line(info.filename, 60)} of compression {info.compress_type}")
    if nbytes is not None and info.file_size != nbytes:
        raise _Corrupt(
            f"record {_one_line(info.filename, 60)} holds {info.file_size} bytes, "
            f"the pickle declares {nbytes}"
        )
    if info.file_size > MAX_FILE_BYTES:
        raise _Corrupt(f"record {_one_line(info.filename, 60)} of {info.file_size} bytes")
    data = archive.read(info)
    if len(data) != info.file_size:
        raise _Corrupt(f"record {_one_line(info.filename, 60)} is truncated")
    return data


def _read_legacy(f: IO[bytes], size: int) -> Any:
    """The object of a legacy-layout file, with its storages' data filled in."""
    try:
        magic = _DataUnpickler(io.BytesIO(_next_pickle(f, size))).load()
    except _MALFORMED:
        magic = None
    if type(magic) is not int or magic != MAGIC_NUMBER:
        raise _Corrupt("no torch magic number: neither a zip archive nor a legacy torch file")
    version = _DataUnpickler(io.BytesIO(_next_pickle(f, size))).load()
    if version != PROTOCOL_VERSION:
        raise _Corrupt(f"legacy protocol version {_one_line(repr(version), 30)}, not 1001")
    sys_info = _DataUnpickler(io.BytesIO(_next_pickle(f, size))).load()
    if not isinstance(sys_info, dict):  # nothing needed from it: the data is little-endian
        raise _Corrupt("no sys_info dict")
    unpickler = _Unpickler(io.BytesIO(_next_pickle(f, size)), legacy=True)
    obj = unpickler.load()
    keys = _DataUnpickler(io.BytesIO(_next_pickle(f, size))).load()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Corrupt("no list of storage keys after the pickle")
    needed = {id(s) for s in _needed(obj)}
    for key in keys:
        storage = unpickler.storages.get(key)
        if storage is None or storage.root is not None:
            raise _Corrupt(f"data for storage {_one_line(key, 40)}, which the pickle lacks")
        header = f.read(8)
        if len(header) != 8:
            raise _Corrupt(f"the file ends before storage {_one_line(key, 40)}")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise _Corrupt(
                f"storage {_one_line(key, 40)} holds {numel} elements, the pickle declares "
                f"{storage.numel}"
            )
        nbytes = numel * storage.type.dtype.itemsize
        if f.tell() + nbytes > size:
            raise _Corrupt(f"storage {_one_line(key, 40)} is truncated")
        if id(storage) in needed:
            data = f.read(nbytes)
            if len(data) != nbytes:
                raise _Corrupt(f"storage {_one_line(key, 40)} is truncated")
            storage.data = np.frombuffer(data, storage.type.dtype.newbyteorder("<"))
        else:
            f.seek(nbytes, os.SEEK_CUR)
    return obj


class _Bounded:
    """The file `f` seen as ending at `end`: no read asks for more than what is left (a
    hostile length field must not make a reader allocate gigabytes)."""

    def __init__(self, f: IO[bytes], end: int):
        self.f, self.end = f, end

    def read(self, n: int = -1) -> bytes:
        left = max(0, self.end - self.f.tell())
        return self.f.read(left if n is None or n < 0 else min(n, left))

    def readline(self) -> bytes:
        return self.f.readline(max(0, self.end - self.f.tell()))

    def tell(self) -> int:
        return self.f.tell()


def _scan(stream: Any) -> None:
    """Walks one pickle without building anything, and checks its memo indices: the unpickler
    grows (and zero-fills) its memo up to the largest index it is given, so one PUT of index
    2**32 would take 32 GiB. `pickle.Pickler` numbers the memo 0, 1, 2...; larger indices are
    refused."""
    puts = 0
    for op, arg, pos in pickletools.genops(stream):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
            if not _is_int(arg) or not 0 <= arg <= puts:
                raise _Corrupt(f"memo index {_one_line(repr(arg), 30)} at byte {pos}")
            puts += 1
        elif op.name == "MEMOIZE":
            puts += 1


def _next_pickle(f: IO[bytes], size: int) -> bytes:
    """The bytes of the pickle starting at f's position (checked by `_scan`); f is left after
    it."""
    start = f.tell()
    _scan(_Bounded(f, size))
    end = f.tell()
    f.seek(start)
    data = f.read(end - start)
    if len(data) != end - start:
        raise _Corrupt("the file changed while being read")
    return data


def _chosen(obj: Any) -> dict | None:
    """The state dict inside `obj` (the first of STATE_DICT_KEYS holding tensors, or `obj`)."""
    if not isinstance(obj, dict):
        return None
    for key in STATE_DICT_KEYS:
        value = obj.get(key)
        if isinstance(value, dict) and any(isinstance(v, _Tensor) for v in value.values()):
            return value
    if any(isinstance(v, _Tensor) for v in obj.values()):
        return obj
    return None


def _needed(obj: Any) -> list[_Storage]:
    """The root storages of the chosen state dict's tensors, each once, in key order."""
    chosen = _chosen(obj) or {}
    roots = {}
    for value in chosen.values():
        if isinstance(value, _Tensor):
            root = value.storage if value.storage.root is None else value.storage.root
            roots[id(root)] = root
    return list(roots.values())


def _state_dict(obj: Any, shown: str) -> dict[str, np.ndarray]:
    """The chosen state dict's tensors as arrays (non-tensors and non-string keys dropped)."""
    chosen = _chosen(obj)
    if chosen is None:
        if isinstance(obj, dict):
            keys = ", ".join(_one_line(repr(k), 30) for k in list(obj)[:8])
            what = f"a dict with keys {keys}" if obj else "an empty dict"
        else:
            what = f"a {type(obj).__name__.strip('_')}"
        raise NLQError(f"{shown}: no tensors found (the checkpoint holds {what})")
    out: dict[str, np.ndarray] = {}
    total = 0
    for name, value in chosen.items():
        if isinstance(name, str) and isinstance(value, _Tensor):
            out[name] = _array(value)
            total += out[name].nbytes
            if total > MAX_OUTPUT_BYTES:
                raise _Corrupt(f"tensors of more than {MAX_OUTPUT_BYTES} bytes in all")
    return out


def _array(t: _Tensor) -> np.ndarray:
    """A C-contiguous native-endian copy of the tensor `t` (its storage's data read)."""
    storage = t.storage
    root = storage if storage.root is None else storage.root
    kind = storage.type.kind
    native = {"bool": np.dtype(bool), "bfloat16": np.dtype(np.float32)}.get(
        kind, storage.type.dtype
    )
    count = 1
    for n in t.size:
        count *= n
    if count * native.itemsize > MAX_FILE_BYTES:
        raise _Corrupt(f"a tensor of size {t.size}, more than {MAX_FILE_BYTES} bytes")
    if count == 0:
        return np.zeros(t.size, native)
    if root.data is None:
        raise _Corrupt(f"no data for storage {_one_line(root.key, 40)}")
    flat = root.data[storage.start : storage.start + storage.numel]
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if len(flat) != storage.numel or last >= len(flat):  # checked already; kept as a guard
        raise _Corrupt(f"a tensor reaches past its storage {_one_line(root.key, 40)}")
    item = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[t.offset :], shape=t.size, strides=[s * item for s in t.stride], writeable=False
    )
    if kind == "bool":
        return np.ascontiguousarray(view != 0)
    if kind == "bfloat16":
        bits = np.array(view, dtype=np.uint32, order="C") << np.uint32(16)
        return bits.view(np.float32)
    return np.array(view, dtype=native, order="C")
