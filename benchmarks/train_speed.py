"""Train-step throughput of the hyperprior, nlq_jax beside CompressAI, same machine, same run.

    python benchmarks/train_speed.py --compressai-python /tmp/compressai-venv/bin/python

Both sides: bmshj2018-hyperprior at quality 3 sizes (N=128, M=192), random 256² crops in
batches of 8, loss λ·255²·MSE + bpp with Adam (CompressAI also runs its auxiliary optimizer
for the entropy bottleneck's quantiles, which ours does not need). Ours is the trainer's own
jitted, sharded step (`nlq_jax.train.Trainer`); its compile time is reported apart. The two
sides take turns for `--rounds` rounds of `--steps` steps each (after a warm-up step), so that a
change of load on this shared machine hits both; each side's time is the median over all its
steps, and the ratio is also given per round. Prints a Markdown table.
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
from nlq_jax.config_base import load_config


class Ours:
    """The trainer's step on a fixed random batch; compiled once, then timed in rounds."""

    def __init__(self, batch: int, size: int, upsampling: str):
        config = load_config("hyperprior:quality=3")
        with config.unlocked():
            config.data.batch_size, config.data.crop_size = batch, size
            config.model.upsampling = upsampling
        self.trainer = train.Trainer(config, "/tmp/unused")
        self.state = self.trainer.init_state()
        x = np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype(np.float32)
        self.batch = sharding.global_batch({"image": x}, self.trainer.mesh)
        self.rng = jax.random.PRNGKey(0)
        self.first_step_s = self.step()

    def step(self) -> float:
        t0 = time.perf_counter()
        self.state, metrics = self.trainer.train_step(self.state, self.batch, self.rng)
        jax.block_until_ready(metrics)
        return time.perf_counter() - t0

    def steps(self, n: int) -> list[float]:
        return [self.step() for _ in range(n)]


def peer_steps(python: str, batch: int, size: int, steps: int) -> list[float]:
    """CompressAI's step times (after its own warm-up step), in a subprocess of its venv."""
    side = Path(__file__).with_name("compressai_side.py")
    cmd = [python, str(side), "train", "--model", "bmshj2018-hyperprior"]
    cmd += ["--batch", str(batch), "--size", str(size), "--steps", str(steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["bmshj2018-hyperprior"]["step_times"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds, the sides taking turns")
    p.add_argument("--upsampling", default="phase", help="UpConv method of ours")
    p.add_argument("--compressai-python", help="python of a CompressAI virtualenv (peer side)")
    args = p.parse_args(argv)

    ours = Ours(args.batch, args.size, args.upsampling)
    mine: list[float] = []
    theirs: list[float] = []
    ratios = []
    for _ in range(args.rounds):
        if args.compressai_python:
            theirs += peer_steps(args.compressai_python, args.batch, args.size, args.steps)
        mine += ours.steps(args.steps)
        if theirs:
            ratios.append(
                statistics.median(theirs[-args.steps :]) / statistics.median(mine[-args.steps :])
            )

    step = statistics.median(mine)
    platform = jax.devices()[0].platform
    print(
        f"hyperprior (N=128, M=192), batch {args.batch} × {args.size}², {args.rounds} rounds of "
        f"{args.steps} steps per side, medians, jax {jax.__version__} on {platform}\n"
    )
    print("| side | step | images/s | first step (compile) |")
    print("| --- | --- | --- | --- |")
    print(
        f"| nlq_jax ({args.upsampling}) | {step:.2f} s | {args.batch / step:.2f} | "
        f"{ours.first_step_s:.1f} s |"
    )
    if theirs:
        peer = statistics.median(theirs)
        print(f"| CompressAI 1.2.8 (torch CPU) | {peer:.2f} s | {args.batch / peer:.2f} | — |")
        per_round = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"\nnlq_jax / CompressAI throughput: {peer / step:.2f}× (per round: {per_round})")


if __name__ == "__main__":
    sys.exit(main())
