"""Discrete latents trained by the real trainer: codebook health, RVQ prefixes, coded rates.

Each test trains a small NLQ model for a few hundred CPU steps with `train.Trainer` (the same
compiled step, EMA state and aux losses as a real run) on 64² crops of the sample photographs,
then measures it on pixels it never saw. The expected values are properties (monotonicity,
inequalities, fractions counted with numpy), never numbers produced by the code under test.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest

from nlq_jax import checkpoint, train
from nlq_jax.codec import container
from nlq_jax.codec.api import Codec
from nlq_jax.config_base import discrete_base
from nlq_jax.data import samples

HELD_OUT = ("chelsea", "china")
SMALL = {"N": 32, "latent_dim": 16}
ROOT = Path(__file__).resolve().parents[1]


def load_config(name: str, arg: str | None = None):
    """configs/<name>.py's get_config(arg)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def checkerboard_tiles() -> tuple[np.ndarray, np.ndarray]:
    """The sample photographs cut into aligned 64² tiles: (training tiles, held-out tiles),
    alternating like a checkerboard, so both halves come from the same images but share no
    pixel."""
    halves: tuple[list, list] = ([], [])
    for photo in samples.sample_images().values():
        for r in range(photo.shape[0] // 64):
            for c in range(photo.shape[1] // 64):
                halves[(r + c) % 2].append(photo[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64])
    return np.stack(halves[0]), np.stack(halves[1])


def random_crops(
    photos: list[np.ndarray], rng: np.random.Generator, batch: int, size: int = 64
) -> np.ndarray:
    out = []
    for _ in range(batch):
        p = photos[rng.integers(len(photos))]
        r, c = rng.integers(p.shape[0] - size + 1), rng.integers(p.shape[1] - size + 1)
        out.append(p[r : r + size, c : c + size])
    return np.stack(out)


def train_codec(
    model: dict,
    steps: int,
    batches,
    *,
    lr: float = 1e-3,
    fit_batches=None,
    seed: int = 0,
    on_step=None,
) -> Codec:
    """`steps` trainer steps of an NLQ model (SMALL | model) on uint8 batches, then its priors
    refit to the codes of `fit_batches` (as the trainer does before exporting); its Codec.

    `seed` seeds the initialisation and the training keys; `on_step(step, trainer, state)`, if
    given, is called after every step (benchmarks/rvq_diagnose.py measures there).
    """
    c = discrete_base("nlq")
    c.model.update(SMALL | model)
    c.num_steps, c.data.crop_size, c.seed = steps, 64, seed
    c.optimizer.learning_rate, c.optimizer.warmup_steps = lr, 0
    c.lock()
    trainer = train.Trainer(c, "/tmp/unused")
    state = trainer.init_state()
    for step in range(1, steps + 1):
        x = next(batches).astype(np.float32) / 255
        state, metrics = trainer.train_step(state, {"image": x}, jax.random.PRNGKey(seed))
        if on_step is not None:
            on_step(step, trainer, state)
    assert trainer.trace_count == 1
    assert np.isfinite(float(metrics["loss"]))
    if fit_batches is not None:
        state = train.refit_priors(trainer, state, fit_batches)
    params = jax.tree_util.tree_map(np.asarray, state.params)
    model_state = jax.tree_util.tree_map(np.asarray, state.model_state)
    return Codec("nlq", train.model_kwargs(c), params, model_state=model_state)


def held_out_usage(codec: Codec, tiles: np.ndarray, num_codes: int) -> float:
    """Fraction of the codes that the eval-mode indices of `tiles` use at least once."""
    x = tiles.astype(np.float32) / 255
    indices = codec.runner.call("indices", x)
    return len(np.unique(indices)) / num_codes


@pytest.mark.slow
def test_dead_code_restart_keeps_the_codebook_in_use():
    train_tiles, held_tiles = checkerboard_tiles()

    def tiles(seed):
        rng = np.random.default_rng(seed)
        while True:
            x = train_tiles[rng.integers(len(train_tiles), size=16)]
            flip = rng.integers(2, size=16).astype(bool)
            x[flip] = x[flip, :, ::-1]
            yield x

    usage = {}
    for threshold in (0.25, 0.0):
        # 16 tiles × 16 positions = 256 vectors per batch, one per code on average: a code whose
        # EMA count falls below a quarter of that is dead (γ = 0.9: noticed within ~15 steps).
        vq = {"name": "vq", "codebook_size": 256, "decay": 0.9, "dead_threshold": threshold}
        codec = train_codec({"quantizer": vq}, 150, tiles(0))
        usage[threshold] = held_out_usage(codec, held_tiles, 256)
    print(f"held-out codebook usage: {usage[0.25]:.3f} with restarts, {usage[0.0]:.3f} without")
    assert usage[0.25] >= 0.9
    assert usage[0.0] <= usage[0.25] - 0.1


def right_split(size: int = 224) -> tuple[list[np.ndarray], np.ndarray]:
    """Each sample photograph split in two: its left part (training) and the size×size crop at
    its top-right corner (held out), which share no pixel."""
    left, held = [], []
    for photo in samples.sample_images().values():
        left.append(photo[:, : photo.shape[1] - size])
        held.append(photo[:size, photo.shape[1] - size :])
    return left, np.stack(held)


# The RVQ fixture's model: 3 stages × 64 codes, quantizer dropout on, commitment of the latent
# to the whole code it uses (configs/rvq.py's; see nlq_jax/quantizers/rvq.py).
RVQ_MODEL = {
    "quantizer": {
        "name": "rvq",
        "codebook_size": 64,
        "num_stages": 3,
        "decay": 0.9,
        "dead_threshold": 0.25,
        "commitment": "total",
    },
}


def train_rvq(seed: int = 0, steps: int = 300, on_step=None, **model) -> tuple[Codec, np.ndarray]:
    """An RVQ codec (RVQ_MODEL | model) trained on the photos' left parts, data and keys from
    `seed`; and the held-out top-right crops."""
    left, held = right_split()
    rng = np.random.default_rng(seed)
    batches = (random_crops(left, rng, 8) for _ in iter(int, 1))
    # The priors are refit on larger crops: a 64² crop's 4×4 latent is mostly border, whose
    # codes are not those of the inside of an image.
    fit = [{"image": random_crops(left, rng, 8, 192).astype(np.float32) / 255} for _ in range(8)]
    codec = train_codec(
        RVQ_MODEL | model, steps, batches, lr=3e-3, fit_batches=fit, seed=seed, on_step=on_step
    )
    return codec, held


@functools.cache
def trained_rvq(seed: int = 0) -> tuple[Codec, np.ndarray]:
    """`train_rvq(seed)` once per test session: the codec and the held-out crops (also used by
    tests/codec/test_progressive.py and test_roi_rvq.py, which import it from here)."""
    return train_rvq(seed)


@pytest.fixture(scope="module")
def rvq_codec() -> tuple[Codec, np.ndarray]:
    """`trained_rvq()`: the codec and the held-out crops."""
    return trained_rvq()


def _payload_bits(data: bytes) -> int:
    """Bits of the file's streams (the range-coded indices), without the container."""
    _, streams = container.unpack(data)
    return 8 * sum(len(s) for s in streams)


def prefix_psnr_bits(codec: Codec, held: np.ndarray) -> dict[int, tuple[float, int]]:
    """{n: (mean PSNR in dB, payload bits)} of the held-out images coded with n RVQ stages,
    from real files (compress, decompress)."""
    out = {}
    for n in range(1, codec.runner.model.quantizer["num_stages"] + 1):
        files = codec.compress_batch(held, num_stages=n)
        decoded = np.stack([codec.decompress(f) for f in files]).astype(np.float64)
        mse = np.mean((decoded - held) ** 2, axis=(1, 2, 3))
        psnr = float(np.mean(10 * np.log10(255**2 / mse)))
        out[n] = (psnr, sum(_payload_bits(f) for f in files))
    return out


@pytest.mark.slow
def test_rvq_prefixes_trade_bits_for_quality(rvq_codec):
    """Each RVQ stage costs bits; the second buys ≥ 0.5 dB of PSNR on held-out pixels, the
    third does not cost more than 0.1 dB.

    The margins, from benchmarks/rvq_diagnose.py on seeds 0, 1, 2 (this test trains seed 0):
    the second stage added 0.98 / 1.05 / 0.92 dB (with the per-stage commitment it replaced:
    −0.03 / 1.12 / 1.16, the first seed's decoder ignoring all but the first stage). The third
    stage cannot add 0.5 dB at this size: after 300 steps the decoder given the *unquantized*
    latent is only 0.3–0.9 dB above the 2-stage code: the transforms, not the quantizer, bound
    the error (with the per-stage commitment, 900 steps raised that ceiling by 6 dB and the
    third stage still added only 0.4 dB). It added 0.41 / 0.30 / 0.23 dB then, but +0.06 dB
    on seed 0 with jax 0.10.2 and flax 0.12.8 (the second stage: +1.14 dB), the code unchanged:
    at 300 steps the third stage's gain is within what a library version moves, so it is only
    asked not to hurt by more than 0.1 dB. Deterministic on a given machine and version.
    """
    codec, held = rvq_codec
    prefixes = prefix_psnr_bits(codec, held)
    print("RVQ prefixes (stages: PSNR dB, payload bits):", prefixes)
    psnr = {n: p for n, (p, _) in prefixes.items()}
    bits = {n: b for n, (_, b) in prefixes.items()}
    assert psnr[2] >= psnr[1] + 0.5
    assert psnr[3] >= psnr[2] - 0.1
    assert bits[1] < bits[2] < bits[3]
    assert codec.compress(held[0]) == codec.compress(held[0], num_stages=3)  # all by default


@pytest.mark.slow
def test_entropy_coded_indices_carry_the_priors_information(rvq_codec):
    codec, held = rvq_codec
    files = codec.compress_batch(held)
    coded = sum(_payload_bits(f) for f in files)
    fixed = len(held) * (224 // 16) ** 2 * 3 * math.log2(64)  # S·log2 K per position
    forward = codec.forward(held)
    np.testing.assert_allclose(forward["aux"]["fixed_bits"].sum(), fixed, rtol=1e-6)
    information = float(forward["bits"]["indices"].sum())
    print(f"held-out: {coded} coded bits, {information:.0f} bits of information, {fixed:.0f} fixed")
    # The refit prior carries less information than the fixed-length code (27897 against 28224
    # bits with jax 0.10.2: a 300-step model's codes are close to uniform), and the coder
    # realises it up to its overhead per file (a map byte and a flushed word per stage stream:
    # with so little to gain, the files may end a few words above the fixed length).
    assert information <= fixed
    assert coded <= information + len(held) * (8 + 3 * 32)


@pytest.mark.slow
def test_runlocal_rvq_trains_exports_and_codes(tmp_path):
    config = load_config("rvq", "runlocal")
    result = train.train_and_evaluate(config, tmp_path)
    assert result["step"] == config.num_steps and result["compilations"] == 1
    assert result["eval"]["bpp"] > 0
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for key in ("usage", "perplexity", "dead_codes", "fixed_bpp", "aux_loss"):
        assert any(key in rec for rec in logged), key
    codec = Codec.load(tmp_path / "export")
    assert set(codec.model_state) == {"quantizer_state"}
    # The last checkpoint holds the same EMA codebooks as the export (the priors were refit
    # after it, the quantizer state was not).
    trainer = train.Trainer(config, tmp_path)
    manager = train.checkpoint_manager(tmp_path, config)
    data_it = train.make_train_iterator(config)
    state = checkpoint.restore_training(manager, config.num_steps, trainer.abstract_state, data_it)
    manager.close()
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(state.model_state), leaves(codec.model_state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), b)
    pixels = samples.sample_images()["chelsea"][:67, :131]
    data = codec.compress(pixels)
    _, x_hat = codec.decompress_float(data)
    np.testing.assert_array_equal(x_hat, codec.forward(pixels)["x_hat"][0])
    assert codec.decompress(data).shape == pixels.shape
