"""The trainer's pluggable parts: the objective (frozen distortion parameters, an adversary
with its own optimizer), evaluators and report writers by name, model hooks, the logger."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nlq_jax import checkpoint, losses, models, train
from nlq_jax.config_base import load_config
from nlq_jax.domains import Domain


class TanhFeatures(losses.Distortion):
    """A test-only distortion: the mean squared distance of fixed random features
    tanh(x·W) (a 1×1 convolution, 3 → 8 channels), W frozen."""

    def init(self, rng, sample):
        return {"w": jax.random.normal(rng, (sample.shape[-1], 8), jnp.float32)}

    def __call__(self, params, x, x_hat):
        f = lambda v: jnp.tanh(v @ params["w"])  # noqa: E731
        d = jnp.mean(jnp.square(f(x) - f(x_hat)), axis=(1, 2, 3))
        return d, {"feature_distance": jnp.mean(d)}


def _small_config(**fields):
    """factorized, 32² crops, batch 2: a step compiles and runs in seconds."""
    config = load_config("factorized:runlocal")
    with config.unlocked():
        config.data.crop_size, config.data.batch_size = 32, 2
        config.optimizer.learning_rate = 1e-3
        config.eval.source, config.image_every = "", 0
        for key, value in fields.items():
            target = config
            *path, last = key.split(".")
            for part in path:
                target = target[part]
            target[last] = value
    return config


def _batch(seed=0, size=32, n=2):
    x = np.random.default_rng(seed).uniform(size=(n, size, size, 3)).astype(np.float32)
    return {"image": (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3}


def _copy(tree):
    return jax.tree_util.tree_map(jnp.array, tree)  # the step donates its input state


def test_default_objective_is_the_rate_distortion_loss_in_numpy():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(2, 16, 32, 3)).astype(np.float32)
    noise = rng.normal(0, 0.05, x.shape).astype(np.float32)
    out = {"x_hat": jnp.asarray(x + noise), "bits": {"y": jnp.array([1000.0, 2000.0])}}
    config = _small_config(lmbda=0.0130)
    objective = losses.make_objective(config)
    loss, m = objective(jnp.asarray(x), out, objective.init(jax.random.PRNGKey(0), x[:1]))
    mse = np.mean(noise.astype(np.float64) ** 2, axis=(1, 2, 3))
    expected = np.mean(0.0130 * 255**2 * mse + np.array([1000.0, 2000.0]) / (16 * 32))
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    assert objective.adversary is None and "adversary/generator" not in m


def test_rate_is_divided_by_the_domains_units():
    """A 1-D domain (one spatial axis): bits per sample, not per H·W."""
    line = Domain("line", 99, "signal", "bps", spatial_axes=(1,), channels=(1,))
    x = jnp.zeros((2, 40, 1))
    out = {"x_hat": x, "bits": {"y": jnp.array([80.0, 120.0])}}
    loss, m = losses.Objective(0.01, "mse", line)(x, out)
    np.testing.assert_allclose(float(m["bps"]), (2.0 + 3.0) / 2, rtol=1e-6)
    np.testing.assert_allclose(float(loss), 2.5, rtol=1e-6)
    assert "bpp" not in m


def test_frozen_distortion_parameters_are_a_step_argument(monkeypatch):
    monkeypatch.setitem(losses.DISTORTIONS, "tanh-features", TanhFeatures)
    trainer = train.Trainer(_small_config(distortion="tanh-features", lmbda=1.0), "/tmp/unused")
    w = np.asarray(trainer.objective_vars["distortion"]["w"])
    assert w.shape == (3, 8) and np.abs(w).sum() > 0
    state = trainer.init_state()
    batch = _batch()
    key = jax.random.PRNGKey(0)

    # The logged distance is the numpy one of the step's own forward.
    variables = {"params": state.params, **state.model_state}
    noise = jax.random.fold_in(key, 0)  # the step folds its key with the step number
    rngs = {"noise": noise, "quantizer": jax.random.fold_in(noise, 1)}
    x_hat = np.asarray(
        trainer.model.apply(variables, batch["image"], training=True, rngs=rngs)["x_hat"]
    )
    feats = lambda v: np.tanh(v.astype(np.float64) @ w)  # noqa: E731
    expected = np.mean((feats(batch["image"]) - feats(x_hat)) ** 2)

    _, metrics = trainer.train_step(_copy(state), batch, key)
    np.testing.assert_allclose(float(metrics["feature_distance"]), expected, rtol=1e-4)
    # Other frozen values: another loss, the same compiled step.
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, trainer.objective_vars)
    _, other = trainer.train_step(_copy(state), batch, key, objective_vars=doubled)
    assert float(other["feature_distance"]) != pytest.approx(float(metrics["feature_distance"]))
    for _ in range(3):
        state, metrics = trainer.train_step(state, batch, key)
    assert trainer.trace_count == 1
    assert np.isfinite(float(metrics["loss"]))


def test_adversary_has_its_own_optimizer_and_the_codec_still_trains():
    config = _small_config(**{
        "adversary.name": "patch", "adversary.features": (4, 8), "adversary.weight": 0.01,
        "adversary.learning_rate": 1e-3,
    })  # fmt: skip
    trainer = train.Trainer(config, "/tmp/unused")
    state = trainer.init_state()
    assert isinstance(state, train.AdversarialTrainState)
    batch = _batch()
    before = jax.device_get(state.adversary_params)
    losses_, d_params = [], [before]
    for _ in range(15):
        state, metrics = trainer.train_step(state, batch, jax.random.PRNGKey(0))
        losses_.append(float(metrics["loss"]) - 0.01 * float(metrics["adversary/generator"]))
        d_params.append(jax.device_get(state.adversary_params))
    assert trainer.trace_count == 1
    for key in ("adversary/loss", "adversary/real", "adversary/fake", "adversary/generator"):
        assert np.isfinite(float(metrics[key])), key
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(d_params, d_params[1:]):  # the discriminator moves at every step
        assert any(not np.array_equal(u, v) for u, v in zip(leaves(a), leaves(b)))
    assert np.mean(losses_[-3:]) < 0.9 * np.mean(losses_[:3])  # the R–D part still falls


def test_generator_loss_reaches_the_codec_weighted():
    net = losses.PatchDiscriminator(features=(4,))
    adversary = losses.Adversary(net, optax.adam(1e-3), weight=0.5)
    objective = losses.Objective(0.01, "mse", adversary=adversary)
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(2, 16, 16, 3)), jnp.float32)
    d_params = adversary.init(jax.random.PRNGKey(0), x)
    out = {"x_hat": x * 0.9, "bits": {"y": jnp.array([10.0, 20.0])}}
    plain, _ = objective(x, out, {"distortion": {}})
    loss, m = objective(x, out, {"distortion": {}, "adversary": d_params})
    logits = net.apply({"params": d_params}, x * 0.9)
    np.testing.assert_allclose(float(m["adversary/generator"]), -float(jnp.mean(logits)))
    np.testing.assert_allclose(float(loss), float(plain) - 0.5 * float(jnp.mean(logits)), 1e-5)

    def codec_loss(scale):
        return objective(x, out | {"x_hat": x * scale}, {"adversary": d_params})[0]

    def rd_loss(scale):
        return objective(x, out | {"x_hat": x * scale}, {})[0]

    assert float(jax.grad(codec_loss)(0.9)) != pytest.approx(float(jax.grad(rd_loss)(0.9)))


def test_evaluators_and_report_writers_are_chosen_by_name():
    from nlq_jax.evaluation import report

    config = load_config("hyperprior:runlocal,compressai")  # plateau, held-out samples
    images = train.eval_set(config)
    both = train.make_evaluators(train.Trainer(config, "/tmp/unused"), images)
    assert set(both) == {"heldout_loss", "codec"}
    with config.unlocked():
        config.evaluators = ("codec",)
    trainer = train.Trainer(config, "/tmp/unused")
    assert not trainer.uses_heldout  # the plateau watches the training loss instead
    assert set(train.make_evaluators(trainer, images)) == {"codec"}
    assert train.make_evaluators(trainer, []) == {}  # nothing to evaluate the codec on
    with config.unlocked():
        config.evaluators = ("codec", "fid")
    with pytest.raises(ValueError, match="unknown evaluator"):
        train.make_evaluators(trainer, images)
    assert report.get_writer("baselines") is report.write_report
    with pytest.raises(ValueError, match="baselines"):
        report.get_writer("html")


def test_model_hooks_come_from_exports_or_a_declaration():
    end = train.training_hooks(models.get_module("nlq"))["end"]
    assert end == (train._refit_priors_at_end,)
    assert train.training_hooks(models.get_module("hyperprior")) == {}

    def hook(trainer, state, batches, info):
        return state

    declared = type("Module", (), {"TRAINING_HOOKS": {"end": hook}, "fit_priors": len})
    assert train.training_hooks(declared) == {"end": (hook,)}  # the declaration wins
    with pytest.raises(ValueError, match="phase"):
        train.training_hooks(type("Module", (), {"TRAINING_HOOKS": {"start": hook}}))


def test_adversarial_run_checkpoints_resumes_and_runs_its_hooks(tmp_path, monkeypatch, capsys):
    calls = []

    def hook(trainer, state, batches, info):
        batch = next(batches)
        calls.append((int(state.step), batch["image"].shape))
        info("test hook ran")
        return state

    # Every model module exports get_default_sizes: the hook applies to factorized.
    monkeypatch.setitem(train.HOOKS_BY_EXPORT, "get_default_sizes", {"end": hook})
    config = _small_config(**{
        "adversary.name": "patch", "adversary.features": (4,), "adversary.weight": 0.01,
        "num_steps": 2, "checkpoint_every": 1, "log_every": 1, "async_checkpoints": False,
    })  # fmt: skip
    result = train.train_and_evaluate(config, tmp_path)
    assert result["step"] == 2 and calls == [(2, (2, 32, 32, 3))]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    assert all("adversary/loss" in rec for rec in logged if "loss" in rec)

    trainer = train.Trainer(config, tmp_path)
    manager = train.checkpoint_manager(tmp_path, config)
    data_it = train.make_train_iterator(config)
    state = checkpoint.restore_training(manager, 2, trainer.abstract_state, data_it)
    manager.close()
    assert isinstance(state, train.AdversarialTrainState)
    fresh = trainer.init_state()
    leaves = jax.tree_util.tree_leaves
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(leaves(state.adversary_params), leaves(fresh.adversary_params))
    )
    with config.unlocked():
        config.num_steps = 3
    capsys.readouterr()
    assert train.train_and_evaluate(config, tmp_path)["step"] == 3
    assert "resumed from step 2" in capsys.readouterr().err


def test_logger_takes_arrays(tmp_path):
    from nlq_jax.logging_utils import Logger

    logger = Logger(tmp_path)
    original = np.zeros((40, 30, 3), np.uint8)
    logger.reconstruction(7, original, np.full((32, 30, 3), 255, np.uint8))
    logger.scalars(7, {"loss": 1.5})
    logger.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 7, "loss": 1.5}
    assert any((tmp_path / "tb").iterdir())
