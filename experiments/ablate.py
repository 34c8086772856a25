"""Ablations: train one config at several values of one field, then tabulate and plot.

    python experiments/ablate.py --config=configs/rvq.py:runlocal \
        --sweep=model.quantizer.num_stages=1,2,3 --out=runs/ablate-stages

Each value is a full run of `python -m nlq_jax.main` (so each one resumes if interrupted, and a
finished one is not run again) in `OUT/<field>=<value>/`, with `--config.<field>=<value>`; any
arguments after `--` go to every run (e.g. `-- --config.num_steps=2000`). At the end it reads
each run's `metrics.json` (held-out images, real bitstreams) and writes `OUT/ablation.json`,
`OUT/ablation.png` (every metric against the swept value, and the rate–distortion points) and
prints a Markdown table. The ablations of the NLQ study are listed in experiments/README.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """'model.quantizer.codebook_size=64,256' → ('model.quantizer.codebook_size', ['64', '256'])."""
    field, sep, values = text.partition("=")
    items = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not field.strip() or not items:
        raise SystemExit(f"ablate: --sweep must look like FIELD=V1,V2,...; got {text!r}")
    return field.strip(), items


def run_one(config: str, field: str, value: str, workdir: Path, extra: list[str]) -> dict:
    """Trains (or resumes) one value of the sweep; returns its metrics.json."""
    metrics = workdir / "metrics.json"
    if not metrics.exists():
        cmd = [sys.executable, "-m", "nlq_jax.main", f"--config={config}"]
        cmd += [f"--workdir={workdir}", f"--config.{field}={value}", *extra]
        print("ablate: " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise SystemExit(f"ablate: the run {field}={value} failed (see its output above)")
    return json.loads(metrics.read_text())


def plot(field: str, rows: list[dict], out: Path) -> None:
    from nlq_jax.evaluation.plot import new_figure, save_figure

    keys = [k for k in rows[0]["eval"] if all(isinstance(r["eval"].get(k), float) for r in rows)]
    fig = new_figure(figsize=(3.2 * (len(keys) + 1), 3.0))
    axes = fig.subplots(1, len(keys) + 1)
    labels = [r["value"] for r in rows]
    for ax, key in zip(axes, keys):
        ax.plot(range(len(rows)), [r["eval"][key] for r in rows], "o-")
        ax.set_xticks(range(len(rows)), labels)
        ax.set_xlabel(field)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    ax = axes[-1]
    for r in rows:
        ax.plot(r["eval"]["bpp"], r["eval"]["psnr-rgb"], "o")
        ax.annotate(r["value"], (r["eval"]["bpp"], r["eval"]["psnr-rgb"]), fontsize=8)
    ax.set_xlabel("bpp")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("rate–distortion")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out, "ablation plot")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="configs/NAME.py[:variant]")
    p.add_argument("--sweep", required=True, help="FIELD=V1,V2,... (a config field)")
    p.add_argument("--out", required=True, help="directory for the runs and the summary")
    args = p.parse_args(argv)

    field, values = parse_sweep(args.sweep)
    out = Path(args.out)
    rows = []
    for value in values:
        result = run_one(args.config, field, value, out / f"{field}={value}", extra)
        if not result.get("eval"):
            raise SystemExit("ablate: the config evaluates no held-out images (set eval.source)")
        rows.append({"value": value, "step": result["step"], "eval": result["eval"]})
    out.mkdir(parents=True, exist_ok=True)
    summary = {"config": args.config, "field": field, "extra": extra, "runs": rows}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(field, rows, out / "ablation.png")

    keys = [k for k in rows[0]["eval"] if isinstance(rows[0]["eval"][k], float)]
    print(f"\n| {field} | " + " | ".join(keys) + " |")
    print("| --- " * (len(keys) + 1) + "|")
    for r in rows:
        print(f"| {r['value']} | " + " | ".join(f"{r['eval'][k]:.4g}" for k in keys) + " |")
    print(f"\nwrote {out / 'ablation.json'} and {out / 'ablation.png'}")


if __name__ == "__main__":
    main()
