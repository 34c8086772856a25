"""Trained models that ship inside the package.

`default` is a mean-scale hyperprior trained with nlq_jax on BSDS500 (see
`default/MODEL_CARD.md`): what `nlq compress IN OUT` uses without `--checkpoint`, what
`Codec.load("default")` loads, and what `--config.init_from=default` fine-tunes.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("default",)


def resolve(name_or_path: str | os.PathLike) -> Path:
    """An export directory: a shipped model's by name, else the path as given."""
    if isinstance(name_or_path, str) and name_or_path in NAMES:
        return HERE / name_or_path
    return Path(name_or_path)


def shipped_exports() -> list[Path]:
    """The shipped models' export directories that are present."""
    return [HERE / n for n in NAMES if (HERE / n / "model.json").is_file()]
