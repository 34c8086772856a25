"""Train-step throughput of the hyperprior, nlq_jax beside CompressAI, same machine, same run.

    python benchmarks/train_speed.py --compressai-python /tmp/compressai-venv/bin/python

Both sides: bmshj2018-hyperprior at quality 3 sizes (N=128, M=192), random 256² crops in
batches of 8, loss λ·255²·MSE + bpp with Adam (CompressAI also runs its auxiliary optimizer
for the entropy bottleneck's quantiles, which ours does not need). Ours is the trainer's own
jitted, sharded step (`nlq_jax.train.Trainer`); its compile time is reported apart. Median of
`--steps` steps after one warm-up step. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

from nlq_jax import sharding, train
from nlq_jax.config_base import model_config


def ours(batch: int, size: int, steps: int, upsampling: str) -> dict:
    config = model_config("hyperprior", "quality=3")
    with config.unlocked():
        config.data.batch_size, config.data.crop_size = batch, size
        config.model.upsampling = upsampling
    trainer = train.Trainer(config, "/tmp/unused")
    state = trainer.init_state()
    x = np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype(np.float32)
    batch_arrays = sharding.global_batch({"image": x}, trainer.mesh)
    rng = jax.random.PRNGKey(0)
    t0 = time.perf_counter()
    state, metrics = trainer.train_step(state, batch_arrays, rng)
    jax.block_until_ready(metrics)
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = trainer.train_step(state, batch_arrays, rng)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    step = statistics.median(times)
    return {"step_s": step, "images_per_s": batch / step, "first_step_s": first}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--upsampling", default="phase", help="UpConv method of ours")
    p.add_argument("--compressai-python", help="python of a CompressAI virtualenv (peer side)")
    args = p.parse_args(argv)

    peer = None
    if args.compressai_python:
        side = Path(__file__).with_name("compressai_side.py")
        cmd = [
            args.compressai_python,
            str(side),
            "train",
            "--model",
            "bmshj2018-hyperprior",
            "--batch",
            str(args.batch),
            "--size",
            str(args.size),
            "--steps",
            str(args.steps),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        peer = json.loads(out)["bmshj2018-hyperprior"]
    r = ours(args.batch, args.size, args.steps, args.upsampling)

    print(
        f"hyperprior (N=128, M=192), batch {args.batch} × {args.size}², median of "
        f"{args.steps} steps, jax {jax.__version__} on {jax.devices()[0].platform}\n"
    )
    print("| side | step | images/s | first step (compile) |")
    print("| --- | --- | --- | --- |")
    print(
        f"| nlq_jax ({args.upsampling}) | {r['step_s']:.2f} s | {r['images_per_s']:.2f} | "
        f"{r['first_step_s']:.1f} s |"
    )
    if peer:
        print(
            f"| CompressAI 1.2.8 (torch CPU) | {peer['step_s']:.2f} s | "
            f"{peer['images_per_s']:.2f} | — |"
        )
        print(f"\nnlq_jax / CompressAI throughput: {r['images_per_s'] / peer['images_per_s']:.2f}×")


if __name__ == "__main__":
    sys.exit(main())
