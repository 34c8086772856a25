"""The trainer: rate–distortion training from a config, on one CPU or many hosts.

Reads top to bottom: mesh, input, model and optimizer, shardings and state, step, checkpoints,
evaluation, loop. `train_and_evaluate(config, workdir)` is all `main.py` calls.

- The step is one pure function `(state, batch, rng) -> (state, metrics)`, jitted once with
  explicit `NamedSharding`s over a 1-D "data" mesh, the state donated, the rng folded with the
  step number (so a resumed run draws the same noise as an uninterrupted one).
- Orbax's `CheckpointManager` saves the train state and the data iterator together, every
  `checkpoint_every` steps (asynchronously); a run restarts from its workdir without flags.
- A non-finite loss stops the run at once, naming the step; nothing after the last good
  checkpoint is saved.
- At the end the model is exported with its coding tables (`workdir/export`), ready for
  `nlq compress`, and evaluated with real bitstreams on held-out images.
- Discrete models refit their categorical priors to the codes of `prior_fit_batches`
  training batches before the export (closed form; see `nlq_jax.models.nlq.fit_priors`).
- Variable collections other than "params" (e.g. the EMA codebooks of vector quantizers in
  "quantizer_state") are `TrainState.model_state`: mutable in the step, not differentiated,
  checkpointed and exported with the parameters. Models without any have `model_state = {}`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nlq_jax import losses, models, sharding
from nlq_jax.errors import NLQError


class TrainingError(NLQError):
    """Training cannot go on (a non-finite loss, a data source without usable images)."""


@flax.struct.dataclass
class TrainState:
    """What a step updates: `params` by the optimizer, `model_state` (the model's other
    variable collections, {} for most models) by the forward itself."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any = flax.struct.field(default_factory=dict)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with optional warm-up/cosine decay and global-norm clipping, from `config.optimizer`."""
    oc = config.optimizer
    warmup = min(oc.warmup_steps, config.num_steps // 2)
    if oc.schedule == "constant":
        lr = optax.linear_schedule(0.0, oc.learning_rate, warmup) if warmup else oc.learning_rate
    elif oc.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0, oc.learning_rate, warmup, max(warmup + 1, config.num_steps),
            end_value=oc.learning_rate * oc.final_lr_fraction,
        )  # fmt: skip
    else:
        raise ValueError(f"unknown schedule {oc.schedule!r}; use 'constant' or 'cosine'")
    parts = [optax.clip_by_global_norm(oc.grad_clip)] if oc.grad_clip > 0 else []
    return optax.chain(*parts, optax.adam(lr, b1=oc.b1, b2=oc.b2))


def model_kwargs(config: ml_collections.ConfigDict) -> dict:
    """The model's constructor arguments: `config.model` minus its name."""
    kwargs = config.model.to_dict()
    kwargs.pop("name")
    return kwargs


