"""Compress / decompress wall time of one image, nlq_jax beside CompressAI, same machine, same run.

    python benchmarks/codec_speed.py --image $KODAK/kodim23.png \
        --compressai-python /tmp/compressai-venv/bin/python

Both sides use random weights at quality 3 (CompressAI's default (N, M) per model), the same
image padded to a multiple of 64, 2 CPU threads for torch. Ours reports the first call (which
includes jit compilation) apart from the median of `--repeats` warm calls. Prints a Markdown
table; ratios > 1 mean nlq_jax is faster.

`--same-weights` runs our side on CompressAI's own weights: the peer saves each model's state
dict and ours imports it (`nlq_jax.compat.compressai`, as `nlq import compressai` does), so
both code the same image with the same network; the table adds both file sizes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from nlq_jax import models
from nlq_jax.codec.api import Codec
from nlq_jax.codec.image_io import load_image

PEERS = {
    "factorized": "bmshj2018-factorized",
    "hyperprior": "bmshj2018-hyperprior",
    "mean_scale": "mbt2018-mean",
}


def ours(
    name: str, pixels: np.ndarray, quality: int, repeats: int, kwargs: dict | None = None
) -> dict:
    """Times model `name` with random weights at `quality`'s sizes (or `kwargs`)."""
    module = models.get_module(name)
    kwargs = module.get_default_sizes(quality) if kwargs is None else kwargs
    model = module.Model(**kwargs)
    x = np.zeros((1, model.stride, model.stride, 3), np.float32)
    params = model.init(
        {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)}, x, training=True
    )["params"]
    t0 = time.perf_counter()
    codec = Codec(name, kwargs, params)
    return time_codec(codec, pixels, repeats, tables_s=time.perf_counter() - t0)


def imported(name: str, path: Path, pixels: np.ndarray, repeats: int) -> dict:
    """Times model `name` with the CompressAI weights saved at `path`."""
    from nlq_jax.compat.compressai import convert_state_dict
    from nlq_jax.compat.torch_checkpoint import load_state_dict

    model_name, kwargs, params = convert_state_dict(load_state_dict(path), name)
    t0 = time.perf_counter()
    codec = Codec(model_name, kwargs, params)
    return time_codec(codec, pixels, repeats, tables_s=time.perf_counter() - t0)


def time_codec(codec: Codec, pixels: np.ndarray, repeats: int, tables_s: float) -> dict:
    """First (compiling) and median warm compress/decompress times of `codec` on `pixels`."""
    t0 = time.perf_counter()
    data = codec.compress(pixels)
    first_enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    codec.decompress(data)
    first_dec = time.perf_counter() - t0
    enc, dec = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data = codec.compress(pixels)
        t1 = time.perf_counter()
        codec.decompress(data)
        enc.append(t1 - t0)
        dec.append(time.perf_counter() - t1)
    return {
        "compress_s": statistics.median(enc),
        "decompress_s": statistics.median(dec),
        "first_compress_s": first_enc,
        "first_decompress_s": first_dec,
        "tables_s": tables_s,
        "bytes": len(data),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", required=True, help="a 768×512 image (e.g. Kodak's kodim23.png)")
    p.add_argument("--models", default="factorized,hyperprior,mean_scale")
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--compressai-python", help="python of a CompressAI virtualenv (peer side)")
    p.add_argument(
        "--same-weights",
        action="store_true",
        help="run ours on CompressAI's weights (imported), not on random weights of its own",
    )
    args = p.parse_args(argv)
    if args.same_weights and not args.compressai_python:
        p.error("--same-weights needs --compressai-python")
    save_dir = Path(tempfile.mkdtemp(prefix="nlq-same-weights-"))

    pixels = load_image(args.image).pixels
    names = args.models.split(",")
    peer = {}
    if args.compressai_python:
        side = Path(__file__).with_name("compressai_side.py")
        cmd = [
            args.compressai_python,
            str(side),
            "codec",
            "--image",
            args.image,
            "--quality",
            str(args.quality),
            "--repeats",
            str(args.repeats),
            "--models",
            *[PEERS[n] for n in names],
            *(["--save-dir", str(save_dir)] if args.same_weights else []),
        ]
        peer = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    h, w = pixels.shape[:2]
    print(
        f"image {args.image} ({w}×{h}), quality {args.quality}, median of {args.repeats}, "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, "
        + ("CompressAI's weights on both sides\n" if args.same_weights else "random weights\n")
    )
    print(
        "| model | ours compress | ours decompress | first call (compile) enc / dec | "
        "CompressAI compress | CompressAI decompress | speed-up enc / dec | file bytes ours / "
        "CompressAI's strings |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in names:
        if args.same_weights:
            r = imported(name, save_dir / f"{PEERS[name]}.pth.tar", pixels, args.repeats)
        else:
            r = ours(name, pixels, args.quality, args.repeats)
        c = peer.get(PEERS[name])
        row = [
            f"{name} ({PEERS[name]})",
            f"{r['compress_s']:.3f} s",
            f"{r['decompress_s']:.3f} s",
            f"{r['first_compress_s']:.1f} / {r['first_decompress_s']:.1f} s",
        ]
        if c:
            row += [
                f"{c['compress_s']:.3f} s",
                f"{c['decompress_s']:.3f} s",
                f"{c['compress_s'] / r['compress_s']:.2f}× / "
                f"{c['decompress_s'] / r['decompress_s']:.2f}×",
                f"{r['bytes']} / {c['bytes']}",
            ]
        else:
            row += ["—", "—", "—", f"{r['bytes']} / —"]
        print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
