"""Reading inputs and writing outputs of the command-line tools without losing data.

Inputs are read with a size cap, and only from regular files or pipes: a device such as
`/dev/zero` is refused before any byte is read. Outputs are checked before any work is done and
written atomically:

- an output that is the input file itself (same inode, whatever the path) is always refused;
- an output that is a directory, a device or another non-regular file is always refused;
- an existing regular output file is replaced only when it is empty, when `is_ours` says the
  command wrote it (a .nlq file for `nlq compress`, an image marked as written by nlq_jax for
  `nlq decompress`), or when the user passes `--force`;
- the data goes to a unique temporary file in the output's directory, renamed over the output
  when complete; on any failure (disk full, interrupt) the temporary file is removed, and an
  existing output is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable

from nlq_jax.errors import NLQError

# The largest input file read (an image or a .nlq file): 1 GiB. An uncompressed 16-bit RGBA
# image at the codec's limit of 2**24 pixels is 128 MiB.
MAX_INPUT_BYTES = 1 << 30


def check_input(path: str | os.PathLike, max_bytes: int = MAX_INPUT_BYTES) -> bool:
    """Checks an input before it is read.

    Args:
        path: the input file.
        max_bytes: the largest regular file accepted.

    Returns:
        True for a regular file (its size is checked here), False for a pipe (the reader must
        cap what it reads to `max_bytes`).

    Raises:
        NLQError: the path is missing, a directory, a device or socket, or a file larger than
            `max_bytes`.
    """
    name = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise NLQError(f"{name}: no such file") from None
    except OSError as e:
        raise NLQError(f"{name}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise NLQError(f"{name}: is a directory, not a file")
    if stat.S_ISFIFO(st.st_mode):
        return False
    if not stat.S_ISREG(st.st_mode):
        raise NLQError(f"{name}: not a regular file (a device or socket)")
    if st.st_size > max_bytes:
        raise NLQError(f"{name}: too large ({st.st_size} bytes, limit {max_bytes})")
    return True


def read_capped(path: str | os.PathLike, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """Reads a regular file or a pipe whole, refusing more than `max_bytes` (see `check_input`).

    Raises:
        NLQError: as `check_input`, or the file cannot be read or holds more than `max_bytes`.
    """
    check_input(path, max_bytes)
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise NLQError(f"{name}: cannot read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise NLQError(f"{name}: too large (more than {max_bytes} bytes)")
    return data


def check_output(
    output: str | os.PathLike,
    input: str | os.PathLike,
    *,
    force: bool,
    is_ours: Callable[[str], bool],
    kind: str,
) -> None:
    """Refuses an output path whose writing could destroy data (rules in the module docstring).

    Args:
        output: the path to be written.
        input: the command's input file; the output may never be the same file.
        force: replace an existing regular file that the command did not write.
        is_ours: whether an existing regular file is one this command writes.
        kind: what the command writes, for the message ("a .nlq file").

    Raises:
        NLQError: the output is the input, a directory or a non-regular file, or an existing
            file that is not `kind` and `force` is False.
    """
    name = os.fspath(output)
    # realpath also catches "missing/../in.png", which becomes the input once the folders
    # that the writer creates exist.
    if os.path.realpath(output) == os.path.realpath(input):
        raise NLQError(f"{name}: is the input file; refusing to overwrite it")
    try:
        st = os.stat(output)
    except FileNotFoundError:
        return
    except OSError as e:
        raise NLQError(f"{name}: cannot write ({e.strerror or e})") from None
    with contextlib.suppress(OSError):
        if os.path.samefile(output, input):
            raise NLQError(f"{name}: is the input file; refusing to overwrite it")
    if stat.S_ISDIR(st.st_mode):
        raise NLQError(f"{name}: is a directory; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise NLQError(f"{name}: not a regular file; refusing to replace it")
    if force or st.st_size == 0 or is_ours(name):
        return
    raise NLQError(f"{name}: exists and is not {kind}; pass --force to overwrite it")


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` through a unique temporary file in the same directory, renamed
    over `path` when complete; nothing is left behind on failure. Creates parent directories.

    Raises:
        NLQError: the file cannot be written (the message says why, in one line).
    """
    name = os.fspath(path)
    # The temporary file goes where the kernel will resolve `path`, so the rename stays within
    # one folder (abspath would resolve "link/.." differently).
    directory, base = os.path.split(name)
    directory = directory or "."
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.part")
    try:
        os.makedirs(directory, exist_ok=True)
        # os.open with 0o666 honours the umask, unlike tempfile's private 0o600 files.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, name)
    except OSError as e:
        raise NLQError(f"{name}: cannot write ({e.strerror or e})") from None
    finally:
        with contextlib.suppress(OSError):  # gone after the rename
            os.unlink(tmp)