class Trainer:
    """Holds the mesh, model, compiled step and checkpoint manager of one run."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: str | os.PathLike):
        self.config = config
        self.workdir = Path(workdir).absolute()
        self.is_main = jax.process_index() == 0
        self.trace_count = 0  # how many times the step was traced (compiled): must stay 1

        # Mesh.
        self.mesh = sharding.make_mesh()
        n = self.mesh.devices.size
        if config.data.batch_size % n:
            raise TrainingError(
                f"batch_size {config.data.batch_size} is not divisible by the {n} devices"
            )

        # Model and optimizer.
        self.model = models.get_model(config.model.name, **model_kwargs(config))
        self.optimizer = make_optimizer(config)

        # Shardings and state: created already sharded.
        crop = config.data.crop_size
        if crop % self.model.stride:
            raise TrainingError(f"crop_size {crop} must be a multiple of {self.model.stride}")
        sample = jnp.zeros((1, crop, crop, 3), jnp.float32)

        def init(rng):
            p_rng, n_rng = jax.random.split(rng)
            rngs = {"params": p_rng, "noise": n_rng, "quantizer": jax.random.fold_in(n_rng, 1)}
            variables = dict(self.model.init(rngs, sample, training=True))
            params = variables.pop("params")
            return TrainState(
                jnp.zeros((), jnp.int32), params, self.optimizer.init(params), variables
            )

        abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
        self.state_sharding = sharding.state_shardings(abstract, self.mesh, config.sharding.fsdp)
        self._init = jax.jit(init, out_shardings=self.state_sharding)
        self.abstract_state = jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract,
            self.state_sharding,
        )

        # Step.
        self.train_step = jax.jit(
            self._train_step,
            in_shardings=(
                self.state_sharding,
                sharding.batch_sharding(self.mesh),
                sharding.replicated(self.mesh),
            ),
            out_shardings=(self.state_sharding, sharding.replicated(self.mesh)),
            donate_argnums=(0,),
        )

    def init_state(self) -> TrainState:
        return self._init(jax.random.PRNGKey(self.config.seed))

    def _train_step(self, state: TrainState, batch: dict, rng: jax.Array):
        self.trace_count += 1  # runs at trace time only
        config = self.config
        rng = jax.random.fold_in(rng, state.step)
        x = batch["image"]

        def loss_fn(params):
            out, model_state = self.model.apply(
                {"params": params, **state.model_state},
                x,
                training=True,
                rngs={"noise": rng, "quantizer": jax.random.fold_in(rng, 1)},
                mutable=list(state.model_state),
            )
            loss, metrics = losses.rate_distortion_loss(x, out, config.lmbda, config.distortion)
            if config.debug_inject_nan_at >= 0:  # testing hook (see the config's comment)
                loss = loss + jnp.where(state.step == config.debug_inject_nan_at, jnp.nan, 0.0)
                metrics["loss"] = loss
            return loss, (metrics, model_state)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (_, (metrics, model_state)), grads = grad_fn(state.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        model_state = {**state.model_state, **model_state}
        return TrainState(state.step + 1, params, opt_state, model_state), metrics


def refit_priors(trainer: Trainer, state: TrainState, batches) -> TrainState:
    """`state` with the model's categorical priors refit to the codes of `batches` (global
    batches), for models whose module has `fit_priors` (discrete latents); else `state`.

    The code counts are summed by a jitted function over the global batches, so every process
    computes the same fit.
    """
    module = models.get_module(trainer.config.model.name)
    if not hasattr(module, "fit_priors"):
        return state
    count = jax.jit(functools.partial(trainer.model.apply, method="index_counts"))
    variables = {"params": state.params, **state.model_state}
    total = None
    for batch in batches:
        counts = count(variables, batch["image"])
        total = counts if total is None else jax.tree_util.tree_map(jnp.add, total, counts)
    if total is None:
        return state
    params = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))
    return state.replace(params=module.fit_priors(trainer.model, params, jax.device_get(total)))


def _checkpoint_manager(workdir: Path, config):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep_checkpoints,
        enable_async_checkpointing=config.async_checkpoints,
    )
    return ocp.CheckpointManager(workdir / "checkpoints", options=options)


def _save(manager, step: int, state: TrainState, data_it) -> None:
    import grain
    import orbax.checkpoint as ocp

    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_it)
        ),
    )


def _restore(manager, step: int, abstract_state, data_it) -> TrainState:
    import grain
    import orbax.checkpoint as ocp

    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            data=grain.checkpoint.CheckpointRestore(data_it),
        ),
    )
    return restored.state


def make_train_iterator(config):
    """The training batches of this process (a checkpointable grain iterator)."""
    from nlq_jax.data import make_source, train_pipeline

    dc = config.data
    per_process = dc.batch_size // jax.process_count()
    source = make_source(dc.train, **_source_kwargs(dc.train, dc.train_exclude))
    return iter(
        train_pipeline(
            source,
            crop_size=dc.crop_size,
            batch_size=per_process,
            seed=config.seed,
            small=dc.small,
            worker_count=dc.worker_count,
        )
    )


def _source_kwargs(spec: str, names: str) -> dict:
    """`names` (comma-separated) as the sample source's exclude/names argument."""
    if not names:
        return {}
    return {"exclude": [n for n in names.split(",") if n]} if spec == "samples" else {}


def eval_set(config) -> list[tuple[str, np.ndarray]]:
    """The held-out images evaluated with real bitstreams (name, uint8 H×W×3)."""
    from nlq_jax.data import eval_images, make_source

    ec = config.eval
    if not ec.source:
        return []
    kwargs = {"names": [n for n in ec.names.split(",") if n]} if ec.names else {}
    images = list(eval_images(make_source(ec.source, **kwargs)))
    return images[: ec.max_images] if ec.max_images > 0 else images


def evaluate_codec(codec, images: list[tuple[str, np.ndarray]]) -> dict[str, float]:
    """Mean bpp (real bytes), PSNR, MS-SSIM and times of `codec` on held-out images."""
    from nlq_jax.evaluation.report import evaluate_arrays

    if not images:
        return {}
    results = evaluate_arrays(codec, images, codec.name)["results"]
    return {k: v[0] for k, v in results.items() if v[0] is not None}


