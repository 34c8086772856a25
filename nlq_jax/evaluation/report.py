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


def baseline_sweep(baseline, images: list[tuple[str, np.ndarray]], qualities=None) -> dict:
    """A baseline's quality sweep (default: its standard one) on in-memory images."""
    qualities = list(baseline.qualities if qualities is None else qualities)
    per_point = []
    for q in qualities:
        per_point.append(
            [
                results_lib.measure(px, lambda x, q=q: baseline.encode(x, q), baseline.decode)[0]
                for _, px in images
            ]
        )
    return results_lib.make_results(
        baseline.name,
        baseline.description(),
        [{"quality": q} for q in qualities],
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


def psnr_at_rate(baseline, images, sweep: dict, bpp: float) -> float | None:
    """The baseline's PSNR at `bpp`: measured at every integer quality between the two sweep
    points around `bpp`, then interpolated between the two nearest (in log-rate). Interpolating
    across the coarse sweep would cut under the concave RD curve and flatter us. None when
    `bpp` is outside the sweep's range."""
    r = sweep["results"]
    points = sorted(zip(r["bpp"], (p["quality"] for p in sweep["points"]), strict=True))
    below = [q for b, q in points if b <= bpp]
    above = [q for b, q in points if b >= bpp]
    if not below or not above:
        return None
    lo, hi = sorted((below[-1], above[0]))
    dense = baseline_sweep(baseline, images, range(lo, hi + 1))["results"]
    x, y = np.log(np.asarray(dense["bpp"])), np.asarray(dense["psnr-rgb"], np.float64)
    order = np.argsort(x)
    return float(np.interp(np.log(bpp), x[order], y[order]))


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
    for b in baselines:
        key, s = b.key, sweeps[b.key]
        at = psnr_at_rate(b, images, s, bpp)
        summary["baselines_at_our_rate"][key] = at
        if at is None:
            r = s["results"]
            i = int(np.argmin(r["bpp"]))
            shown = f"n/a: its lowest point is {r['bpp'][i]:.3f} bpp, {r['psnr-rgb'][i]:.2f} dB"
        else:
            shown = f"{at:.2f}"
        lines.append(f"| {s['name']} at the same rate (dense sweep) | {bpp:.4f} | {shown} |")
    (workdir / "report.md").write_text("\n".join(lines) + "\n")
    (workdir / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# The end-of-run report writers by the name `config.report_writer` gives (the trainer calls the
# one chosen when `config.report` is set): `write(workdir, codec, images, result, config)` →
# the summary stored in the run's metrics.json.
WRITERS = {"baselines": write_report}


def get_writer(name: str):
    """The report writer `name`; a one-line error names the known ones."""
    if name not in WRITERS:
        raise ValueError(f"unknown report writer {name!r}; use one of {', '.join(WRITERS)}")
    return WRITERS[name]
