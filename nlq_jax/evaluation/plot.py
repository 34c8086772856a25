"""Rate-distortion plots and Bjøntegaard tables from results files in CompressAI's format.

Our results (`nlq eval`, `nlq baselines`) and published ones (CompressAI's
`results/image/kodak/*.json`) are read alike, so a published curve is added to a plot by giving
its path. MS-SSIM is shown and compared in dB, −10·log10(1 − MS-SSIM), as in Ballé et al. 2018
("Variational image compression with a scale hyperprior", Fig. 7), where differences near 1
are visible.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nlq_jax.errors import NLQError
from nlq_jax.evaluation import anchors
from nlq_jax.evaluation import results as results_lib
from nlq_jax.metrics import bd

METRICS = {
    "psnr": ("psnr-rgb", "PSNR-RGB (dB)", "BD-PSNR (dB)"),
    "ms-ssim": ("ms-ssim-rgb", "MS-SSIM-RGB (dB) = −10·log10(1 − MS-SSIM)", "BD-MS-SSIM (dB)"),
}


@dataclasses.dataclass
class Curve:
    """One rate-distortion curve: points sorted by rate.

    Attributes:
      label: legend label (the file's name, made unique among the curves plotted together).
      name: the "name" in the file.
      description: the "description" in the file.
      path: where it was read from.
      bpp: rates of the points, increasing.
      quality: the metric at each point (dB).
      measured: True for our own results (they carry per-image values), False for published ones.
      images: the images the points are means over (file stems), None where unknown.
    """

    label: str
    name: str
    description: str
    path: str
    bpp: np.ndarray
    quality: np.ndarray
    measured: bool
    images: tuple[str, ...] | None = None


def to_db(metric: str, values: Sequence[float]) -> np.ndarray:
    """Metric values in dB: PSNR as is, MS-SSIM as −10·log10(1 − MS-SSIM)."""
    v = np.asarray(values, np.float64)
    if metric == "ms-ssim":
        with np.errstate(divide="ignore"):
            return -10.0 * np.log10(1.0 - v)
    return v


def load_curve(path: str | os.PathLike, metric: str = "psnr", label: str | None = None) -> Curve:
    """Reads one results file as a curve of `metric` ("psnr" or "ms-ssim") against bpp.

    Points without the metric (null) or with an infinite value (lossless) are dropped.

    Raises:
      NLQError: not a results file, or it has no usable point for the metric.
    """
    if metric not in METRICS:
        raise NLQError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
    obj = results_lib.read_results(path)
    key = METRICS[metric][0]
    rates = obj["results"]["bpp"]
    values = obj["results"].get(key)
    if not isinstance(values, list) or len(values) != len(rates):
        raise NLQError(f"{os.fspath(path)!r} has no {key!r} list matching its bpp list")
    pairs = []
    for r, v in zip(rates, values, strict=True):
        if r is None or v is None:
            continue
        r, v = float(r), float(to_db(metric, [v])[0])
        if r > 0 and math.isfinite(r) and math.isfinite(v):
            pairs.append((r, v))
    if not pairs:
        raise NLQError(f"{os.fspath(path)!r} has no point with both bpp and {key}")
    pairs.sort()
    return Curve(
        label=label or str(obj["name"]),
        name=str(obj["name"]),
        description=str(obj.get("description", "")),
        path=os.fspath(path),
        bpp=np.array([p[0] for p in pairs]),
        quality=np.array([p[1] for p in pairs]),
        measured="per_image" in obj,
        images=_images(obj, path),
    )


def _images(obj: dict, path: str | os.PathLike) -> tuple[str, ...] | None:
    per_image = obj.get("per_image")
    if isinstance(per_image, dict) and per_image:
        return tuple(sorted(Path(str(name)).stem for name in per_image))
    return anchors.images_of(path)


def image_set_warning(curves: Sequence[Curve]) -> str | None:
    """A one-line warning when the curves are means over different images, else None.

    BD-rates and visual gaps between curves measured on different images (3 photographs
    against Kodak's 24) compare content as much as codecs. Curves whose images are unknown
    (published files other than the shipped Kodak ones) are left out of the check.
    """
    known = [c for c in curves if c.images is not None]
    if len({c.images for c in known}) <= 1:
        return None
    parts = [f"{c.label} ({len(c.images)} images)" for c in known]
    return "warning: the curves are means over different image sets: " + ", ".join(parts)


def load_curves(
    paths: Sequence[str | os.PathLike],
    metric: str = "psnr",
    labels: Sequence[str] | None = None,
) -> list[Curve]:
    """Reads several results files; equal names get their folder's name appended.

    Args:
      paths: results files.
      metric: "psnr" or "ms-ssim".
      labels: explicit legend labels, one per path (default: the files' names).
    """
    if labels and len(labels) != len(paths):
        raise NLQError(f"{len(labels)} labels for {len(paths)} results files")
    curves = [load_curve(p, metric, labels[i] if labels else None) for i, p in enumerate(paths)]
    if not labels:
        disambiguate(curves)
    return curves


def disambiguate(curves: list[Curve]) -> None:
    """Makes labels unique: equal ones get the folder (then the file stem) appended."""
    for attempt in ("parent", "stem"):
        counts: dict[str, int] = {}
        for c in curves:
            counts[c.label] = counts.get(c.label, 0) + 1
        if all(n == 1 for n in counts.values()):
            return
        for c in curves:
            if counts[c.label] > 1:
                p = Path(c.path)
                c.label = f"{c.label} [{p.parent.name if attempt == 'parent' else p.stem}]"


def find_curve(curves: Sequence[Curve], ref: str) -> Curve | None:
    """The curve whose label, name (if unique) or path is `ref`."""
    for c in curves:
        if c.label == ref:
            return c
    by_name = [c for c in curves if c.name.lower() == ref.lower() or c.label.lower() == ref.lower()]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise NLQError(
            f"anchor {ref!r} is ambiguous; use one of: " + ", ".join(repr(c.label) for c in by_name)
        )
    if os.path.exists(ref):
        target = os.path.realpath(ref)
        for c in curves:
            if os.path.realpath(c.path) == target:
                return c
    return None


def plot_rd(
    curves: Sequence[Curve],
    out: str | os.PathLike,
    metric: str = "psnr",
    title: str | None = None,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
) -> None:
    """Draws quality against bpp, one line per curve, and saves it (format from the suffix).

    Our measured curves are solid with filled markers; published curves are dashed with hollow
    markers, so the eye can tell a reproduction from its reference.
    """
    import matplotlib

    fig = new_figure(figsize=(8.5, 6.0), dpi=150)
    ax = fig.subplots()
    markers = "osD^vP*Xhp<>"
    cmap = matplotlib.colormaps["tab10" if len(curves) <= 10 else "tab20"]
    for i, c in enumerate(curves):
        color = cmap(i % cmap.N)
        ax.plot(
            c.bpp,
            c.quality,
            linestyle="-" if c.measured else "--",
            marker=markers[i % len(markers)],
            markersize=4,
            markerfacecolor=color if c.measured else "none",
            color=color,
            linewidth=1.6 if c.measured else 1.2,
            label=c.label,
        )
    ax.set_xlabel("bits per pixel (bpp, whole file)")
    ax.set_ylabel(METRICS[metric][1])
    if title:
        ax.set_title(title)
    if xlim:
        ax.set_xlim(*xlim)
    if ylim:
        ax.set_ylim(*ylim)
    elif xlim:
        _fit_ylim(ax, curves, xlim)
    ax.grid(True, which="major", alpha=0.35)
    ax.minorticks_on()
    ax.grid(True, which="minor", alpha=0.12)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    save_figure(fig, out, "plot")


def new_figure(**kwargs):
    """A matplotlib Figure outside pyplot: drawing a file never switches the backend, so
    inline plots in a notebook keep working after nlq_jax draws one (kwargs: Figure's)."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, out: str | os.PathLike, what: str) -> None:
    """Lays out and writes `fig` (format from the suffix, parent folders made).

    Raises:
      NLQError: the file cannot be written (one line, naming `what` and the path).
    """
    fig.tight_layout()
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    except OSError as e:
        raise NLQError(f"cannot write {what} {os.fspath(out)!r}: {e.strerror or e}") from e


def _fit_ylim(ax, curves: Sequence[Curve], xlim: tuple[float, float]) -> None:
    inside = np.concatenate(
        [c.quality[(c.bpp >= xlim[0]) & (c.bpp <= xlim[1])] for c in curves] + [np.zeros(0)]
    )
    if inside.size:
        lo, hi = float(inside.min()), float(inside.max())
        pad = 0.04 * (hi - lo or 1.0)
        ax.set_ylim(lo - pad, hi + pad)


def _fmt(x: float | None, digits: int, signed: bool = True) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def bd_rows(curves: Sequence[Curve], anchor: Curve) -> list[dict]:
    """BD-rate (pchip and cubic) and BD-quality of each curve against `anchor`.

    A value is None where it cannot be computed (no overlap, too few points for the cubic fit).
    """
    rows = []
    for c in curves:
        row: dict = {"label": c.label, "points": len(c.bpp)}
        for key, fn, method in (
            ("bd_rate_pchip", bd.bd_rate, "pchip"),
            ("bd_rate_cubic", bd.bd_rate, "cubic"),
            ("bd_quality", bd.bd_psnr, "pchip"),
        ):
            try:
                row[key] = fn(anchor.bpp, anchor.quality, c.bpp, c.quality, method=method)
            except ValueError:
                row[key] = None
        lo = max(anchor.quality.min(), c.quality.min())
        hi = min(anchor.quality.max(), c.quality.max())
        row["overlap"] = (lo, hi) if hi > lo else None
        rows.append(row)
    return rows


def bd_table(
    curves: Sequence[Curve],
    anchors: Sequence[Curve],
    metric: str = "psnr",
) -> str:
    """A Markdown section per anchor: every other curve's Bjøntegaard deltas against it."""
    unit = "dB"
    lines = []
    for anchor in anchors:
        lines += [
            f"### Anchor: {anchor.label}",
            "",
            (
                f"BD-rate: rate change at equal {METRICS[metric][0]} (negative = fewer bits "
                "than the anchor), over the quality range both curves cover; piecewise cubic "
                "(JVET CTC) and cubic fit (VCEG-M33). "
                f"{METRICS[metric][2]}: quality gain at equal rate (piecewise cubic)."
            ),
            "",
            (
                f"| curve | points | BD-rate pchip | BD-rate cubic | {METRICS[metric][2]} "
                f"| common range ({unit}) |"
            ),
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in bd_rows([c for c in curves if c is not anchor], anchor):
            rate_p = _fmt(row["bd_rate_pchip"], 1)
            rate_c = _fmt(row["bd_rate_cubic"], 1)
            overlap = row["overlap"]
            lines.append(
                f"| {row['label']} | {row['points']} "
                f"| {rate_p if rate_p == 'n/a' else rate_p + ' %'} "
                f"| {rate_c if rate_c == 'n/a' else rate_c + ' %'} "
                f"| {_fmt(row['bd_quality'], 2)} "
                f"| {'none' if overlap is None else f'{overlap[0]:.1f}–{overlap[1]:.1f}'} |"
            )
        lines.append("")
    return "\n".join(lines)
