"""The local model index: which export directory holds the model with a given hash.

`nlq decompress` reads the model hash from a .nlq file and looks it up here, so that a user
need not say which model wrote the file (`--checkpoint` still wins). `Codec.load` and
`Codec.save` record every export they see. The index is a convenience and nothing depends on
it: a failure to read or write it never fails a compression, an export or a decompression
that names its model.

It lives in `nlq_home()/models.json`, a JSON object {hash hex: absolute directory}, shared by
every process of the user. Its rules, for concurrent processes and damaged files:

- every change is a read-modify-write under an exclusive `flock` on `models.json.lock`
  (POSIX; where `fcntl` is missing, or the lock cannot be had within `LOCK_TIMEOUT_S`, the
  entry is not recorded), so no writer's entry is lost;
- the new contents go to a unique temporary file in the same directory, then `os.replace`, so
  a reader sees the old index or the new one, never a half-written one, and no temporary file
  survives a failure;
- contents that are not a JSON object of {32 hex digits: string} (a list, a number in place of
  a path, binary junk) are ignored with a one-line warning on stderr; the valid entries are
  kept and the file is rewritten.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: writes stay atomic, but concurrent writers may lose entries
    fcntl = None

INDEX_NAME = "models.json"
# How long a writer waits for another one before giving up on recording its entry.
LOCK_TIMEOUT_S = 10.0
# Larger than any real index (≈100 bytes an entry); a bigger file is junk, not read whole.
MAX_INDEX_BYTES = 1 << 24
_HASH_RE = re.compile(r"[0-9a-f]{32}")


def nlq_home() -> Path:
    """Where nlq_jax keeps its small caches: $NLQ_HOME, else $XDG_CACHE_HOME/nlq_jax, else
    ~/.cache/nlq_jax."""
    home = os.environ.get("NLQ_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "nlq_jax"
    )
    return Path(home)


def index_path() -> Path:
    """The index file, `nlq_home()/models.json`."""
    return nlq_home() / INDEX_NAME


def _warn(message: str) -> None:
    print(f"nlq: warning: {message}", file=sys.stderr)


def _parse(data: bytes) -> tuple[dict[str, str], str | None]:
    """The valid entries of an index file's bytes, and what was wrong with it (None: nothing)."""
    try:
        index = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}, "not valid JSON"
    if not isinstance(index, dict):
        return {}, f"a JSON {type(index).__name__}, not an object"
    valid = {
        k: v
        for k, v in index.items()
        if isinstance(k, str) and _HASH_RE.fullmatch(k) and isinstance(v, str) and v
    }
    if len(valid) != len(index):
        bad = len(index) - len(valid)
        return valid, f"{bad} invalid {'entry' if bad == 1 else 'entries'}"
    return valid, None


def _read(path: Path) -> tuple[dict[str, str], str | None]:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INDEX_BYTES + 1)
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        return {}, f"unreadable ({e.strerror or e})"
    if len(data) > MAX_INDEX_BYTES:
        return {}, f"larger than {MAX_INDEX_BYTES} bytes"
    return _parse(data)


def read_index() -> dict[str, str]:
    """The index {hash hex: directory}. A damaged index warns (one line) and gives its valid
    entries; it is rewritten with them (best effort)."""
    path = index_path()
    index, problem = _read(path)
    if problem is not None:
        try:
            repaired = _update(path, None, None)  # warns
        except OSError:
            repaired = None
        if repaired is None:
            _warn(f"model index {path} is damaged ({problem}); ignored")
        else:
            index = repaired
    return index


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[bool]:
    """Holds the index lock; yields whether it was taken (False: proceed without writing)."""
    if fcntl is None:
        yield True
        return
    try:
        fd = os.open(home / (INDEX_NAME + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        yield False
        return
    try:
        yield _acquire(fd)
    finally:
        os.close(fd)  # also releases the lock


def _acquire(fd: int) -> bool:
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        except OSError:  # e.g. a file system without locks
            return False


def _write(path: Path, index: dict[str, str]) -> None:
    """Replaces the index atomically through a unique temporary file in its directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _update(path: Path, key: str | None, entry: str | None) -> dict[str, str] | None:
    """Under the lock: reads the index, sets `key` to `entry` (if given), and rewrites the file
    when that changed it or it was damaged (with a one-line warning). Returns the index, or
    None if the lock could not be had or `key` could not be recorded."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent) as locked:
        if not locked:
            return None
        index, problem = _read(path)
        if problem is None and (key is None or index.get(key) == entry):
            return index
        if key is not None:
            index[key] = entry
        try:
            _write(path, index)
        except OSError as e:
            if problem is None:
                raise
            _warn(f"model index {path} is damaged ({problem}); ignored (cannot rewrite: {e})")
            return None if key is not None else index
        if problem is not None:
            _warn(f"model index {path} is damaged ({problem}); ignored and rewritten")
        return index


def remember(model_hash: bytes, directory: str | os.PathLike) -> bool:
    """Records that `directory` holds the model with `model_hash` (best effort: an I/O problem
    is not raised).

    Args:
        model_hash: the model's 16-byte hash, as in its .nlq files.
        directory: its export directory.

    Returns:
        Whether the entry was recorded.
    """
    try:
        return _update(index_path(), model_hash.hex(), str(Path(directory).absolute())) is not None
    except OSError:
        return False


def lookup(model_hash: bytes) -> Path | None:
    """The export directory recorded for `model_hash`, if it is recorded and still exists."""
    found = read_index().get(model_hash.hex())
    return Path(found) if found is not None and Path(found).is_dir() else None
