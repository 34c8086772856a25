"""Context models: compress / decompress wall time of one 768×512 image on CPU, nlq_jax's joint,
checkerboard and channelwise beside CompressAI's mbt2018 and cheng2020-anchor, same run.

    python benchmarks/context_speed.py --image $KODAK/kodim23.png \
        --compressai-python /tmp/compressai-venv/bin/python

Random weights at `--quality` on both sides (CompressAI's (N, M) per model), 2 torch threads.
Medians of `--repeats` warm calls; our first call (jit compilation) is reported apart. The
targets (issue 6): joint decodes at least 5× faster than CompressAI's mbt2018, and checkerboard
and channelwise decode within 2× of our hyperprior. The context models are larger than the
quality's hyperprior (N = 192, M = 192 or 320 against 128/192), so each is also compared with
our hyperprior at its own (N, M): that ratio is the cost of the context model itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).parent))
from codec_speed import ours  # noqa: E402

from nlq_jax import models  # noqa: E402
from nlq_jax.codec.image_io import load_image  # noqa: E402

OURS = ("hyperprior", "joint", "checkerboard", "channelwise")
PEERS = ("mbt2018", "cheng2020-anchor")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="a 768×512 image (e.g. Kodak's kodim23.png)")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default=",".join(OURS))
    p.add_argument("--compressai-python", help="python of a CompressAI virtualenv (peer side)")
    args = p.parse_args(argv)

    pixels = load_image(args.image).pixels
    peer = {}
    if args.compressai_python:
        side = Path(__file__).with_name("compressai_side.py")
        cmd = [args.compressai_python, str(side), "codec", "--image", args.image]
        cmd += ["--quality", str(args.quality), "--repeats", str(args.repeats)]
        peer = json.loads(
            subprocess.run(
                [*cmd, "--models", *PEERS], check=True, capture_output=True, text=True
            ).stdout
        )
    names = args.models.split(",")
    rows = {name: ours(name, pixels, args.quality, args.repeats) for name in names}
    same_size = {}  # our hyperprior at each context model's (N, M)
    for name in names:
        sizes = models.get_module(name).get_default_sizes(args.quality)
        key = (sizes["N"], sizes["M"])
        if name != "hyperprior" and key not in same_size:
            kwargs = {"N": key[0], "M": key[1]}
            same_size[key] = ours("hyperprior", pixels, args.quality, args.repeats, kwargs)

    h, w = pixels.shape[:2]
    print(
        f"image {args.image} ({w}×{h}), quality {args.quality}, median of {args.repeats}, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}\n"
    )
    print(
        "| model | (N, M) | compress | decompress | first call enc / dec | decode vs target "
        "| decode vs our hyperprior at the same (N, M) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    hyper = rows.get("hyperprior")
    mbt = peer.get("mbt2018")
    for name, r in rows.items():
        sizes = models.get_module(name).get_default_sizes(args.quality)
        key = (sizes["N"], sizes["M"])
        same = same_size.get(key)
        versus = f"{r['decompress_s'] / same['decompress_s']:.2f}×" if same else ""
        note = ""
        if name == "joint" and mbt:
            note = f"{mbt['decompress_s'] / r['decompress_s']:.1f}× faster than mbt2018 (≥ 5×)"
        elif name in ("checkerboard", "channelwise") and hyper:
            note = f"{r['decompress_s'] / hyper['decompress_s']:.2f}× our hyperprior (≤ 2×)"
        print(
            f"| nlq_jax {name} | {key} | {r['compress_s']:.3f} s | {r['decompress_s']:.3f} s | "
            f"{r['first_compress_s']:.1f} / {r['first_decompress_s']:.1f} s | {note} | {versus} |"
        )
    for key, r in same_size.items():
        print(
            f"| nlq_jax hyperprior | {key} | {r['compress_s']:.3f} s | {r['decompress_s']:.3f} s "
            f"| {r['first_compress_s']:.1f} / {r['first_decompress_s']:.1f} s | | |"
        )
    for name, c in peer.items():
        print(
            f"| CompressAI {name} | | {c['compress_s']:.3f} s | {c['decompress_s']:.3f} s | — | | |"
        )


if __name__ == "__main__":
    sys.exit(main())
