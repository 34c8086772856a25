"""Entry point of training: flags, then `train.train_and_evaluate(config, workdir)`.

    python -m nlq_jax.main --config=configs/hyperprior.py:quality=3 --workdir=runs/hp3 \\
        --config.lmbda=0.0067
    nlq train --config=configs/quickstart.py --workdir=runs/quickstart     # the same entry
    nlq train                  # no flags: the quickstart, into runs/quickstart
"""

from __future__ import annotations

import sys
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

# Without flags, `nlq train` is the quickstart (configs/ beside the package, editable install).
_QUICKSTART = str(Path(__file__).resolve().parents[1] / "configs" / "quickstart.py")
_CONFIG = config_flags.DEFINE_config_file(
    "config", _QUICKSTART, "training config file[:variant]", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", "runs/quickstart", "directory for checkpoints, logs and the export"
)


def _main(argv) -> None:
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep Orbax's INFO lines out of the way
    from nlq_jax import train
    from nlq_jax.errors import NLQError

    try:
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except NLQError as e:
        print(f"nlq train: error: {e}", file=sys.stderr)
        sys.exit(2)


def run_argv(argv: list[str]) -> int:
    """`nlq train ARGS`: the arguments go to absl as they are (--config=..., --workdir=...,
    --config.X=..., --help), so they read as for `python -m nlq_jax.main`."""
    app.run(_main, argv=["nlq train", *argv])
    return 0


if __name__ == "__main__":
    app.run(_main)