def _codec(trainer: Trainer, state: TrainState, label: str):
    from nlq_jax.codec.api import Codec

    params = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))
    model_state = jax.tree_util.tree_map(np.asarray, jax.device_get(state.model_state))
    return Codec(
        trainer.config.model.name, model_kwargs(trainer.config), params, label=label,
        model_state=model_state,
    )  # fmt: skip


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> dict:
    """Trains (resuming from `workdir` if it holds checkpoints), exports and evaluates.

    Returns:
      The final step, the number of step compilations (1 unless something is wrong) and the
      held-out evaluation with real bitstreams; also written to `workdir/metrics.json`.
    """
    from nlq_jax.logging_utils import Logger

    sharding.initialize_distributed()
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    trainer = Trainer(config, workdir)
    logger = Logger(workdir, enabled=trainer.is_main)
    if trainer.is_main:
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2) + "\n")

    # Input.
    data_it = make_train_iterator(config)
    holdout = eval_set(config)

    # Checkpoints: resume if there are any.
    manager = _checkpoint_manager(workdir, config)
    latest = manager.latest_step()
    if latest is not None:
        state = _restore(manager, latest, trainer.abstract_state, data_it)
        logger.info(f"resumed from step {latest} in {workdir / 'checkpoints'}")
    else:
        state = trainer.init_state()
    start = int(jax.device_get(state.step))
    rng = jax.random.PRNGKey(config.seed + 1)

    # Loop.
    bar = logger.progress(start, config.num_steps)
    t_last, s_last = time.perf_counter(), start
    try:
        for step in range(start, config.num_steps):
            batch = sharding.global_batch(next(data_it), trainer.mesh)
            state, metrics = trainer.train_step(state, batch, rng)
            metrics = jax.device_get(metrics)
            if not np.isfinite(metrics["loss"]):
                manager.wait_until_finished()
                good = manager.latest_step()
                where = f"step {good} in {workdir / 'checkpoints'}" if good is not None else "none"
                raise TrainingError(
                    f"the loss became {metrics['loss']} at step {step}; stopped. "
                    f"Last good checkpoint: {where}"
                )
            done = step + 1
            bar.update(metrics)
            if done % config.log_every == 0 or done == config.num_steps:
                now = time.perf_counter()
                rate = (done - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, done
                logger.scalars(
                    done,
                    {k: float(v) for k, v in metrics.items()}
                    | {"steps_per_s": rate, "images_per_s": rate * config.data.batch_size}
                    | {f"data/{k}": v for k, v in data_it.stats.as_dict().items()},
                )
            if config.image_every and done % config.image_every == 0:
                logger.reconstruction(done, trainer, state, holdout)
            if done % config.checkpoint_every == 0 or done == config.num_steps:
                _save(manager, done, state, data_it)
            if config.eval_every and done % config.eval_every == 0 and done < config.num_steps:
                means = evaluate_codec(_codec(trainer, state, f"step{done}"), holdout)
                logger.scalars(done, {f"eval/{k}": v for k, v in means.items()})
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()

    n = config.get("prior_fit_batches", 0)
    if n and hasattr(models.get_module(config.model.name), "fit_priors"):
        batches = (sharding.global_batch(next(data_it), trainer.mesh) for _ in range(n))
        state = refit_priors(trainer, state, batches)
        logger.info(f"refit the categorical priors to the codes of {n} training batches")

    # Export and final evaluation with real bitstreams.
    label = f"{config.model.name}-{config.name}" if config.get("name") else config.model.name
    codec = _codec(trainer, state, label)
    result = {"step": int(jax.device_get(state.step)), "compilations": trainer.trace_count}
    codec.save(workdir / "export")  # every process: Orbax's save is a collective
    if trainer.is_main:
        result["eval"] = evaluate_codec(codec, holdout)
        if result["eval"]:
            logger.scalars(result["step"], {f"eval/{k}": v for k, v in result["eval"].items()})
            logger.info(
                f"held-out images: {result['eval']['bpp']:.4f} bpp, "
                f"{result['eval']['psnr-rgb']:.2f} dB PSNR (real bitstreams)"
            )
        if config.report and holdout:
            from nlq_jax.evaluation.report import write_report

            result["report"] = write_report(workdir, codec, holdout, result, config)
        (workdir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    logger.close()
    return result
