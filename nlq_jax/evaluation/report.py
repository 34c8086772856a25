"""The end-of-training report: our point beside JPEG and WebP on the same held-out images.

Writes into the workdir:
- `results.json`: our point (real bitstreams) in CompressAI's results format;
- `baselines/<codec>.json`: each baseline's quality sweep on the same images;
- `rd.png`: PSNR against bpp, our point and the baselines' curves;
- `reconstruction.png`: original | ours | each baseline at (about) our rate, with zoomed crops;
- `report.md`: the numbers, including each baseline's PSNR interpolated at our rate.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nlq_jax.evaluation import grid as grid_lib
from nlq_jax.evaluation import plot as plot_lib
from nlq_jax.evaluation import results as results_lib


def evaluate_arrays(codec, images: list[tuple[str, np.ndarray]], name: str) -> dict:
    """Real-bitstream measurements of `codec` on in-memory images (one results point)."""
    per_image = [results_lib.measure(px, codec.compress, codec.decompress)[0] for _, px in images]
    return results_lib.make_results(
        name, f"nlq_jax: {codec.name}", [{"codec": codec.name}], [n for n, _ in images], [per_image]
    )


def baseline_sweep(baseline, images: list[tuple[str, np.ndarray]]) -> dict:
    """A baseline's default quality sweep on in-memory images (results format)."""
    per_point = []
    for q in baseline.qualities:
        per_point.append(
            [
                results_lib.measure(px, lambda x, q=q: baseline.encode(x, q), baseline.decode)[0]
                for _, px in images
            ]
        )
    return results_lib.make_results(
        baseline.name,
        baseline.description(),
        [{"quality": q} for q in baseline.qualities],
        [n for n, _ in images],
        per_point,
    )


def _curve(results: dict, measured: bool = True) -> plot_lib.Curve:
    r = results["results"]
    order = np.argsort(r["bpp"])
    return plot_lib.Curve(
        label=results["name"],
        name=results["name"],
        description=results["description"],
        path="",
        bpp=np.asarray(r["bpp"], np.float64)[order],
        quality=np.asarray(r["psnr-rgb"], np.float64)[order],
        measured=measured,
    )


def psnr_at_rate(results: dict, bpp: float) -> float | None:
    """A curve's PSNR at `bpp`, linear in log-rate; None outside its range."""
    r = results["results"]
    x, y = np.log(np.asarray(r["bpp"])), np.asarray(r["psnr-rgb"], np.float64)
    order = np.argsort(x)
    x, y = x[order], y[order]
    if not x[0] <= np.log(bpp) <= x[-1]:
        return None
    return float(np.interp(np.log(bpp), x, y))


def write_report(workdir: Path, codec, images, result: dict, config) -> dict:
    """Writes the report files (see the module docstring); returns the summary it wrote."""
    from nlq_jax.baselines.codecs import parse_codecs

    workdir = Path(workdir)
    ours = evaluate_arrays(codec, images, "nlq_jax " + codec.name)
    results_lib.write_json(workdir / "results.json", ours)
    bpp, psnr = ours["results"]["bpp"][0], ours["results"]["psnr-rgb"][0]
    baselines = parse_codecs(config.report_baselines)
    sweeps = {}
    for b in baselines:
        sweeps[b.key] = baseline_sweep(b, images)
        results_lib.write_json(workdir / "baselines" / f"{b.key}.json", sweeps[b.key])

    curves = [_curve(ours)] + [_curve(s) for s in sweeps.values()]
    plot_lib.plot_rd(
        curves,
        workdir / "rd.png",
        title=f"{len(images)} held-out images, real file sizes",
        xlim=(0.0, max(1.5, 2.0 * bpp)),
    )

    # One image: original | ours | each baseline at the quality closest to our rate.
    name, pixels = images[0]
    recs = [grid_lib.reconstruct(pixels, codec.compress, codec.decompress, "nlq_jax")]
    recs += [grid_lib.baseline_at_rate(b, pixels, recs[0].bpp) for b in baselines]
    rows = [("nlq_jax", recs[:1])] + [(b.name, [r]) for b, r in zip(baselines, recs[1:])]
    grid_lib.save_grid(
        pixels,
        rows,
        grid_lib.choose_crop(pixels, min(128, *pixels.shape[:2])),
        workdir / "reconstruction.png",
        title=f"{name}: nlq_jax vs baselines at about the same rate",
    )

    summary = {"ours": {"bpp": bpp, "psnr": psnr}, "baselines_at_our_rate": {}}
    lines = [
        f"# Report: {codec.name}",
        "",
        f"Held-out images: {', '.join(n for n, _ in images)} (real bitstreams, header included).",
        "",
        "| codec | bpp | PSNR (dB) |",
        "| --- | --- | --- |",
        f"| nlq_jax {codec.name} | {bpp:.4f} | {psnr:.2f} |",
    ]
    for key, s in sweeps.items():
        at = psnr_at_rate(s, bpp)
        summary["baselines_at_our_rate"][key] = at
        shown = f"{at:.2f}" if at is not None else "outside its range"
        lines.append(f"| {s['name']} at {bpp:.4f} bpp (interpolated) | {bpp:.4f} | {shown} |")
    (workdir / "report.md").write_text("\n".join(lines) + "\n")
    (workdir / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
