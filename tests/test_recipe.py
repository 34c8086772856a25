"""CompressAI's training recipe (`compressai` variant): its fields, the plateau schedule, and a
run of it that compiles once, logs the learning rate and resumes its schedule."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import SMALL, init_params

from nlq_jax import models, train
from nlq_jax.config_base import MS_SSIM_LAMBDAS, MSE_LAMBDAS, load_config

SCALAR_MODELS = ("factorized", "hyperprior", "mean_scale", "joint", "checkerboard", "channelwise")


@pytest.mark.parametrize("name", SCALAR_MODELS)
def test_compressai_variant_sets_the_recipe(name):
    c = load_config(f"{name}:quality=5,compressai")
    assert (c.data.batch_size, c.data.crop_size) == (16, 256)
    assert c.optimizer.learning_rate == 1e-4 and c.optimizer.warmup_steps == 0
    assert c.optimizer.grad_clip == 1.0
    assert c.optimizer.schedule == "plateau"
    assert (c.optimizer.plateau_factor, c.optimizer.plateau_patience) == (0.5, 20)
    assert c.num_steps == 5_000_000
    assert c.data.train == ""  # the user must name the training folder
    # The quality still sets CompressAI's (N, M) and λ.
    sizes = models.get_module(name).get_default_sizes(5)
    assert {k: c.model[k] for k in sizes} == sizes
    assert c.lmbda == MSE_LAMBDAS[4] and c.name == "q5-compressai"
    assert load_config(f"{name}:msssim,compressai").lmbda == MS_SSIM_LAMBDAS[2]
    # Without the variant, the defaults are unchanged.
    assert load_config(f"{name}:quality=5").optimizer.schedule == "cosine"


def test_unset_training_folder_is_a_one_line_error(tmp_path):
    config = load_config("hyperprior:compressai")
    with pytest.raises(train.TrainingError, match="config.data.train is not set") as info:
        train.train_and_evaluate(config, tmp_path)
    assert "\n" not in str(info.value) and "folder:" in str(info.value)


def test_plateau_compares_the_window_mean_and_waits_patience_windows():
    """make_optimizer's plateau: one comparison per window of plateau_every values."""
    config = load_config("hyperprior:compressai")
    with config.unlocked():
        config.optimizer.plateau_every, config.optimizer.plateau_patience = 3, 1
    opt = train.make_optimizer(config)
    params = {"w": jnp.zeros(3)}
    state = opt.init(params)
    scales = []
    # Windows of three values: means 3, 2 (better), 2 (not better: with patience 1, halve).
    for value in [3, 3, 3, 2, 2, 2, 2.5, 1.5, 2]:
        _, state = opt.update({"w": jnp.ones(3)}, state, params, value=value)
        scales.append(float(train.plateau_state(state).scale))
    assert scales == [1.0] * 8 + [0.5]


def test_plateau_step_halves_the_lr_after_patience_evaluations_and_compiles_once():
    config = load_config("hyperprior:runlocal,compressai")
    with config.unlocked():
        config.optimizer.plateau_every, config.optimizer.plateau_patience = 2, 2
    trainer = train.Trainer(config, "/tmp/unused")
    assert trainer.uses_heldout  # runlocal holds out a sample image
    state = trainer.init_state()
    x = np.random.default_rng(0).uniform(size=(4, 64, 64, 3)).astype(np.float32)
    # Held-out losses at the windows' ends (steps 1, 3, ...): better, better, then not better
    # twice (patience 2: halve at the second), better, not better twice (halve again).
    heldout = {1: 1.0, 3: 0.9, 5: 0.9, 7: 0.95, 9: 0.5, 11: 0.6, 13: 0.6}
    lrs = []
    for step in range(14):
        assert trainer.window_ends(step) == (step in heldout)
        # Values between the windows' ends are ignored (-100 would always be an improvement).
        value = heldout.get(step, -100.0)
        state, metrics = trainer.train_step(state, {"image": x}, jax.random.PRNGKey(0), value)
        lrs.append(float(metrics["lr"]))
    expected = [1e-4] * 7 + [5e-5] * 6 + [2.5e-5]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)
    assert trainer.trace_count == 1


