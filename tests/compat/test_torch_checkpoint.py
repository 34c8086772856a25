"""`load_state_dict`: PyTorch checkpoints read without torch, and hostile ones refused.

The fixtures were written by torch itself (`make_torch_fixtures.py`). The other files are built
here with plain `pickle`: the hostile ones (os.system, eval, pickled modules) and torch-like ones
of chosen geometry, dtype and damage. For the latter, `_dumps` pickles stand-ins named like
torch's globals, from stand-in modules `torch` and `torch._utils` put in `sys.modules` only
while pickling — torch itself is never imported.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nlq_jax.compat import torch_checkpoint
from nlq_jax.compat.torch_checkpoint import load_state_dict
from nlq_jax.errors import NLQError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MAGIC = pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + pickle.dumps(1001, protocol=2)
SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}


# ----- stand-ins for torch's pickled globals ----------------------------------------------------


def _fake_modules() -> dict[str, types.ModuleType]:
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "DoubleStorage", "BFloat16Storage", "IntStorage", "ShortStorage",
                 "CharStorage", "ComplexFloatStorage", "LongStorage"):  # fmt: skip
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    for name in ("_rebuild_tensor_v2", "_rebuild_parameter"):

        def fn(*args):
            raise AssertionError("never called")

        fn.__module__, fn.__name__, fn.__qualname__ = "torch._utils", name, name
        setattr(utils, name, fn)
    torch._utils = utils
    nn = types.ModuleType("torch.nn.modules.conv")
    nn.Conv2d = type("Conv2d", (), {"__module__": "torch.nn.modules.conv"})
    return {"torch": torch, "torch._utils": utils, "torch.nn.modules.conv": nn}


FAKE = _fake_modules()


class Storage:
    """A storage to write: raw bytes of `numel` elements of torch.<type_name>."""

    def __init__(self, key: str, type_name: str, raw: bytes, numel: int, view=None):
        self.key, self.type_name, self.raw, self.numel, self.view = key, type_name, raw, numel, view


class Tensor:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple, state=None):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())
        self.state = state

    def __reduce__(self):
        fn = FAKE["torch._utils"]._rebuild_tensor_v2
        return (fn, self.args) if self.state is None else (fn, self.args, self.state)


class Parameter:
    def __init__(self, tensor: Tensor):
        self.tensor = tensor

    def __reduce__(self):
        fn = FAKE["torch._utils"]._rebuild_parameter
        return (fn, (self.tensor, True, collections.OrderedDict()))


def _storage(key: str, array: np.ndarray, type_name: str, view=None) -> Storage:
    return Storage(key, type_name, array.tobytes(), array.size, view)


def _dumps(obj, legacy: bool) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if not isinstance(o, Storage):
                return None
            storage_type = getattr(FAKE["torch"], o.type_name)
            pid = ("storage", storage_type, o.key, "cpu", o.numel)
            return (*pid, o.view) if legacy else pid

    buf = io.BytesIO()
    sys.modules.update(FAKE)
    try:
        Pickler(buf, protocol=2).dump(obj)
    finally:
        for name in FAKE:
            del sys.modules[name]
    return buf.getvalue()


def _write_zip(path: Path, pickled: bytes, records: dict[str, bytes], root="archive") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{root}/data.pkl", pickled)
        for name, data in records.items():
            z.writestr(f"{root}/{name}", data)
        z.writestr(f"{root}/version", "3\n")
    return path


def _save_zip(path: Path, obj, storages: list[Storage], byteorder=b"little") -> Path:
    records = {f"data/{s.key}": s.raw for s in storages}
    if byteorder is not None:
        records["byteorder"] = byteorder
    return _write_zip(path, _dumps(obj, legacy=False), records)


def _save_legacy(path: Path, obj, storages: list[Storage], pickled: bytes | None = None) -> Path:
    body = MAGIC + pickle.dumps(SYS_INFO, protocol=2)
    body += _dumps(obj, legacy=True) if pickled is None else pickled
    body += pickle.dumps([s.key for s in storages], protocol=2)
    for s in storages:
        body += struct.pack("<q", s.numel) + s.raw
    path.write_bytes(body)
    return path


def _error(path) -> str:
    with pytest.raises(NLQError) as info:
        load_state_dict(path)
    message = str(info.value)
    assert "\n" not in message and message, message
    return message


# ----- files written by torch -------------------------------------------------------------------


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "expected.npz") as npz:
        return {k: npz[k] for k in npz.files}


def _assert_same(got: dict, expected: dict) -> None:
    assert list(got) == list(expected)
    for name, want in expected.items():
        array = got[name]
        assert isinstance(array, np.ndarray), name
        assert array.dtype == want.dtype and array.shape == want.shape, name
        assert array.dtype.isnative and array.flags.c_contiguous, name
        np.testing.assert_array_equal(array, want, err_msg=name)


@pytest.mark.parametrize("name", ["small_zip.pth", "small_legacy.pth"])
def test_reads_both_layouts_exactly(name, expected):
    _assert_same(load_state_dict(FIXTURES / name), expected)
    assert set(expected) >= {"transposed", "shared.slice", "scalar", "mask", "half", "counts"}


def test_training_checkpoint_gives_its_state_dict(expected):
    state = load_state_dict(str(FIXTURES / "train_ckpt.pth.tar"))
    _assert_same(state, expected)  # no "epoch", "optimizer", "loss"


def test_arrays_are_copies(expected):
    state = load_state_dict(FIXTURES / "small_zip.pth")
    state["shared.full"][:] = 0  # owned and writable; the view of the same storage is not hit
    np.testing.assert_array_equal(state["shared.slice"], expected["shared.slice"])


# ----- torch-like files built here --------------------------------------------------------------


@pytest.mark.parametrize("legacy", [False, True])
def test_dtypes_geometry_and_parameters(tmp_path, legacy):
    f64 = np.arange(12, dtype=np.float64) - 5.5
    bf16 = np.array([1.0, -2.5, 3.140625, 2.0**100], np.float32)
    i16 = np.array([-3, 7, 300], np.int16)
    c64 = np.array([1 + 2j, -3j], np.complex64)
    storages = [
        _storage("0", f64, "DoubleStorage"),
        _storage("1", (bf16.view(np.uint32) >> 16).astype(np.uint16), "BFloat16Storage"),
        _storage("2", i16, "ShortStorage"),
        _storage("3", c64, "ComplexFloatStorage"),
    ]
    s = storages
    obj = collections.OrderedDict()
    obj["cols"] = Tensor(s[0], 1, (3, 2), (1, 4))  # elements 1, 5 / 2, 6 / 3, 7
    obj["bf16"] = Parameter(Tensor(s[1], 0, (4,), (1,)))
    obj["broadcast"] = Tensor(s[2], 2, (2, 3), (0, 0))
    obj["complex"] = Tensor(s[3], 0, (2,), (1,))
    obj["empty"] = Tensor(s[0], 0, (0, 5), (5, 1))
    obj["note"] = "not a tensor"
    save = _save_legacy if legacy else _save_zip
    state = load_state_dict(save(tmp_path / "x.pth", obj, storages))
    assert list(state) == ["cols", "bf16", "broadcast", "complex", "empty"]
    np.testing.assert_array_equal(state["cols"], f64[[1, 5, 2, 6, 3, 7]].reshape(3, 2))
    assert state["bf16"].dtype == np.float32
    np.testing.assert_array_equal(state["bf16"], bf16)  # bf16-exact
    np.testing.assert_array_equal(state["broadcast"], np.full((2, 3), 300, np.int16))
    np.testing.assert_array_equal(state["complex"], c64)
    assert state["empty"].shape == (0, 5) and state["empty"].dtype == np.float64
    assert all(a.flags.c_contiguous and a.flags.writeable for a in state.values())


def test_big_endian_zip_and_legacy_view(tmp_path):
    values = np.array([1.5, -2.0, 3.25], np.float32)
    big = Storage("0", "FloatStorage", values.astype(">f4").tobytes(), 3)
    state = load_state_dict(
        _save_zip(tmp_path / "be.pth", {"w": Tensor(big, 0, (3,), (1,))}, [big], b"big")
    )
    assert state["w"].dtype.isnative
    np.testing.assert_array_equal(state["w"], values)

    ints = np.arange(10, dtype=np.int32)
    root = _storage("7", ints, "IntStorage", view=("7v", 4, 5))  # a view of elements 4..8
    path = _save_legacy(tmp_path / "view.pth", {"v": Tensor(root, 1, (2,), (2,))}, [root])
    np.testing.assert_array_equal(load_state_dict(path)["v"], [5, 7])


def test_state_dict_under_model_key(tmp_path):
    s = _storage("0", np.arange(3, dtype=np.int8), "CharStorage")
    obj = {"epoch": 1, "model": {"a": Tensor(s, 0, (3,), (1,))}}
    state = load_state_dict(_save_zip(tmp_path / "m.pth", obj, [s], byteorder=None))
    np.testing.assert_array_equal(state["a"], [0, 1, 2])


# ----- hostile files ----------------------------------------------------------------------------


class Evil:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def _refusal(path: Path, global_name: str) -> str:
    message = _error(path)
    assert message.startswith(f"refusing to load {path}: the pickle asks for '{global_name}'")
    assert "nothing from the file is executed" in message
    return message


@pytest.mark.parametrize("legacy", [False, True])
def test_os_system_is_refused(tmp_path, legacy):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(Evil(f"touch {marker}"), protocol=2)
    system = f"{os.system.__module__}.system"  # posix.system (nt.system on Windows)
    if legacy:
        path = _save_legacy(tmp_path / "evil.pth", None, [], pickled=evil)
    else:
        path = _write_zip(tmp_path / "evil.pth", evil, {})
    _refusal(path, system)
    assert not marker.exists()

    # Also when hidden among genuine tensors, in a training checkpoint's extra entries.
    s = _storage("0", np.ones(2, np.float32), "FloatStorage")
    obj = {"state_dict": {"w": Tensor(s, 0, (2,), (1,))}, "extra": Evil(f"touch {marker}")}
    save = _save_legacy if legacy else _save_zip
    _refusal(save(tmp_path / "hidden.pth", obj, [s]), system)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name, hint",
    [
        ("builtins", "eval", False),
        ("__builtin__", "eval", False),
        ("torch.nn.modules.conv", "Conv2d", True),
        ("torch", "load", False),
        ("torch._utils", "_rebuild_from_type_v2", False),
        ("numpy.core.multiarray", "_reconstruct", False),
        ("collections", "OrderedDict.fromkeys", False),
    ],
)
def test_other_globals_are_refused(tmp_path, module, name, hint):
    pickled = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X\x05\x00\x00\x001 + 1\x85R."
    message = _refusal(_write_zip(tmp_path / "g.pth", pickled, {}), f"{module}.{name}")
    assert ("state_dict()" in message) == hint


def test_pickled_module_is_refused(tmp_path):
    conv = FAKE["torch.nn.modules.conv"].Conv2d()
    conv.weight = Tensor(_storage("0", np.ones(1, np.float32), "FloatStorage"), 0, (1,), (1,))
    path = _write_zip(tmp_path / "model.pth", _dumps(conv, legacy=False), {})
    assert "save model.state_dict()" in _refusal(path, "torch.nn.modules.conv.Conv2d")


def test_hostile_names_stay_on_one_line(tmp_path):
    pickled = b"\x80\x02cos\nsys\x0btem\r\n)R."  # a name with VT and CR in it
    _refusal(_write_zip(tmp_path / "n.pth", pickled, {}), "os.sys\\x0btem\\r")


def test_tensor_outside_its_storage_is_refused(tmp_path):
    s = _storage("0", np.arange(10, dtype=np.float32), "FloatStorage")
    for size, stride, offset in [((11,), (1,), 0), ((4, 3), (3, 1), 0), ((2,), (1,), 9)]:
        obj = {"w": Tensor(s, offset, size, stride)}
        message = _error(_save_zip(tmp_path / "oob.pth", obj, [s]))
        assert "reaches past its storage of 10 elements" in message
    obj = {"w": Tensor(s, 0, (2,), (-1,))}
    assert "stride (-1,)" in _error(_save_zip(tmp_path / "neg.pth", obj, [s]))


def test_tensor_cannot_be_modified_after_its_checks(tmp_path):
    s = _storage("0", np.arange(4, dtype=np.float32), "FloatStorage")
    obj = {"w": Tensor(s, 0, (4,), (1,), state=(None, {"offset": 10**6}))}  # BUILD
    for save in (_save_zip, _save_legacy):
        assert "tries to modify a Tensor" in _error(save(tmp_path / "b.pth", obj, [s]))


def test_storage_sizes_are_checked(tmp_path):
    s = _storage("0", np.arange(6, dtype=np.float32), "FloatStorage")
    obj = {"w": Tensor(s, 0, (6,), (1,))}
    short = Storage("0", "FloatStorage", s.raw[:-4], 6)
    message = _error(_save_zip(tmp_path / "short.pth", obj, [short]))
    assert "holds 20 bytes, the pickle declares 24" in message
    path = _save_legacy(tmp_path / "count.pth", obj, [Storage("0", "FloatStorage", s.raw, 5)])
    assert "holds 5 elements, the pickle declares 6" in _error(path)
    path = _save_legacy(tmp_path / "cut.pth", obj, [s])
    path.write_bytes(path.read_bytes()[:-1])
    assert "truncated" in _error(path)


def test_huge_tensor_is_refused_without_allocating(tmp_path):
    s = _storage("0", np.ones(1, np.float32), "FloatStorage")
    obj = {"w": Tensor(s, 0, (1 << 40, 1 << 20), (0, 0))}
    assert "more than" in _error(_save_zip(tmp_path / "huge.pth", obj, [s]))


# ----- not torch files --------------------------------------------------------------------------


def test_missing_directory_and_large_files(tmp_path, monkeypatch):
    assert _error(tmp_path / "nope.pth") == f"{tmp_path / 'nope.pth'}: no such file"
    assert "is a directory" in _error(tmp_path)
    monkeypatch.setattr(torch_checkpoint, "MAX_FILE_BYTES", 1000)
    assert "too large" in _error(FIXTURES / "small_zip.pth")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x89PNG\r\n\x1a\n" + bytes(100),
        np.random.default_rng(0).bytes(3000),
        pickle.dumps({"a": 1}, protocol=2),
        MAGIC[:-3],
        b"PK\x03\x04 not really a zip",
        b"x" * 257 + b"ustar" + bytes(300),
    ],
    ids=["empty", "png", "random", "plain-pickle", "magic-only", "fake-zip", "tar"],
)
def test_not_torch_files(tmp_path, data):
    path = tmp_path / "junk.pth"
    path.write_bytes(data)
    assert str(path) in _error(path)


def test_no_tensors(tmp_path):
    path = _save_zip(tmp_path / "t.pth", {"epoch": 3, "loss": 0.5}, [])
    assert "no tensors found (the checkpoint holds a dict with keys 'epoch', 'loss')" in _error(
        path
    )
    path = _write_zip(tmp_path / "ts.pth", b"", {}, root="archive/code")  # no ROOT/data.pkl
    assert "0 records <dir>/data.pkl" in _error(path)


@pytest.mark.parametrize("name", ["small_zip.pth", "small_legacy.pth", "train_ckpt.pth.tar"])
def test_truncated_and_damaged_fixtures(tmp_path, name):
    data = (FIXTURES / name).read_bytes()
    path = tmp_path / name
    for cut in range(0, len(data), max(1, len(data) // 150)):
        path.write_bytes(data[:cut])
        _error(path)
    rng = np.random.default_rng(1)
    for _ in range(150):  # damaged bytes: read or refused with one line, never a traceback
        damaged = bytearray(data)
        for i in rng.integers(len(data), size=3):
            damaged[i] = rng.integers(256)
        path.write_bytes(bytes(damaged))
        try:
            load_state_dict(path)
        except NLQError as e:
            assert "\n" not in str(e)
