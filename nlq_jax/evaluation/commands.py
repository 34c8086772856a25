"""`nlq eval`: the rate-distortion curve of exported checkpoints on an image folder.

    nlq eval --checkpoint DIR [DIR ...] --data FOLDER --out results.json

Each checkpoint is one point: every image is compressed to a complete .nlq file (its size, header
included, gives bpp) and decompressed; PSNR and MS-SSIM compare the decoded 8-bit image with the
original over RGB; encode and decode are timed separately. Means are over images of per-image
values, as CompressAI reports them, and the file is in CompressAI's results format, so published
curves plot beside ours (`nlq plot`).

Timing: before the timed pass, each checkpoint compresses and decompresses one image of each
distinct size once, untimed, so that JIT compilation is not counted as coding time (CompressAI's
PyTorch models have no such first-call cost). `--no-warmup` times the first calls too.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

from nlq_jax.errors import NLQError
from nlq_jax.evaluation import results as results_lib


def _load_codec(path: str):
    from nlq_jax.codec.api import Codec

    return Codec.load(path)


def _common_name(names: Sequence[str]) -> str:
    """The shared stem of checkpoint names: "hyperprior-q1", "hyperprior-q3" -> "hyperprior"."""
    prefix = os.path.commonprefix(list(names))
    stem = prefix.rstrip("-_ .q0123456789") if len(names) > 1 else names[0]
    return stem or names[0]


def evaluate(
    checkpoints: Sequence[str],
    image_paths: Sequence[Path],
    name: str | None = None,
    warmup: bool = True,
    progress: bool = True,
) -> dict:
    """Measures each checkpoint on each image; returns a results dict with one point each.

    Args:
      checkpoints: exported checkpoint directories (`Codec.load` reads them).
      image_paths: the images.
      name: the curve's name; by default the common stem of the codecs' names.
      warmup: compress/decompress one image per distinct size untimed first.
      progress: show a tqdm progress bar over images.

    Raises:
      CheckpointError: a checkpoint directory is not a usable export.
      NLQError: a decoded image does not match the original's shape.
    """
    from tqdm import tqdm

    codecs = [_load_codec(c) for c in checkpoints]  # Fail early, before any image is coded.
    per_point: list[list[dict]] = []
    names = [p.name for p in image_paths]
    for codec in codecs:
        measurements = []
        warmed: set[tuple[int, ...]] = set()
        bar = tqdm(
            image_paths, desc=codec.name, unit="img", disable=not progress, dynamic_ncols=True
        )
        for path in bar:
            pixels = results_lib.read_image(path)
            if warmup and pixels.shape not in warmed:
                codec.decompress(codec.compress(pixels))
                warmed.add(pixels.shape)
            m, _ = results_lib.measure(pixels, codec.compress, codec.decompress)
            measurements.append(m)
            bar.set_postfix(bpp=f"{m['bpp']:.3f}", psnr=f"{m['psnr-rgb']:.2f}")
        per_point.append(measurements)
    codec_names = [c.name for c in codecs]
    return results_lib.make_results(
        name or _common_name(codec_names),
        "nlq_jax: " + ", ".join(codec_names),
        [
            {"checkpoint": os.fspath(c), "codec": n}
            for c, n in zip(checkpoints, codec_names, strict=True)
        ],
        names,
        per_point,
    )


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of `nlq eval`."""
    del command
    parser.add_argument(
        "--checkpoint",
        nargs="+",
        required=True,
        metavar="DIR",
        help="exported checkpoint directories, one curve point each",
    )
    parser.add_argument("--data", required=True, help="folder of images (PNG, ...)")
    parser.add_argument("--out", required=True, help="results JSON to write (CompressAI format)")
    parser.add_argument("--name", default=None, help="curve name (default: from the checkpoints)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument(
        "--no-warmup", action="store_true", help="also time the first (compiling) calls"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Evaluates the checkpoints and writes the results file."""
    paths = results_lib.list_images(args.data)
    if args.limit is not None:
        if args.limit < 1:
            raise NLQError("--limit must be at least 1")
        paths = paths[: args.limit]
    start = time.perf_counter()
    res = evaluate(
        args.checkpoint,
        paths,
        name=args.name,
        warmup=not args.no_warmup,
        progress=not args.no_progress,
    )
    results_lib.write_json(args.out, res)
    r = res["results"]
    for point, bpp, psnr in zip(res["points"], r["bpp"], r["psnr-rgb"], strict=True):
        print(f"{point['codec']}: {bpp:.4f} bpp, {psnr:.2f} dB")
    print(f"{len(paths)} images -> {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0
