"""`nlq import compressai CKPT --out DIR`: a CompressAI checkpoint as an nlq_jax export."""

from __future__ import annotations

import argparse

from nlq_jax.compat import compressai


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    parser.add_argument("source", choices=["compressai"], help="the checkpoint's library")
    parser.add_argument("checkpoint", help="a .pth or .pth.tar (zoo file or training checkpoint)")
    parser.add_argument(
        "--model",
        default=None,
        help="architecture: " + ", ".join(compressai.ARCHITECTURES) + " (or ours: "
        + ", ".join(compressai.MODELS) + "); detected from the weights when omitted",
    )  # fmt: skip
    parser.add_argument("--quality", type=int, default=None, help="quality level, for the label")
    parser.add_argument("--label", default=None, help="the export's name in reports")
    parser.add_argument("--out", required=True, help="export directory to write")
    parser.add_argument(
        "--coding",
        choices=compressai.CODINGS,
        default="nlq_jax",
        help="code ŷ with nlq_jax's tables (nearest scale, 24-bit; default) or CompressAI's "
        "(next larger scale, 16-bit): files the size of CompressAI's, same reconstructions",
    )


def run(args: argparse.Namespace) -> int:
    out = compressai.import_checkpoint(
        args.checkpoint,
        args.out,
        architecture=args.model,
        quality=args.quality,
        label=args.label,
        coding=args.coding,
    )
    from nlq_jax import checkpoint

    meta = checkpoint.read_meta(out)
    kw = meta["kwargs"]
    print(f"imported {meta['model']} (N={kw['N']}, M={kw['M']}) as {meta['label']} → {out}")
    return 0
