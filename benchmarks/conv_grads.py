"""The hyperprior's two heaviest convolutions, XLA's autodiff beside nlq_jax's custom VJPs.

    python benchmarks/conv_grads.py

Layers at the train-speed benchmark's sizes (batch 8, 256² crops, N = 128): g_a's second
DownConv (5×5, stride 2, 128 → 128, 128² → 64²) and g_s's third UpConv (5×5 transposed,
128 → 128, 64² → 128²). Each is timed three ways, jitted, median of `--repeats`: the value,
the input gradient alone and the kernel gradient alone, for
- `xla`: `lax.conv_general_dilated` differentiated by JAX (the stride-2 input gradient is
  then a conv with a dilated input), and for the UpConv the single phase conv
  (3×3, 128 → 4·128, then depth-to-space) differentiated by JAX;
- `nlq_jax`: `layers.conv_ops.conv2d` and `layers.conv_ops.phase_conv` as the models use them.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.layers import conv_ops as conv


def _median_ms(f, *args, repeats: int) -> float:
    f = jax.jit(f)
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _row(name: str, fn, x, kernel, repeats: int) -> str:
    g = jnp.ones(jax.eval_shape(fn, x, kernel).shape, x.dtype)
    value = _median_ms(fn, x, kernel, repeats=repeats)
    dx = _median_ms(
        lambda x, k: jax.vjp(lambda x_: fn(x_, k), x)[1](g)[0], x, kernel, repeats=repeats
    )
    dk = _median_ms(
        lambda x, k: jax.vjp(lambda k_: fn(x, k_), k)[1](g)[0], x, kernel, repeats=repeats
    )
    return f"| {name} | {value:.0f} ms | {dx:.0f} ms | {dk:.0f} ms | {value + dx + dk:.0f} ms |"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)

    def array(*shape, scale=1.0):
        return jnp.asarray(rng.normal(size=shape) * scale, jnp.float32)

    pad = ((2, 2), (2, 2))
    down_x, down_k = array(args.batch, 128, 128, 128), array(5, 5, 128, 128, scale=0.02)
    up_x, up_k = array(args.batch, 64, 64, 128), array(5, 5, 128, 128, scale=0.02)

    def down_xla(x, k):
        dims = ("NHWC", "HWIO", "NHWC")
        return jax.lax.conv_general_dilated(x, k, (2, 2), pad, dimension_numbers=dims)

    rows = [
        _row("DownConv 128² → 64², xla", down_xla, down_x, down_k, args.repeats),
        _row(
            "DownConv 128² → 64², nlq_jax",
            lambda x, k: conv.conv2d(x, k, (2, 2), pad),
            down_x,
            down_k,
            args.repeats,
        ),
        _row(
            "UpConv 64² → 128², xla (one phase conv)",
            lambda x, k: conv._phase_conv_single(x, k, 2),
            up_x,
            up_k,
            args.repeats,
        ),
        _row("UpConv 64² → 128², nlq_jax", conv.phase_conv, up_x, up_k, args.repeats),
    ]
    print(
        f"batch {args.batch}, 128 channels, median of {args.repeats}, jax {jax.__version__} "
        f"on {jax.devices()[0].platform}\n"
    )
    print("| layer, method | value | input gradient | kernel gradient | sum |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    sys.exit(main())
