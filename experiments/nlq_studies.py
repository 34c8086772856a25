"""The NLQ studies: latent dimension, codebook size, residual stages and loss terms, run and
tabulated.

    # train every study's runs (resumable: run the same command again), CPU-sized by default
    python experiments/nlq_studies.py train --train folder:$BSDS500 --eval folder:$KODAK \
        --out runs/nlq-studies
    # the tables, plots and summary from the finished runs (measures the exports on --images)
    python experiments/nlq_studies.py publish --out runs/nlq-studies --images $KODAK \
        --baselines docs/results/kodak --reference docs/results/default_model/results.json \
        --results docs/results/nlq

Each run is an ordinary `python -m nlq_jax.main` run of `configs/rvq.py` (the residual-VQ NLQ
model) in `OUT/<run>/`, with the study's overrides: an interrupted study resumes where it
stopped and a finished run is not trained again. `--full` trains the research's sizes (the
config's own: 256² crops, N = 128, 3 × 8192 codes, 1 M steps; for a GPU host); the default is a
CPU size that trains in a few minutes per run on two cores (64² crops, N = 64, D = 32, 3 × 256
codes, 600 steps), whose absolute numbers are far from a trained model's and whose trends are
what the studies show. `--studies` picks some of: latent_dim, codebook_size, num_stages, loss,
vqvae2. Arguments after `--` go to every run (e.g. `-- --config.num_steps=2000`).

`publish` loads each run's export and measures it on the evaluation images with real files:
bpp (the file's bytes), PSNR, codebook use per stage (the fraction of codes the images' indices
use), and for the stage study the PSNR and bpp of every prefix of the stages (a file that codes
only the first n stages). It writes `RESULTS/<study>.md` tables, `RESULTS/<study>.png` plots,
`RESULTS/rd.png` (every NLQ and VQ-VAE-2 point beside the scalar hyperprior and the classical
codecs' curves) and `RESULTS/studies.json` (every figure, per run); docs/results/nlq/README.md
discusses them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CONFIG = "rvq"

# The CPU size: what two cores train in a few minutes per run.
CPU = {
    "model.N": 64,
    "model.latent_dim": 32,
    "model.quantizer.codebook_size": 256,
    "model.quantizer.num_stages": 3,
    # 8 crops × (64/16)² = 128 vectors per batch, 0.5 per code of 256.
    "model.quantizer.dead_threshold": 0.1,
    "data.crop_size": 64,
    "data.batch_size": 8,
    "num_steps": 600,
    "optimizer.learning_rate": 1e-3,
    "optimizer.warmup_steps": 50,
    "log_every": 50,
    "checkpoint_every": 200,
    "keep_checkpoints": 1,
    "image_every": 0,
    "eval_every": 0,
    "prior_fit_batches": 50,
}
# The loss study's MS-SSIM needs crops of at least 161 pixels (5 scales): both of its rows
# train on 192² crops, at a batch with about as many pixels per step as the others'.
CPU_LOSS = {"data.crop_size": 192, "data.batch_size": 2, "num_steps": 300}

# study → (field, CPU values, full values, config overrides of the study's runs)
STUDIES: dict[str, dict] = {
    "latent_dim": {"field": "model.latent_dim", "cpu": [16, 32, 64],
                   "full": [128, 256, 512, 1024, 2048]},
    "codebook_size": {"field": "model.quantizer.codebook_size", "cpu": [64, 256, 1024],
                      "full": [256, 1024, 4096, 8192]},
    # CPU: one model of 4 stages, measured at every prefix (its stages are trained with
    # quantizer dropout, so each prefix is a model of its own); full: one model per count too.
    "num_stages": {"field": "model.quantizer.num_stages", "cpu": [4], "full": [1, 2, 3, 4, 5]},
    "vqvae2": {"field": "model.name", "cpu": ["vqvae2"], "full": ["vqvae2"]},
    "loss": {"field": "distortion", "cpu": ["mse", "mse+ms-ssim", "ms-ssim"],
             "full": ["mse", "mse+ms-ssim", "ms-ssim"]},
}  # fmt: skip


def run_name(field: str, value) -> str:
    return f"{field.split('.')[-1]}={value}"


def run_specs(study: str, full: bool) -> list[tuple[str, str, dict]]:
    """(run name, config spec, overrides) of each run of a study."""
    s = STUDIES[study]
    specs = []
    for value in s["full" if full else "cpu"]:
        overrides = {} if full else dict(CPU)
        config = CONFIG
        if study == "loss":
            overrides.update({} if full else CPU_LOSS)
            if value == "ms-ssim":
                config = f"{CONFIG}:msssim"  # its λ ladder
            else:
                overrides["distortion"] = value
            name = f"loss={value}"
        elif study == "vqvae2":
            config = "vqvae2"
            # Its quantizer is a VQ of its own size (no stages).
            for key in ("model.quantizer.num_stages", "model.quantizer.codebook_size"):
                overrides.pop(key, None)
            name = "vqvae2"
        else:
            overrides[s["field"]] = value
            name = run_name(s["field"], value)
            if not full and CPU.get(s["field"]) == value:
                name = "base"  # the CPU size itself, shared by the studies
        specs.append((name, config, overrides))
    return specs


def train_run(name: str, config: str, overrides: dict, args, extra: list[str]) -> None:
    """Trains (or resumes, or skips when finished) one run; records its wall time."""
    workdir = Path(args.out) / name
    if (workdir / "metrics.json").exists():
        print(f"studies: {name}: finished, not trained again", flush=True)
        return
    cmd = [sys.executable, "-m", "nlq_jax.main", f"--config={config}", f"--workdir={workdir}"]
    cmd += [f"--config.data.train={args.train}", f"--config.eval.source={args.eval}"]
    cmd += [f"--config.{k}={v}" for k, v in overrides.items()] + extra
    print(f"studies: {name}: " + " ".join(cmd), flush=True)
    start = time.time()
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"studies: the run {name} failed (see its output above)")
    wall = workdir / "wall.json"
    previous = json.loads(wall.read_text())["seconds"] if wall.exists() else 0.0
    wall.write_text(json.dumps({"seconds": previous + time.time() - start}) + "\n")


def train(args, extra: list[str]) -> None:
    for study in args.studies:
        for name, config, overrides in run_specs(study, args.full):
            train_run(name, config, overrides, args, extra)
    print(f"studies: all runs finished in {args.out}", flush=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) the studies' runs")
    t.add_argument("--train", required=True, help="training images: folder:PATH, tfds:NAME")
    t.add_argument("--eval", required=True, help="held-out images: folder:PATH")
    t.add_argument("--out", required=True, help="directory of the runs")
    t.add_argument("--full", action="store_true", help="the research's sizes (a GPU host)")
    t.add_argument("--studies", type=lambda s: s.split(","), default=list(STUDIES),
                   help=f"comma-separated, of: {', '.join(STUDIES)} (default: all)")  # fmt: skip
    u = sub.add_parser("publish", help="tables and plots of the finished runs")
    u.add_argument("--out", required=True, help="directory of the runs")
    u.add_argument("--images", required=True, help="folder of the evaluation images")
    u.add_argument("--results", required=True, help="where the tables and plots go")
    u.add_argument("--baselines", help="folder of classical codecs' results JSON (jpeg.json …)")
    u.add_argument("--reference", help="results JSON of a scalar hyperprior on the same images")
    u.add_argument("--full", action="store_true", help="the runs were trained with --full")
    args = p.parse_args(argv)
    if args.command == "train":
        unknown = set(args.studies) - set(STUDIES)
        if unknown:
            raise SystemExit(f"studies: unknown {sorted(unknown)}; known: {', '.join(STUDIES)}")
        train(args, extra)
    else:
        from publish_nlq_studies import publish  # noqa: PLC0415 (the heavy imports)

        publish(args)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
