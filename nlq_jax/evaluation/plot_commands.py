"""`nlq plot`: RD plots, BD-rate tables and reconstruction grids.

    nlq plot RESULTS.json|PUBLISHED ... --out rd.png [--metric psnr|ms-ssim]
             [--anchor NAME|PATH ...] [--table bd.md]
    nlq plot --grid IMAGE --codec jpeg,webp --bpp 0.25,0.5,1 [--checkpoint DIR ...] --out grid.png
    nlq plot --list-anchors

Results files are ours (`nlq eval`, `nlq baselines`) or published ones in CompressAI's format,
given by path; the published Kodak curves that ship with nlq_jax are given by name
(`compressai-bmshj2018-hyperprior_mse_cpu`, `vtm`, ...; `--list-anchors` lists them). An anchor
is a curve's label or name, or a results file or published curve (which is then also plotted);
the table gives every other curve's BD-rate and BD-PSNR against each anchor. A warning is
printed when the curves are means over different images.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nlq_jax.errors import NLQError
from nlq_jax.evaluation import plot as plot_lib


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as e:
        raise NLQError(f"{what}: expected comma-separated numbers, got {text!r}") from e


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of `nlq plot`."""
    del command
    parser.add_argument(
        "results",
        nargs="*",
        metavar="RESULTS.json|PUBLISHED",
        help="results files, or names of the published curves that ship with nlq_jax",
    )
    parser.add_argument("--out", help="image to write (rd.png, grid.png, .pdf)")
    parser.add_argument(
        "--list-anchors", action="store_true", help="list the published curves and exit"
    )
    parser.add_argument("--metric", choices=sorted(plot_lib.METRICS), default="psnr")
    parser.add_argument(
        "--anchor",
        action="append",
        metavar="NAME|PATH",
        help="BD-rate anchor: a curve's label or name, a results file or a published curve "
        "(repeatable)",
    )
    parser.add_argument("--table", help="write the BD table here (Markdown); default: print it")
    parser.add_argument(
        "--label", action="append", help="legend label per results file, in order (repeatable)"
    )
    parser.add_argument("--title", default=None, help="plot title")
    parser.add_argument("--xlim", type=float, nargs=2, metavar=("LO", "HI"), help="bpp range")
    parser.add_argument("--ylim", type=float, nargs=2, metavar=("LO", "HI"), help="quality range")
    grid = parser.add_argument_group("reconstruction grid")
    grid.add_argument("--grid", metavar="IMAGE", help="draw a reconstruction grid of this image")
    grid.add_argument("--codec", default="jpeg,webp", help="baselines, one row each (grid)")
    grid.add_argument("--bpp", default="0.25,0.5,1.0", help="target rates, one column each (grid)")
    grid.add_argument(
        "--checkpoint", nargs="+", default=(), metavar="DIR", help="checkpoints: one more row"
    )
    grid.add_argument("--name", default=None, help="label of the checkpoints' row")
    grid.add_argument("--crop", metavar="TOP,LEFT,SIZE", help="zoomed square (default: textured)")


def _run_grid(args: argparse.Namespace) -> int:
    from nlq_jax.baselines.codecs import parse_codecs
    from nlq_jax.evaluation import grid

    if args.results:
        raise NLQError("--grid draws one image; do not give results files with it")
    baselines = parse_codecs(args.codec) if args.codec.strip() else []
    codecs = []
    if args.checkpoint:
        from nlq_jax.codec.api import Codec

        codecs = [Codec.load(c) for c in args.checkpoint]
    if not baselines and not codecs:
        raise NLQError("--grid needs --codec or --checkpoint")
    crop = None
    if args.crop:
        values = _floats(args.crop, "--crop")
        if len(values) != 3 or any(v != int(v) for v in values):
            raise NLQError(f"--crop takes TOP,LEFT,SIZE in pixels, got {args.crop!r}")
        crop = tuple(int(v) for v in values)
    rows = grid.make_grid(
        args.grid,
        args.out,
        _floats(args.bpp, "--bpp"),
        baselines=baselines,
        checkpoint_codecs=codecs,
        checkpoint_label=args.name,
        crop=crop,
    )
    for label, recs in rows:
        cells = ", ".join(f"{r.setting} {r.bpp:.3f} bpp {r.psnr:.2f} dB" for r in recs)
        print(f"{label}: {cells}")
    print(f"grid -> {args.out}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Draws the plot (and table) or the grid, or lists the published curves."""
    from nlq_jax.evaluation import anchors as published

    if args.list_anchors:
        for name in published.names():
            print(name)
        return 0
    if not args.out:
        raise NLQError("--out is required: the image to write (rd.png, grid.png, .pdf)")
    if args.grid:
        return _run_grid(args)
    if not args.results:
        raise NLQError("give results files to plot (or --grid IMAGE)")
    if args.table and not args.anchor:
        raise NLQError("--table needs at least one --anchor")
    paths = [published.resolve(ref) for ref in args.results]
    curves = plot_lib.load_curves(paths, args.metric, args.label)
    anchors = []
    for ref in args.anchor or []:
        curve = plot_lib.find_curve(curves, ref)
        if curve is None:
            if not os.path.isfile(ref) and ref not in published.names():
                labels = ", ".join(repr(c.label) for c in curves)
                raise NLQError(
                    f"anchor {ref!r} is neither a curve ({labels}), a results file nor a "
                    "published curve (`nlq plot --list-anchors`)"
                )
            curve = plot_lib.load_curve(published.resolve(ref), args.metric)
            curves.append(curve)
            plot_lib.disambiguate(curves)
        anchors.append(curve)
    warning = plot_lib.image_set_warning(curves)
    if warning:
        print(warning, file=sys.stderr)
    plot_lib.plot_rd(
        curves,
        args.out,
        args.metric,
        title=args.title,
        xlim=tuple(args.xlim) if args.xlim else None,
        ylim=tuple(args.ylim) if args.ylim else None,
    )
    print(f"plot -> {args.out}")
    if anchors:
        table = plot_lib.bd_table(curves, anchors, args.metric)
        if args.table:
            try:
                Path(args.table).parent.mkdir(parents=True, exist_ok=True)
                Path(args.table).write_text(table, encoding="utf-8")
            except OSError as e:
                raise NLQError(f"cannot write {args.table!r}: {e.strerror or e}") from e
            print(f"table -> {args.table}")
        else:
            print(table)
    return 0
