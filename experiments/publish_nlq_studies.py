"""`nlq_studies.py publish`: measure the studies' exports on the evaluation images and write
the tables, plots and summary (see nlq_studies.py's docstring)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from nlq_studies import STUDIES, run_specs

from nlq_jax.codec.api import Codec
from nlq_jax.evaluation import plot as plot_lib
from nlq_jax.evaluation import results as results_lib

KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb")


def measure_codec(codec: Codec, images: list[tuple[str, np.ndarray]], **options) -> dict:
    """Mean bpp (the file's bytes), PSNR and MS-SSIM over the images, files made with
    `options` (e.g. num_stages)."""

    def encode(pixels):
        return codec.compress(pixels, **options)

    per_image = [results_lib.measure(p, encode, codec.decompress)[0] for _, p in images]
    mean = results_lib.mean_over_images(per_image)
    # MS-SSIM is None for images under 161 pixels on a side.
    return {k: None if mean[k] is None else float(mean[k]) for k in KEYS}


def code_use(codec: Codec, images: list[tuple[str, np.ndarray]]) -> list[float]:
    """Per index group (RVQ stage, or VQ-VAE-2 level): the fraction of its codes that the
    images' eval-mode indices use at least once."""
    from nlq_jax.codec.api import pad_to_multiple, to_model_input

    used: list[set] = []
    sizes: list[int] = []
    for _, pixels in images:
        x = pad_to_multiple(to_model_input(pixels), codec.model.stride)
        out = codec.runner.call("indices", x)
        groups = out if isinstance(out, (list, tuple)) else [out]
        flat = [g[..., i] for g in groups for i in range(g.shape[-1])]
        if not used:
            used = [set() for _ in flat]
            sizes = _group_sizes(codec, len(flat))
        for s, g in zip(used, flat):
            s.update(np.unique(g).tolist())
    return [len(s) / k for s, k in zip(used, sizes)]


def _group_sizes(codec: Codec, groups: int) -> list[int]:
    from nlq_jax.models import nlq

    # nlq: one quantizer; vqvae2: one of the same options per level.
    sizes = list(nlq.build_quantizer(codec.model).num_codes)
    return sizes * (groups // len(sizes))


def evaluated_on(workdir: Path, folder: str) -> bool:
    """Whether the run's own held-out evaluation was on every image of `folder`."""
    config = json.loads((workdir / "config.json").read_text()).get("eval", {})
    kind, _, path = config.get("source", "").partition(":")
    same = kind == "folder" and Path(path).resolve() == Path(folder).resolve()
    return same and not config.get("max_images") and not config.get("names")


def run_record(
    out: Path, name: str, config: str, overrides: dict, images, folder: str, prefixes: bool
):
    """One finished run's figures, measured on `images` (kept in the run's publish.json, so a
    second publish measures only what changed); None if it has not finished."""
    workdir = out / name
    metrics = workdir / "metrics.json"
    if not metrics.exists():
        return None
    cache = workdir / "publish.json"
    key = {
        "images": [n for n, _ in images],
        "folder": str(Path(folder).resolve()),
        "prefixes": prefixes,
        "export": (workdir / "export" / "model.json").stat().st_mtime,
    }
    if cache.exists() and json.loads(cache.read_text()).get("key") == key:
        print(f"publish: {name}: measured before, not again", flush=True)
        return json.loads(cache.read_text())["record"]
    start = time.time()
    codec = Codec.load(workdir / "export")
    result = json.loads(metrics.read_text())
    # The run's own held-out evaluation (real files, the same means) when it was on these
    # images; else measured now.
    evaluated = result.get("eval") or {}
    same = evaluated_on(workdir, folder) and all(k in evaluated for k in KEYS)
    point = {k: evaluated[k] for k in KEYS} if same else measure_codec(codec, images)
    record = {
        "run": name,
        "config": config,
        "overrides": overrides,
        "steps": result["step"],
        "train_seconds": _wall(workdir),
        "model": codec.model_kwargs,
        **point,
        "code_use": code_use(codec, images),
    }
    if prefixes and codec.progressive:  # a quantizer whose stage prefixes decode (RVQ)
        record["prefixes"] = [
            {"stages": n, **measure_codec(codec, images, num_stages=n)}
            for n in range(1, codec.module.prefix_stages(codec.model) + 1)
        ]
    record["measure_seconds"] = time.time() - start
    cache.write_text(json.dumps({"key": key, "record": record}) + "\n")
    print(f"publish: {name}: {record['bpp']:.4f} bpp, {record['psnr-rgb']:.2f} dB", flush=True)
    return record


def _wall(workdir: Path) -> float | None:
    path = workdir / "wall.json"
    return json.loads(path.read_text())["seconds"] if path.exists() else None


def _num(x: float | None, fmt: str) -> str:
    return "—" if x is None else format(x, fmt)


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f} min"


def study_table(study: str, field: str, rows: list[dict]) -> str:
    lines = [
        f"| {field} | bpp | PSNR (dB) | MS-SSIM | codes used per stage | steps | train wall |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: |",
    ]
    for r in rows:
        use = " / ".join(f"{u:.0%}" for u in r["code_use"])
        ms_ssim = _num(r["ms-ssim-rgb"], ".4f")
        lines.append(
            f"| {r['value']} | {r['bpp']:.4f} | {r['psnr-rgb']:.2f} | {ms_ssim} "
            f"| {use} | {r['steps']} | {_minutes(r['train_seconds'])} |"
        )
    prefix_rows = [r for r in rows if r.get("prefixes")]
    for r in prefix_rows:
        lines += [
            "",
            f"Prefixes of the {r['value']} run's stages (files that code the first n stages):",
            "",
            "| stages | bpp | PSNR (dB) | gain over n − 1 (dB) | MS-SSIM |",
            "| ---: | ---: | ---: | ---: | ---: |",
        ]
        previous = None
        for p in r["prefixes"]:
            gain = "" if previous is None else f"{p['psnr-rgb'] - previous:+.2f}"
            lines.append(
                f"| {p['stages']} | {p['bpp']:.4f} | {p['psnr-rgb']:.2f} | {gain} "
                f"| {_num(p['ms-ssim-rgb'], '.4f')} |"
            )
            previous = p["psnr-rgb"]
    return "\n".join(lines) + "\n"


def study_plot(study: str, field: str, rows: list[dict], path: Path) -> None:
    fig = plot_lib.new_figure(figsize=(10.0, 3.4), dpi=130)
    axes = fig.subplots(1, 3)
    labels = [str(r["value"]) for r in rows]
    for ax, key, title in zip(axes[:2], ("psnr-rgb", "bpp"), ("PSNR (dB)", "bpp")):
        ax.plot(range(len(rows)), [r[key] for r in rows], "o-")
        ax.set_xticks(range(len(rows)), labels)
        ax.set_xlabel(field)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    ax = axes[2]
    for r in rows:
        ax.plot(r["bpp"], r["psnr-rgb"], "o")
        ax.annotate(str(r["value"]), (r["bpp"], r["psnr-rgb"]), fontsize=8)
        if r.get("prefixes"):
            ps = r["prefixes"]
            ax.plot([p["bpp"] for p in ps], [p["psnr-rgb"] for p in ps], ".--", alpha=0.7)
            for p in ps:
                ax.annotate(f"{p['stages']}", (p["bpp"], p["psnr-rgb"]), fontsize=7)
    ax.set_xlabel("bpp")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("rate–distortion")
    ax.grid(alpha=0.3)
    plot_lib.save_figure(fig, path, f"{study} plot")


def rd_plot(records: dict, baselines: Path | None, reference: Path | None, path: Path) -> None:
    """Every NLQ and VQ-VAE-2 point beside the hyperprior's and the classical codecs'."""
    curves = []
    if baselines is not None:
        for name in ("jpeg", "webp", "hevc"):
            f = baselines / f"{name}.json"
            if f.exists():
                curves.append(plot_lib.load_curve(f, "psnr", label=name.upper()))
    fig = plot_lib.new_figure(figsize=(8.5, 6.0), dpi=150)
    ax = fig.subplots()
    for c in curves:
        ax.plot(c.bpp, c.quality, "--", marker="o", markersize=3, label=c.label, alpha=0.8)
    if reference is not None:
        ref = results_lib.read_results(reference)["results"]
        ax.plot(ref["bpp"], ref["psnr-rgb"], "k*", markersize=12,
                label="mean-scale hyperprior (shipped, 16 000 steps)")  # fmt: skip
    markers = iter("sD^vPXhp<>ov")
    for study, rows in records.items():
        marker = next(markers)
        for r in rows:
            ax.plot(r["bpp"], r["psnr-rgb"], marker, markersize=6,
                    label=f"{study}={r['value']}" if study != "vqvae2" else "VQ-VAE-2")  # fmt: skip
            ps = r.get("prefixes") or []
            if ps:
                ax.plot([p["bpp"] for p in ps], [p["psnr-rgb"] for p in ps], ":" + marker,
                        markersize=4, alpha=0.6,
                        label=f"{study}={r['value']}: its first 1..{len(ps)} stages")  # fmt: skip
    points = [r for rows in records.values() for r in rows]
    xs = [r["bpp"] for r in points] + ([ref["bpp"][0]] if reference is not None else [])
    ax.set_xlim(0, max(0.35, 1.3 * max(xs)))
    ax.set_ylim(15, 34)
    ax.set_xlabel("bits per pixel (bpp, whole file)")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_title("NLQ studies (CPU-sized) beside the hyperprior and classical codecs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    plot_lib.save_figure(fig, path, "RD plot")


def publish(args) -> None:
    out, results = Path(args.out), Path(args.results)
    images = [(p.stem, results_lib.read_image(p)) for p in results_lib.list_images(args.images)]
    print(f"publish: measuring on {len(images)} images from {args.images}", flush=True)
    records: dict[str, list[dict]] = {}
    missing = []
    for study, spec in STUDIES.items():
        rows = []
        for (name, config, overrides), value in zip(
            run_specs(study, args.full), spec["full" if args.full else "cpu"]
        ):
            record = run_record(
                out, name, config, overrides, images, args.images, study == "num_stages"
            )
            if record is None:
                missing += [name] if name not in missing else []
                continue
            rows.append({"value": value, **record})
        if not rows:
            continue
        records[study] = rows
        (results / f"{study}.md").parent.mkdir(parents=True, exist_ok=True)
        (results / f"{study}.md").write_text(study_table(study, spec["field"], rows))
        study_plot(study, spec["field"], rows, results / f"{study}.png")
    baselines = Path(args.baselines) if args.baselines else None
    reference = Path(args.reference) if args.reference else None
    rd_plot(records, baselines, reference, results / "rd.png")
    summary = {"images": [n for n, _ in images], "full": args.full, "studies": records,
               "missing": missing}  # fmt: skip
    results_lib.write_json(results / "studies.json", summary)
    if missing:
        print(f"publish: not finished, left out: {', '.join(missing)}", flush=True)
    print(f"publish: wrote {results}", flush=True)
