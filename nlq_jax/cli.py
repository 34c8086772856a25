"""The `nlq` command line: `nlq train|compress|decompress|init|import|eval|baselines|plot`.

Each sub-command lives in the module that owns the work; this file only wires them up. A
command module exposes `add_arguments(parser)` and `run(args) -> int` (the exit status). Any
`nlq_jax.errors.NLQError` raised by a command is printed as one line on stderr, exit status 2:
users get a clear message, never a traceback, for bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command -> (module, one-line help). Modules are imported only when their command runs, so
# `nlq --help` and `nlq decompress` do not pay for what they do not use.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("nlq_jax.main", "train a model from an ml_collections config"),
    "compress": ("nlq_jax.codec.commands", "compress an image to a .nlq file"),
    "decompress": ("nlq_jax.codec.commands", "decompress a .nlq file to PNG"),
    "init": ("nlq_jax.codec.commands", "export an untrained model (random weights) for coding"),
    "import": ("nlq_jax.compat.commands", "import a CompressAI checkpoint as an export"),
    "eval": ("nlq_jax.evaluation.commands", "rate-distortion of checkpoints on an image folder"),
    "baselines": (
        "nlq_jax.evaluation.baseline_commands",
        "RD sweeps of JPEG, WebP, AVIF, JPEG XL, HEVC",
    ),
    "plot": ("nlq_jax.evaluation.plot_commands", "RD plots and BD-rate tables from results"),
}


def _command_module(name: str):
    return importlib.import_module(COMMANDS[name][0])


def main(argv: list[str] | None = None) -> int:
    """Parses `argv` and runs the chosen sub-command; returns its exit status."""
    from nlq_jax.errors import NLQError

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="nlq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    # Parse only the command name first, so that only its module is imported.
    known, _ = parser.parse_known_args(argv[:1])
    if known.command is None:
        parser.print_help()
        return 0 if not argv else 2
    module = _command_module(known.command)
    if hasattr(module, "run_argv"):  # `nlq train`: its flags are absl's, not argparse's
        return int(module.run_argv(argv[1:]) or 0)
    cmd_parser = argparse.ArgumentParser(
        prog=f"nlq {known.command}", description=COMMANDS[known.command][1]
    )
    module.add_arguments(cmd_parser, known.command)
    args = cmd_parser.parse_args(argv[1:])
    args.command = known.command
    try:
        return int(module.run(args) or 0)
    except NLQError as e:
        print(f"nlq {known.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nlq {known.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
