"""Speed of the three ``UpConv`` methods in a bmshj2018-like synthesis transform, on CPU.

Two measurements per method, each jitted and compiled ahead of time (compile time reported
apart), then timed ``--infer-repeats`` / ``--repeats`` times, the methods taking turns within
each round so that load from other processes falls on all of them alike (median,
``jax.block_until_ready``):

- inference: ``g_s`` on one latent ``(1, 32, 48, M)`` -> ``(1, 512, 768, 3)`` (Kodak size);
- training: ``jax.value_and_grad`` of the mean squared error of ``g_s`` on a batch of
  ``--train-batch`` latents ``(16, 16, M)`` -> ``256 x 256`` images.

``g_s`` is 4 ``UpConv`` (N, N, N, 3 channels; 5x5 for ``transpose``/``phase``, 3x3 for
``subpixel``), with IGDN between them if ``--gdn``. ``transpose`` and ``phase`` run on the same
parameters and their outputs are compared.

    python benchmarks/upsampling.py --gdn --repeats 3 --train-batch 8

A ``transpose`` training step at batch 8 takes tens of seconds on 2 cores; ``--train-batch 4``
halves the run time (compare images/s).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from nlq_jax.layers import GDN, UpConv, upsampling_methods


class Synthesis(nn.Module):
    """bmshj2018-like synthesis transform: 4 up-samplings by 2, optional IGDN between."""

    channels: int
    method: str
    gdn: bool

    @nn.compact
    def __call__(self, y: jax.Array) -> jax.Array:
        for i, features in enumerate((self.channels,) * 3 + (3,)):
            if i and self.gdn:
                y = GDN(inverse=True, name=f"igdn{i}")(y)
            y = UpConv(features, method=self.method, name=f"up{i}")(y)
        return y


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


def _compile(fn: Callable, *args) -> tuple[Callable, float]:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(upsampling_methods))
    parser.add_argument("--channels", type=int, default=128, help="N")
    parser.add_argument("--latent-channels", type=int, default=192, help="M")
    parser.add_argument("--latent-size", type=int, nargs=2, default=(32, 48), help="inference")
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--train-size", type=int, default=256, help="output side, training")
    parser.add_argument("--gdn", action="store_true", help="IGDN between up-samplings")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps")
    parser.add_argument("--infer-repeats", type=int, default=10, help="timed inferences")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs (inference only)")
    parser.add_argument("--skip-train", action="store_true")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    m = args.latent_channels
    y_inf = jnp.asarray(rng.normal(size=(1, *args.latent_size, m)), jnp.float32)
    side = args.train_size // 16
    y_train = jnp.asarray(rng.normal(size=(args.train_batch, side, side, m)), jnp.float32)
    x_train = jnp.asarray(
        rng.uniform(size=(args.train_batch, args.train_size, args.train_size, 3)),
        jnp.float32,
    )

    print(
        f"jax {jax.__version__}, backend {jax.default_backend()}, "
        f"{os.cpu_count()} CPUs visible, {platform.processor() or platform.machine()}, "
        f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"g_s: N={args.channels}, M={m}, IGDN={'yes' if args.gdn else 'no'}; inference "
        f"1x{args.latent_size[0]}x{args.latent_size[1]}x{m} -> "
        f"{16 * args.latent_size[0]}x{16 * args.latent_size[1]}; training batch "
        f"{args.train_batch}x{args.train_size}^2; median of {args.infer_repeats} "
        f"inferences, {args.repeats} training steps\n"
    )

    # Compile everything first, then time the methods round-robin, one run of each per
    # repeat, so that load from other processes on a shared machine hits them alike.
    shared = {}  # transpose and phase share parameters
    infer, step, compile_s, n_params, outputs = {}, {}, {}, {}, {}
    for method in args.methods:
        model = Synthesis(args.channels, method, args.gdn)
        key = "conv" if method in ("phase", "transpose") else method
        if key not in shared:
            shared[key] = model.init(jax.random.key(0), y_inf[:, :2, :2])
        variables = shared[key]
        n_params[method] = sum(x.size for x in jax.tree.leaves(variables))
        fn, infer_compile = _compile(model.apply, variables, y_inf)
        infer[method] = partial(fn, variables, y_inf)
        compile_s[method] = [infer_compile]
        outputs[method] = np.asarray(infer[method]())
        for _ in range(args.warmup):
            _timed(infer[method])
        if not args.skip_train:

            def loss(variables, y, x, model=model):
                return jnp.mean(jnp.square(model.apply(variables, y) - x))

            fn, step_compile = _compile(jax.value_and_grad(loss), variables, y_train, x_train)
            step[method] = partial(fn, variables, y_train, x_train)
            compile_s[method].append(step_compile)

    infer_times = {method: [] for method in args.methods}
    step_times = {method: [] for method in args.methods}
    for repeat in range(max(args.repeats, args.infer_repeats)):
        for method in args.methods:
            if repeat < args.infer_repeats:
                infer_times[method].append(_timed(infer[method]))
            if repeat < args.repeats and not args.skip_train:
                step_times[method].append(_timed(step[method]))
        print(f"  round {repeat + 1} done", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")

    rows = []
    for method in args.methods:
        row = [
            method,
            f"{n_params[method] / 1e6:.2f} M",
            f"{compile_s[method][0]:.1f}",
            f"{statistics.median(infer_times[method]):.3f}",
        ]
        if not args.skip_train:
            median = statistics.median(step_times[method])
            row += [
                f"{compile_s[method][1]:.1f}",
                f"{median:.2f}",
                f"{args.train_batch / median:.2f}",
            ]
        rows.append(row)

    if "phase" in outputs and "transpose" in outputs:
        diff = np.abs(outputs["phase"] - outputs["transpose"]).max()
        scale = np.abs(outputs["transpose"]).max()
        print(
            f"phase vs transpose, same parameters: max |diff| = {diff:.2e} (max |out| {scale:.2e})"
        )

    out_h, out_w = 16 * args.latent_size[0], 16 * args.latent_size[1]
    header = ["method", "params", "infer compile (s)", f"infer {out_h}x{out_w} (s)"]
    if not args.skip_train:
        header += [
            "train compile (s)",
            f"train step b{args.train_batch} (s)",
            "train images/s",
        ]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(" --- " for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
