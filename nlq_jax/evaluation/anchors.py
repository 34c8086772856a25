"""Published rate–distortion curves that ship with nlq_jax, addressed by name.

CompressAI's Kodak results (its own models, curves digitised from the papers, and traditional
codecs; see `nlq_jax/anchors/README.md`) are package data, so `nlq plot ours.json vtm` works on
an installed wheel without the CompressAI repository. A name is the file name without `.json`
(`compressai-bmshj2018-hyperprior_mse_cpu`, `paper-elic2022_mse`, `jpeg`, `vtm`, ...).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from nlq_jax.errors import NLQError

# The folder of each shipped set, and the images its curves are means over.
_ROOT = Path(__file__).resolve().parent.parent / "anchors"
KODAK = "compressai_kodak"
KODAK_IMAGES = tuple(f"kodim{i:02d}" for i in range(1, 25))


def names() -> list[str]:
    """Every shipped curve's name, sorted."""
    return sorted(p.stem for p in (_ROOT / KODAK).glob("*.json"))


def path(name: str) -> Path:
    """The results file of the shipped curve `name`.

    Raises:
      NLQError: no shipped curve has that name (the message suggests close ones).
    """
    candidate = _ROOT / KODAK / f"{name}.json"
    if name and "/" not in name and os.sep not in name and candidate.is_file():
        return candidate
    close = difflib.get_close_matches(name, names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "`nlq plot --list-anchors` lists them"
    raise NLQError(f"{name!r} is neither a results file nor a published curve; {hint}")


def resolve(ref: str | os.PathLike) -> Path:
    """A results file: `ref` itself when it exists, else the shipped curve of that name."""
    if os.path.exists(ref):
        return Path(ref)
    return path(os.fspath(ref))


def images_of(file: str | os.PathLike) -> tuple[str, ...] | None:
    """The images a shipped curve averages over (Kodak's 24), None for any other file."""
    try:
        shipped = Path(file).resolve().parent == (_ROOT / KODAK)
    except OSError:
        return None
    return KODAK_IMAGES if shipped else None