def _records(workdir: Path, key: str) -> dict[int, float]:
    out = {}
    for line in (workdir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if key in rec:
            out[rec["step"]] = rec[key]
    return out


@pytest.mark.slow
def test_plateau_run_logs_lr_and_resumes_with_the_same_scale(tmp_path, capsys):
    def config(num_steps):
        c = load_config("hyperprior:runlocal,compressai")
        with c.unlocked():
            # A learning rate so small that the held-out loss never improves after the first
            # evaluation: with patience 1, the learning rate halves at every later one.
            c.optimizer.learning_rate = 1e-9
            c.optimizer.plateau_every, c.optimizer.plateau_patience = 2, 1
            c.num_steps, c.checkpoint_every, c.log_every = num_steps, 6, 1
            c.async_checkpoints = False
        return c

    first = train.train_and_evaluate(config(6), tmp_path)
    assert first["step"] == 6 and first["compilations"] == 1
    resumed = train.train_and_evaluate(config(10), tmp_path)
    assert resumed["step"] == 10 and resumed["compilations"] == 1
    err = capsys.readouterr().err
    assert "resumed from step 6" in err
    assert "plateau schedule: learning-rate scale 0.25" in err

    lr = _records(tmp_path, "lr")
    assert sorted(lr) == list(range(1, 11))
    scale = {1: 1, 2: 1, 3: 1, 4: 0.5, 5: 0.5, 6: 0.25, 7: 0.25, 8: 0.125, 9: 0.125, 10: 0.0625}
    for step, s in scale.items():
        assert lr[step] == pytest.approx(1e-9 * s, rel=1e-6), step
    heldout = _records(tmp_path, "heldout_loss")
    assert sorted(heldout) == [2, 4, 6, 8, 10]
    assert np.ptp(list(heldout.values())) < 1e-4 * heldout[2]


def test_joint_training_rate_is_that_of_a_second_noise_draw(monkeypatch):
    """As CompressAI's mbt2018: ỹ₁ = y + u₁ feeds the context model and g_s; the rate is
    −log2 P(y + u₂ − μ; σ) with an independent u₂ (GaussianConditional draws its own noise)."""
    from scipy.special import ndtr

    from nlq_jax.latent_codecs import autoregressive

    model = models.get_model("joint", **SMALL)
    variables = {"params": init_params("joint")}
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
    drawn = []

    def recording(value, mode, *args, **kwargs):
        out = quantize(value, mode, *args, **kwargs)
        if mode == "noise":
            drawn.append(np.asarray(out, np.float64))
        return out

    quantize = autoregressive.quantize
    monkeypatch.setattr(autoregressive, "quantize", recording)
    out, inter = model.apply(
        variables, x, training=True, rngs={"noise": jax.random.PRNGKey(1)},
        capture_intermediates=True, mutable=["intermediates"],
    )  # fmt: skip
    monkeypatch.undo()
    inter = inter["intermediates"]

    y = np.asarray(model.apply(variables, x, method=lambda m, x: m.analysis(x)), np.float64)
    assert len(drawn) == 2
    y1, y2 = drawn
    for y_noisy in (y1, y2):
        assert np.abs(y_noisy - y).max() <= 0.5 + 1e-5
    assert np.abs(y1 - y2).mean() > 0.1  # two independent draws (mean |u₁ − u₂| is 1/3)

    # The context model saw ỹ₁: (σ, μ) = e_p(h_s(ẑ), g_c(ỹ₁)), and x̂ = g_s(ỹ₁).
    hyper = inter["h_s"]["__call__"][0]
    params = np.asarray(inter["entropy_parameters"]["__call__"][0], np.float64)

    def from_context(m, y_tilde, hyper):
        ctx = m.context_prediction(y_tilde)
        return m.entropy_parameters(jnp.concatenate([hyper, ctx], -1)), m.g_s(y_tilde)

    y1_32 = y1.astype(np.float32)
    again, x_hat = model.apply(variables, y1_32, hyper, method=from_context)
    np.testing.assert_allclose(again, params, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_hat, out["x_hat"], rtol=1e-5, atol=1e-6)

    M = SMALL["M"]

    def bits(y_tilde):  # CompressAI's _likelihood with its scale and likelihood bounds
        scales, means = np.maximum(params[..., :M], 0.11), params[..., M:]
        v = np.abs(y_tilde - means)
        p = np.maximum(ndtr((0.5 - v) / scales) - ndtr((-0.5 - v) / scales), 1e-9)
        return -np.log2(p).reshape(len(p), -1).sum(-1)

    np.testing.assert_allclose(out["bits"]["y"], bits(y2), rtol=1e-4)
    assert np.abs(bits(y1) / bits(y2) - 1).max() > 1e-3  # not the rate of ỹ₁
