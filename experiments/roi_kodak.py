"""Region-of-interest bits measured: PSNR inside and outside a centred mask, with and without it,
at equal file size, over a folder of images.

    python experiments/roi_kodak.py --images $KODAK --checkpoint default \
        --gains 2,4,8 --out docs/results/nlq/roi_default.json
    python experiments/roi_kodak.py --images $KODAK \
        --checkpoint runs/nlq-studies/num_stages=4/export --out docs/results/nlq/roi_rvq.json

The mask is the centred rectangle of half the width and half the height (a quarter of the
pixels). For each image: the plain file, and the file with the mask (`Codec.compress(pixels,
roi=mask, ...)`). A scalar hyperprior model sets its steps so the two files are the same size
(`--gains`: the ratios of the quantization steps outside/inside); an RVQ model of S stages codes 2
inside and 1 outside, S and S − 1, S and 1, so its file is compared with the
plain files of every stage count, interpolated (linearly in log-bytes) at the region file's
size. Reported per setting:
the mean over images of the file sizes and of PSNR inside and outside the mask (dB over the
mask's pixels of the 8-bit decoded image), and the mean differences (region file − plain).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nlq_jax.codec.api import Codec
from nlq_jax.evaluation import results as results_lib


def centred_mask(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    return mask


def masked_psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    return float(10 * np.log10(255.0**2 / max(d[mask].mean(), 1e-12)))


def point(codec: Codec, pixels: np.ndarray, mask: np.ndarray, **options) -> dict:
    data = codec.compress(pixels, **options)
    out = codec.decompress(data)
    return {"bytes": len(data), "inside": masked_psnr(pixels, out, mask),
            "outside": masked_psnr(pixels, out, ~mask)}  # fmt: skip


def at_size(points: list[dict], size: float, key: str) -> float:
    """`key` of the plain files interpolated at `size` bytes (linear in log-bytes)."""
    points = sorted(points, key=lambda p: p["bytes"])
    if len(points) == 1:
        return points[0][key]
    x = np.log([p["bytes"] for p in points])
    return float(np.interp(np.log(size), x, [p[key] for p in points]))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--checkpoint", default="default", help="export directory (or 'default')")
    p.add_argument("--gains", default="2,4,8", help="scalar models: step ratios outside/inside")
    p.add_argument("--max-images", type=int, default=0, help="the first N images (0: all)")
    p.add_argument("--out", required=True, help="the JSON to write")
    args = p.parse_args(argv)

    codec = Codec.load(args.checkpoint)
    paths = results_lib.list_images(args.images)
    paths = paths[: args.max_images] if args.max_images else paths
    images = [(q.stem, results_lib.read_image(q)) for q in paths]
    # A model whose quantizer decodes from a prefix of its stages (RVQ): regions by stages.
    stages = codec.module.prefix_stages(codec.model) if codec.progressive else 0
    rvq = stages > 0
    if rvq:  # (stages inside, stages outside): one more inside, and all against one
        s = stages
        pairs = sorted({(2, 1), (s, s - 1), (s, 1)})
        settings = {f"inside={i},outside={o}": {"num_stages": i, "roi_stages_outside": o}
                    for i, o in pairs}  # fmt: skip
    else:
        settings = {f"gain={g}": {"roi_gain": float(g)} for g in args.gains.split(",")}
    start = time.time()
    per_image = []
    for i, (name, pixels) in enumerate(images):
        mask = centred_mask(*pixels.shape[:2])
        if rvq:
            plain = [point(codec, pixels, mask, num_stages=n)
                     for n in range(1, stages + 1)]  # fmt: skip
        else:
            plain = [point(codec, pixels, mask)]
        row = {"image": name, "plain": plain, "roi": {}}
        for label, options in settings.items():
            r = point(codec, pixels, mask, roi=mask, **options)
            r["plain_inside"] = at_size(plain, r["bytes"], "inside")
            r["plain_outside"] = at_size(plain, r["bytes"], "outside")
            r["plain_bytes"] = plain[-1]["bytes"] if not rvq else r["bytes"]
            row["roi"][label] = r
        per_image.append(row)
        print(f"roi: {i + 1}/{len(images)} {name}", flush=True)
    summary = {}
    for label in settings:
        rs = [row["roi"][label] for row in per_image]
        mean = {k: float(np.mean([r[k] for r in rs])) for k in rs[0]}
        mean["inside_gain"] = mean["inside"] - mean["plain_inside"]
        mean["outside_gain"] = mean["outside"] - mean["plain_outside"]
        mean["inside_higher"] = sum(r["inside"] > r["plain_inside"] for r in rs)
        mean["outside_lower"] = sum(r["outside"] < r["plain_outside"] for r in rs)
        summary[label] = mean
    result = {
        "checkpoint": str(args.checkpoint),
        "model": codec.model_name,
        "images": len(images),
        "mask": "centred rectangle, half width × half height",
        "seconds": time.time() - start,
        "summary": summary,
        "per_image": per_image,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print("| setting | bytes (plain) | bytes (region) | inside (dB) | Δ inside | outside (dB) "
          "| Δ outside | images in↑ / out↓ |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for label, m in summary.items():
        print(f"| {label} | {m['plain_bytes']:.0f} | {m['bytes']:.0f} | {m['inside']:.2f} "
              f"| {m['inside_gain']:+.2f} | {m['outside']:.2f} | {m['outside_gain']:+.2f} "
              f"| {m['inside_higher']}/{m['outside_lower']} of {len(images)} |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
