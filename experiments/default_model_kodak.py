"""The shipped model on Kodak, with real files, beside JPEG, WebP, HEVC-intra and CompressAI.

    python experiments/default_model_kodak.py --data $KODAK \
        --baselines docs/results/kodak --out docs/results/default_model

Evaluates `Codec.load("default")` (or `--checkpoint DIR`) on every image of `--data` (each
encoded to a complete .nlq file and decoded; bpp from the file size, header included). The
classical codecs' PSNR at our rate is measured, not read off their coarse sweeps: each is run at
every integer quality between the two sweep points around our rate and interpolated between
the two nearest in log-rate (`nlq_jax.evaluation.report.psnr_at_rate`, the quickstart report's
rule); CompressAI's published curves are interpolated in log-rate. Writes `results.json`
(CompressAI's format), `rd.png`, `table.md` and `summary.json` into `--out`, and prints the
table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from nlq_jax.baselines.codecs import get_codec
from nlq_jax.codec.api import Codec
from nlq_jax.evaluation import anchors
from nlq_jax.evaluation import plot as plot_lib
from nlq_jax.evaluation import results as results_lib
from nlq_jax.evaluation.report import _curve, evaluate_arrays, psnr_at_rate

BASELINES = ("jpeg", "webp", "hevc")
ANCHORS = {
    "bmshj2018-hyperprior (CompressAI, published)": "compressai-bmshj2018-hyperprior_mse_cpu",
    "mbt2018-mean (CompressAI, published)": "compressai-mbt2018-mean_mse_cpu",
}


def log_interp(curve: plot_lib.Curve, bpp: float) -> float | None:
    """The curve's quality at `bpp`, linear in log-rate between its points; None outside."""
    if not curve.bpp[0] <= bpp <= curve.bpp[-1]:
        return None
    return float(np.interp(np.log(bpp), np.log(curve.bpp), curve.quality))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of evaluation images (Kodak)")
    p.add_argument("--checkpoint", default="default", help="export directory or shipped name")
    p.add_argument("--baselines", required=True, help="folder of {jpeg,webp,hevc}.json sweeps")
    p.add_argument("--out", required=True, help="output folder")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    paths = results_lib.list_images(args.data)
    images = [(path.stem, results_lib.read_image(path)) for path in paths]
    codec = Codec.load(args.checkpoint)
    t0 = time.perf_counter()
    ours = evaluate_arrays(codec, images, "nlq_jax " + codec.name)
    wall = time.perf_counter() - t0
    results_lib.write_json(out / "results.json", ours)
    bpp, psnr = ours["results"]["bpp"][0], ours["results"]["psnr-rgb"][0]
    print(f"{codec.name} on {len(images)} images: {bpp:.4f} bpp, {psnr:.2f} dB ({wall:.0f} s)")

    rows = [("nlq_jax " + codec.name + " (ours)", bpp, psnr, "measured, real files")]
    curves = [_curve(ours)]
    summary = {"ours": {"bpp": bpp, "psnr": psnr, "images": len(images)}, "at_our_rate": {}}
    for key in BASELINES:
        sweep = results_lib.read_results(Path(args.baselines) / f"{key}.json")
        curves.append(_curve(sweep))
        at = psnr_at_rate(get_codec(key), images, sweep, bpp)
        summary["at_our_rate"][key] = at
        if at is None:
            r = sweep["results"]
            i = int(np.argmin(r["bpp"]))
            lowest = f"{r['bpp'][i]:.3f} bpp at {r['psnr-rgb'][i]:.2f} dB"
            note = f"cannot reach our rate: its lowest is {lowest}"
        else:
            note = "dense sweep around our rate, interpolated in log-rate"
        rows.append((sweep["name"], bpp, at, note))
    for label, name in ANCHORS.items():
        curve = plot_lib.load_curve(anchors.path(name), label=label)
        curve.measured = False
        curves.append(curve)
        at = log_interp(curve, bpp)
        summary["at_our_rate"][label] = at
        rows.append((label, bpp, at, "published curve, interpolated in log-rate"))

    lines = [
        f"Kodak, {len(images)} images, real files (header included); PSNR over RGB.",
        "",
        "| codec | bpp | PSNR (dB) | ours − it (dB) | how |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, b, q, note in rows:
        diff = "" if q is None or name.endswith("(ours)") else f"{psnr - q:+.2f}"
        shown = "n/a" if q is None else f"{q:.2f}"
        lines.append(f"| {name} | {b:.4f} | {shown} | {diff} | {note} |")
    table = "\n".join(lines) + "\n"
    (out / "table.md").write_text(table)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_lib.plot_rd(
        curves,
        out / "rd.png",
        title=f"Kodak ({len(images)} images): the shipped model, real file sizes",
        xlim=(0.0, 1.0),
    )
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
