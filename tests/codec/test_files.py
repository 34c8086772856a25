"""Inputs read with a cap, outputs checked and written atomically (`nlq_jax.codec.files`)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from nlq_jax.codec import files
from nlq_jax.errors import NLQError


def _listing(directory) -> dict:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()}


def test_write_replaces_whole_file(tmp_path):
    files.write_atomic(tmp_path / "a" / "x.bin", b"first")
    files.write_atomic(tmp_path / "a" / "x.bin", b"second")
    assert _listing(tmp_path / "a") == {"x.bin": b"second"}


def test_write_onto_a_directory_leaves_nothing(tmp_path):
    (tmp_path / "x.nlq").mkdir()
    with pytest.raises(NLQError, match="cannot write"):
        files.write_atomic(tmp_path / "x.nlq", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["x.nlq"]
    assert list((tmp_path / "x.nlq").iterdir()) == []


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs POSIX file size limits")
def test_a_real_write_failure_leaves_nothing(tmp_path):
    """The kernel refuses the write (EFBIG, as a full disk gives ENOSPC): no temporary file is
    left and the existing output is intact."""
    resource = pytest.importorskip("resource")
    (tmp_path / "x.nlq").write_bytes(b"old")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the process is killed
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        with pytest.raises(NLQError, match="too large"):
            files.write_atomic(tmp_path / "x.nlq", bytes(10_000))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert _listing(tmp_path) == {"x.nlq": b"old"}


def test_output_rules(tmp_path):
    src, other, empty = tmp_path / "in.png", tmp_path / "other", tmp_path / "empty"
    src.write_bytes(b"photo")
    other.write_bytes(b"not ours")
    empty.touch()
    (tmp_path / "ours").write_bytes(b"ours")
    (tmp_path / "dir").mkdir()
    (tmp_path / "alias.png").symlink_to(src)

    def check(output, force=False):
        files.check_output(output, src, force=force, is_ours=lambda p: p.endswith("ours"),
                           kind="ours")  # fmt: skip

    for output in (tmp_path / "new", empty, tmp_path / "ours"):
        check(output)
    check(other, force=True)
    for output, message in [
        (src, "input"), (tmp_path / "alias.png", "input"), (tmp_path / "." / "in.png", "input"),
        (tmp_path / "missing" / ".." / "in.png", "input"),
        (tmp_path / "dir", "directory"), (other, "--force"),
    ]:  # fmt: skip
        with pytest.raises(NLQError, match=message):
            check(output)
        if message != "--force":
            with pytest.raises(NLQError, match=message):
                check(output, force=True)
    if os.path.exists("/dev/null"):
        with pytest.raises(NLQError, match="not a regular file"):
            check("/dev/null", force=True)


def test_inputs_are_capped(tmp_path):
    (tmp_path / "small").write_bytes(bytes(100))
    assert files.read_capped(tmp_path / "small", max_bytes=100) == bytes(100)
    with pytest.raises(NLQError, match="too large"):
        files.read_capped(tmp_path / "small", max_bytes=99)
    if os.path.exists("/dev/zero"):
        with pytest.raises(NLQError, match="not a regular file"):
            files.read_capped("/dev/zero")
    # A pipe is read up to the cap, not to its end.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for size, ok in ((100, True), (101, False)):
        writer = threading.Thread(target=lambda n=size: fifo.write_bytes(bytes(n)))
        writer.start()
        if ok:
            assert files.read_capped(fifo, max_bytes=100) == bytes(100)
        else:
            with pytest.raises(NLQError, match="too large"):
                files.read_capped(fifo, max_bytes=100)
        writer.join(10)
