"""What each residual VQ stage contributes, over training: the RVQ test's model, measured.

Trains the model of tests/test_discrete_training.py's `rvq_codec` fixture (its data, its
steps, its `train_codec`) and every `--every` steps prints, on the held-out crops, in eval mode:

- `|r_s|/|z|`: the RMS of the residual after s stages over the RMS of the latent z (s = 0 is z
  itself, so the column starts at 1); a stage that helps shrinks it;
- `use_s`: the fraction of stage s's codes that the held-out indices use; `ppl_s` their
  perplexity; `dead_s`: stage s's codes whose EMA count is below the restart threshold;
- `psnr_n`: PSNR of g_s(Σ_{s≤n} q_s), n stages (8-bit pixels, as a decoder writes them), and
  `psnr_z`: of g_s(z), the unquantized latent (the transforms' ceiling); `gain_n` = psnr_n −
  psnr_{n−1}.

At the end, the test's own numbers: PSNR and payload bits of real files of 1..S stages.

    python benchmarks/rvq_diagnose.py --seeds 0 1 2
    python benchmarks/rvq_diagnose.py --seeds 0 --set quantizer.beta=0.0 --every 25

`--set NAME=VALUE` overrides a field of the model (`RVQ_MODEL`, then `nlq.Model`'s fields);
`--set quantizer.NAME=VALUE` an option of its quantizer sub-dict.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.quantizers.codebook import STATE


def test_module():
    """tests/test_discrete_training.py, as a module (its fixture's data and training)."""
    path = Path(__file__).resolve().parents[1] / "tests" / "test_discrete_training.py"
    spec = importlib.util.spec_from_file_location("test_discrete_training", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def psnr_8bit(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Mean over images of the PSNR of x̂ rounded to 8 bits, against x (both in [0, 1])."""
    x_hat = jnp.round(jnp.clip(x_hat, 0.0, 1.0) * 255.0)
    mse = jnp.mean((x_hat - jnp.round(x * 255.0)) ** 2, axis=(1, 2, 3))
    return jnp.mean(10.0 * jnp.log10(255.0**2 / jnp.maximum(mse, 1e-10)))


@functools.cache
def _measure_fn(model):
    """The jitted eval-mode measurements of `stage_measures` (compiled once per model)."""

    def run(m, x):
        z = m.g_a(x)
        _, indices, _ = m.latent_quantizer(z, training=False)
        stages = m.latent_quantizer.num_stages
        out = {"psnr_z": psnr_8bit(x, m.g_s(z))}
        rms = lambda v: jnp.sqrt(jnp.mean(jnp.sum(v * v, axis=-1)))  # noqa: E731
        norm_z = rms(z)
        out["|r_0|/|z|"] = jnp.float32(1.0)
        for n in range(1, stages + 1):
            z_q = m.latent_quantizer.decode(indices, n)
            out[f"|r_{n}|/|z|"] = rms(z - z_q) / norm_z
            out[f"psnr_{n}"] = psnr_8bit(x, m.g_s(z_q))
        out["|z|"] = norm_z
        return out, indices

    return jax.jit(lambda v, x: model.apply(v, x, method=run))


def stage_measures(model, variables: dict, x: jax.Array) -> dict:
    """The per-stage numbers of the module docstring for images x (eval mode)."""
    out, indices = _measure_fn(model)(variables, x)
    out = {k: float(v) for k, v in out.items()}
    indices = np.asarray(indices)
    from nlq_jax.models import nlq

    q = nlq.build_quantizer(model)
    k = q.codebook_size
    for s in range(q.num_stages):
        counts = np.bincount(indices[..., s].reshape(-1), minlength=k)
        p = counts[counts > 0] / counts.sum()
        out[f"use_{s + 1}"] = float(np.mean(counts > 0))
        out[f"ppl_{s + 1}"] = float(np.exp(-np.sum(p * np.log(p))))
        size = variables[STATE]["latent_quantizer"][f"stages_{s}"]["cluster_size"]
        out[f"dead_{s + 1}"] = float(np.sum(np.asarray(size) < q.dead_threshold))
    for n in range(2, q.num_stages + 1):
        out[f"gain_{n}"] = out[f"psnr_{n}"] - out[f"psnr_{n - 1}"]
    return out


def columns(stages: int) -> list[str]:
    cols = ["step", "|z|"] + [f"|r_{n}|/|z|" for n in range(1, stages + 1)]
    cols += [f"use_{s}" for s in range(1, stages + 1)] + [f"ppl_{s}" for s in range(1, stages + 1)]
    cols += [f"dead_{s}" for s in range(1, stages + 1)]
    cols += ["psnr_z"] + [f"psnr_{n}" for n in range(1, stages + 1)]
    return cols + [f"gain_{n}" for n in range(2, stages + 1)]


def fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.3g}"


def diagnose(seed: int, steps: int, every: int, model: dict) -> dict:
    """Trains the fixture's model (with `model`'s overrides), printing the table; returns the
    real-file prefix numbers {n: (psnr, bits)}."""
    tests = test_module()
    _, held = tests.right_split()
    x_held = jnp.asarray(held, jnp.float32) / 255
    rows: list[dict] = []

    def on_step(step, trainer, state):
        if step % every and step != 1:
            return
        variables = {"params": state.params, **state.model_state}
        row = {"step": step} | stage_measures(trainer.model, variables, x_held)
        cols = columns(trainer.model.quantizer["num_stages"])
        if not rows:
            print("| " + " | ".join(cols) + " |")
            print("|" + " --- |" * len(cols))
        print("| " + " | ".join(fmt(row[c]) for c in cols) + " |")
        rows.append(row)

    start = time.perf_counter()
    codec, held = tests.train_rvq(seed, steps, on_step=on_step, **model)
    train_s = time.perf_counter() - start
    prefixes = tests.prefix_psnr_bits(codec, held)
    psnr = [p for p, _ in prefixes.values()]
    gains = " / ".join(f"{b - a:+.2f}" for a, b in zip(psnr, psnr[1:], strict=False))
    print(
        f"seed {seed}: files of 1..S stages: "
        + " / ".join(f"{p:.2f}" for p in psnr)
        + " dB at "
        + " / ".join(str(b) for _, b in prefixes.values())
        + f" bits; gains {gains} dB; {train_s:.0f} s (with the measurements)"
    )
    return prefixes


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    model, quantizer = {}, {}
    for item in args.set:
        name, _, value = item.partition("=")
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        if name.startswith("quantizer."):
            quantizer[name.removeprefix("quantizer.")] = value
        else:
            model[name] = value
    if quantizer:
        model["quantizer"] = {**test_module().RVQ_MODEL["quantizer"], **quantizer}
    print(f"jax {jax.__version__}, overrides {model or 'none'}")
    results = {}
    for seed in args.seeds:
        print(f"\n## seed {seed}\n")
        results[seed] = diagnose(seed, args.steps, args.every, model)
    print("\nsummary (seed: PSNR dB at bits, per prefix)")
    for seed, prefixes in results.items():
        print(seed, {n: (round(p, 2), b) for n, (p, b) in prefixes.items()})


if __name__ == "__main__":
    main()
