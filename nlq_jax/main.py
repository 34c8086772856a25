"""Entry point of training: flags, then `train.train_and_evaluate(config, workdir)`.

    python -m nlq_jax.main --config=configs/hyperprior.py:quality=3 --workdir=runs/hp3 \\
        --config.lmbda=0.0067
    nlq train --config=configs/quickstart.py --workdir=runs/quickstart     # the same entry
    nlq train --config=hyperprior:quality=3 --workdir=runs/hp3   # a shipped config, by name
    nlq train                  # no flags: the quickstart, into runs/quickstart

`--config` takes a file or the name of a shipped config (`nlq_jax.config_base.config_path`), so
the commands above also work from an installed wheel. Bad flags (an unknown config field, a
bad variant, a missing file) end in one line and exit status 2.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

from absl import app, flags, logging
from ml_collections import config_flags

from nlq_jax import config_base
from nlq_jax.errors import NLQError

# Without flags, `nlq train` is the quickstart.
_QUICKSTART = config_base.config_path("quickstart")
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    _QUICKSTART,
    "a config file or the name of a shipped config, then :variant (e.g. hyperprior:quality=3)",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string(
    "workdir", "runs/quickstart", "directory for checkpoints, logs and the export"
)


def _main(argv) -> None:
    if len(argv) > 1:  # e.g. `nlq train -- --config=...`: absl stops reading flags at `--`
        print(
            f"nlq train: error: unexpected arguments {' '.join(argv[1:])!r}; training takes "
            "only flags: --config=CONFIG[:VARIANT] --workdir=DIR --config.FIELD=VALUE",
            file=sys.stderr,
        )
        sys.exit(2)
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # keep Orbax's INFO lines out of the way
    # A full disk is reported once, below; Orbax's writer threads would log it for every array
    # (and, once their event loop has failed, "Event loop is closed" for every pending write).
    logging.get_absl_handler().addFilter(lambda record: write_failure(record.getMessage()) is None)
    threading.excepthook = _quiet_write_failures(threading.excepthook)
    from nlq_jax import train

    try:
        train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except NLQError as e:
        print(f"nlq train: error: {e}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        reason = write_failure(e)
        if reason is None:
            raise
        print(
            f"nlq train: error: cannot write into {_WORKDIR.value}: {reason}; make room and run "
            "the same command again to resume from the last complete checkpoint",
            file=sys.stderr,
        )
        sys.stderr.flush()
        # Orbax's writer threads still hold the failed save; ending here keeps their shutdown
        # tracebacks off the terminal. Checkpoints already committed stay intact.
        os._exit(2)


def _quiet_write_failures(default_hook):
    """A threading.excepthook that drops a background thread's failed write (the main thread
    reports it when the checkpoint manager is next waited on) and the noise that follows it."""
    failed = []

    def hook(args) -> None:
        if write_failure(args.exc_value) is not None:
            failed.append(args.exc_value)
        elif not (failed and "Event loop is closed" in str(args.exc_value)):
            default_hook(args)

    return hook


# errno → what to tell the user, for the failures of a full or size-limited disk.
_WRITE_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file-size limit)",
}


def write_failure(error: BaseException | str) -> str | None:
    """What went wrong if `error` is a failed write for lack of space, else None.

    Orbax and TensorStore wrap the operating system's error in their own exceptions (a
    ValueError whose message carries `os_error_code='28'`), so the message is searched too.
    """
    if isinstance(error, str):
        return _write_failure_in(error)
    for _ in range(10):  # the exception, then its causes
        if error is None:
            return None
        if isinstance(error, OSError) and error.errno in _WRITE_ERRORS:
            return _WRITE_ERRORS[error.errno]
        found = _write_failure_in(str(error))
        if found:
            return found
        error = error.__cause__ or error.__context__
    return None


def _write_failure_in(text: str) -> str | None:
    for code, what in _WRITE_ERRORS.items():
        if f"os_error_code='{code}'" in text or os.strerror(code) in text:
            return what
    return None


def _resolve_config(argv: list[str]) -> list[str]:
    """Rewrites `--config=NAME[:variant]` (or `--config NAME...`) to the shipped file's path."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg.startswith("--config="):
            out[i] = "--config=" + config_base.config_path(arg.removeprefix("--config="))
        elif arg == "--config" and i + 1 < len(out):
            out[i + 1] = config_base.config_path(out[i + 1])
    return out


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing with one-line errors: exit status 2 instead of a traceback."""
    prog = "nlq train" if argv and argv[0] == "nlq train" else "nlq_jax.main"
    try:
        return flags.FLAGS(_resolve_config(argv))
    except (NLQError, flags.Error) as e:
        message = _last_line(str(e))
    except (AttributeError, KeyError) as e:
        # ml_collections: `--config.unknown_field=...` ('name'\nDid you mean "other"?).
        while e.args and isinstance(e.args[0], BaseException):
            e = e.args[0]
        lines = str(e.args[0] if e.args else e).splitlines()
        field = lines[0].strip("'\"")
        flag = next((a.split("=")[0] for a in argv if a.startswith("--config.") and field in a), "")
        hint = f"; {lines[-1].strip()}" if len(lines) > 1 else ""
        message = f"{flag or '--config'}: the config has no field {field!r}{hint}"
    except (TypeError, ValueError) as e:
        message = f"bad --config override: {_last_line(str(e))}"
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def _last_line(message: str) -> str:
    """A config file's own error, without the traceback that ml_collections wraps it in."""
    if "Traceback (most recent call last)" in message:
        head = message.split(":", 1)[0]  # "flag --config=PATH"
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        return f"{head}: {lines[-1]}"
    return " ".join(message.split())


def run_argv(argv: list[str]) -> int:
    """`nlq train ARGS`: the arguments go to absl as they are (--config=..., --workdir=...,
    --config.X=..., --help), so they read as for `python -m nlq_jax.main`."""
    if any(a in ("-h", "--help", "--helpshort") for a in argv):
        print(usage())
        return 0
    app.run(_main, argv=["nlq train", *argv], flags_parser=parse_flags)
    return 0


def usage() -> str:
    """`nlq train --help`: the forms above and this module's flags."""
    module = sys.modules[__name__]
    lines = flags.FLAGS.module_help(module).splitlines()
    flag_help = "\n".join(line for line in lines if line.strip() != f"{__name__}:")
    return (
        "usage: nlq train [--config=CONFIG[:VARIANT]] [--workdir=DIR] [--config.FIELD=VALUE ...]\n"
        + __doc__.split("\n", 1)[1]
        + "\nflags:\n"
        + flag_help
        + "\n  --config.FIELD=VALUE: override any field of the config (nlq_jax/config_base.py)\n"
        + f"\nshipped configs: {', '.join(config_base.config_names())}"
    )


if __name__ == "__main__":
    app.run(_main, flags_parser=parse_flags)
