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
- `optimizer.schedule = "plateau"` (CompressAI's recipe): a constant learning rate, multiplied by
  `plateau_factor` when the held-out loss has not improved for `plateau_patience` evaluations
  (`optax.contrib.reduce_on_plateau`, whose state is part of the optimizer state, so it is
  checkpointed and resumed with the run). See `make_optimizer` and `HeldOutLoss`.
- The objective is `losses.make_objective(config, domain)`: the step calls it and nothing else
  about the loss; its frozen variables (a distortion's fixed network) are an argument of the
  step; an adversary (`config.adversary`, a discriminator) has its parameters and optimizer
  state in `AdversarialTrainState` and is updated in the same step, after the codec.
- The model's domain (`nlq_jax.domains`) names the batch key, the init sample and the rate's
  units. Evaluators (`config.evaluators`, `EVALUATORS`) and the report writer
  (`config.report_writer`) are chosen by name.
- Model-specific steps are hooks (`training_hooks`): discrete models refit their categorical
  priors to the codes of `prior_fit_batches` training batches before the export (closed form;
  see `nlq_jax.models.nlq.fit_priors`).
- Variable collections other than "params" (e.g. the EMA codebooks of vector quantizers in
  "quantizer_state") are `TrainState.model_state`: mutable in the step, not differentiated,
  checkpointed and exported with the parameters. Models without any have `model_state = {}`.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nlq_jax import checkpoint, losses, models, sharding
from nlq_jax.domains import get_domain
from nlq_jax.errors import TrainingError


@flax.struct.dataclass
class TrainState:
    """What a step updates: `params` by the optimizer, `model_state` (the model's other
    variable collections, {} for most models) by the forward itself."""

    step: jax.Array
    params: Any
    opt_state: Any
    model_state: Any = flax.struct.field(default_factory=dict)


@flax.struct.dataclass
class AdversarialTrainState(TrainState):
    """A `TrainState` with the objective's adversary: its parameters and its own optimizer's
    state (used only when `config.adversary` names one, so other runs' checkpoints keep the
    plain state's layout)."""

    adversary_params: Any = None
    adversary_opt_state: Any = None


SCHEDULES = ("constant", "cosine", "plateau")


def learning_rate(config: ml_collections.ConfigDict) -> float | optax.Schedule:
    """The base learning rate (a float, or a function of the step) from `config.optimizer`.

    "constant" and "plateau": a linear warm-up over `warmup_steps` (if any), then the peak;
    "cosine": warm-up, then a cosine decay to `final_lr_fraction` of the peak at `num_steps`.
    The plateau schedule's reductions multiply this (see `make_optimizer`).
    """
    oc = config.optimizer
    warmup = min(oc.warmup_steps, config.num_steps // 2)
    if oc.schedule in ("constant", "plateau"):
        return optax.linear_schedule(0.0, oc.learning_rate, warmup) if warmup else oc.learning_rate
    if oc.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0, oc.learning_rate, warmup, max(warmup + 1, config.num_steps),
            end_value=oc.learning_rate * oc.final_lr_fraction,
        )  # fmt: skip
    raise ValueError(f"unknown schedule {oc.schedule!r}; use one of {', '.join(SCHEDULES)}")


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """Adam with global-norm clipping and the schedule of `config.optimizer`.

    "plateau" chains `optax.contrib.reduce_on_plateau` after Adam: its `update` takes the
    monitored loss as `value=`, averages it over `plateau_every` steps, and at the end of each
    such window compares the mean with the best so far; after `plateau_patience` windows in a
    row without a relative improvement of `plateau_rtol`, the updates (so the learning rate)
    are multiplied by `plateau_factor`, down to `plateau_min_lr` (PyTorch's ReduceLROnPlateau,
    as CompressAI's examples/train.py uses it). `Trainer._train_step` feeds the value.
    """
    oc = config.optimizer
    lr = learning_rate(config)
    parts = [optax.clip_by_global_norm(oc.grad_clip)] if oc.grad_clip > 0 else []
    parts.append(optax.adam(lr, b1=oc.b1, b2=oc.b2))
    if oc.schedule == "plateau":
        if oc.plateau_every < 1 or oc.plateau_patience < 1:
            raise ValueError("plateau_every and plateau_patience must be at least 1")
        parts.append(
            optax.contrib.reduce_on_plateau(
                factor=oc.plateau_factor,
                patience=oc.plateau_patience,
                rtol=oc.plateau_rtol,
                accumulation_size=oc.plateau_every,
                min_scale=oc.plateau_min_lr / oc.learning_rate if oc.learning_rate else 0.0,
            )
        )
    return optax.chain(*parts)


def plateau_state(opt_state: Any) -> optax.contrib.ReduceLROnPlateauState | None:
    """The reduce-on-plateau part of an optimizer state (None for the other schedules)."""
    is_plateau = lambda s: isinstance(s, optax.contrib.ReduceLROnPlateauState)  # noqa: E731
    for leaf in jax.tree_util.tree_leaves(opt_state, is_leaf=is_plateau):
        if is_plateau(leaf):
            return leaf
    return None


def model_kwargs(config: ml_collections.ConfigDict) -> dict:
    """The model's constructor arguments: `config.model` minus its name (an older config's flat
    quantizer fields as the `quantizer` sub-dict, `quantizers.from_legacy_kwargs`)."""
    from nlq_jax import quantizers

    kwargs = config.model.to_dict()
    name = kwargs.pop("name")
    return quantizers.from_legacy_kwargs(name, kwargs)


def _comparable(kwargs: dict) -> dict:
    """Model kwargs with JSON's lists as tuples, nested dicts included, for comparing."""

    def fix(value):
        if isinstance(value, (list, tuple)):
            return tuple(fix(v) for v in value)
        if isinstance(value, dict) or hasattr(value, "items"):
            return {k: fix(v) for k, v in dict(value).items()}
        return value

    return {k: fix(v) for k, v in kwargs.items()}


class Trainer:
    """Holds the mesh, model, compiled step and checkpoint manager of one run."""

    def __init__(
        self,
        config: ml_collections.ConfigDict,
        workdir: str | os.PathLike,
        objective: losses.Objective | None = None,
    ):
        """Builds the run's parts; `objective` replaces the config's (`losses.make_objective`)."""
        self.config = config
        self.workdir = Path(workdir).absolute()
        self.is_main = jax.process_index() == 0
        self.trace_count = 0  # how many times the step was traced (compiled): must stay 1

        # Model, its domain and the objective.
        self.model = models.get_model(config.model.name, **model_kwargs(config))
        self.domain = get_domain(getattr(self.model, "domain", "image"))
        self.objective = objective or losses.make_objective(config, self.domain)
        distortion = self.objective.distortion
        if config.data.crop_size < distortion.min_side:
            raise TrainingError(
                f"the {distortion.label or config.distortion} distortion needs crops of at least "
                f"{distortion.min_side} pixels, got data.crop_size={config.data.crop_size}"
            )

        # Mesh.
        self.mesh = sharding.make_mesh()
        n = self.mesh.devices.size
        if config.data.batch_size % n:
            raise TrainingError(
                f"batch_size {config.data.batch_size} is not divisible by the {n} devices"
            )

        # Optimizer.
        self.optimizer = make_optimizer(config)
        self.learning_rate = learning_rate(config)
        # The plateau schedule monitors the held-out loss when there are held-out images
        # (`eval.source`), else the mean training loss over each window of `plateau_every` steps.
        self.plateau = config.optimizer.schedule == "plateau"
        evaluators = config.get("evaluators", tuple(EVALUATORS))
        self.uses_heldout = (
            self.plateau and bool(config.eval.source) and "heldout_loss" in evaluators
        )

        # Shardings and state: created already sharded.
        crop = config.data.crop_size
        if crop % self.model.stride:
            raise TrainingError(f"crop_size {crop} must be a multiple of {self.model.stride}")
        sample = jnp.asarray(self.domain.sample(crop))
        adversary = self.objective.adversary

        def init(rng):
            p_rng, n_rng = jax.random.split(rng)
            rngs = {"params": p_rng, "noise": n_rng, "quantizer": jax.random.fold_in(n_rng, 1)}
            variables = dict(self.model.init(rngs, sample, training=True))
            params = variables.pop("params")
            step, opt_state = jnp.zeros((), jnp.int32), self.optimizer.init(params)
            if adversary is None:
                return TrainState(step, params, opt_state, variables)
            a_params = adversary.init(jax.random.fold_in(rng, 2), sample)
            return AdversarialTrainState(
                step, params, opt_state, variables, a_params, adversary.optimizer.init(a_params)
            )

        abstract = jax.eval_shape(init, jax.random.PRNGKey(0))
        self.state_sharding = sharding.state_shardings(abstract, self.mesh, config.sharding.fsdp)
        self._init = jax.jit(init, out_shardings=self.state_sharding)
        self.abstract_state = jax.tree_util.tree_map(
            lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
            abstract,
            self.state_sharding,
        )

        # The objective's frozen variables: created once, replicated, passed to every step.
        replicated = sharding.replicated(self.mesh)
        key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 3)
        self.objective_vars = jax.jit(self.objective.init, out_shardings=replicated)(key, sample)

        # Step.
        self._step = jax.jit(
            self._train_step,
            in_shardings=(
                self.state_sharding, sharding.batch_sharding(self.mesh), replicated, replicated,
                replicated,
            ),
            out_shardings=(self.state_sharding, replicated),
            donate_argnums=(0,),
        )  # fmt: skip

    def init_state(self) -> TrainState:
        return self._init(jax.random.PRNGKey(self.config.seed))

    def train_step(
        self,
        state: TrainState,
        batch: dict,
        rng: jax.Array,
        heldout: float = 0.0,
        objective_vars: Any = None,
    ) -> tuple[TrainState, dict]:
        """One optimizer step (compiled once): `(state, metrics)`.

        `heldout` is the held-out loss for the plateau schedule, read only at the last step of
        each window of `plateau_every` steps (`window_ends(state.step)`); any value elsewhere.
        `objective_vars` replaces the objective's frozen variables (`self.objective_vars`,
        the default), without a recompilation.
        """
        if objective_vars is None:
            objective_vars = self.objective_vars
        return self._step(state, batch, rng, np.float32(heldout), objective_vars)

    def window_ends(self, step: int) -> bool:
        """Whether the step from `step` to `step + 1` ends a plateau window: the one at which
        the held-out loss must be passed to `train_step` (always False for other schedules)."""
        return self.uses_heldout and (step + 1) % self.config.optimizer.plateau_every == 0

    def _train_step(self, state, batch: dict, rng: jax.Array, heldout: jax.Array, frozen: Any):
        self.trace_count += 1  # runs at trace time only
        config = self.config
        rng = jax.random.fold_in(rng, state.step)
        x = batch[self.domain.batch_key]
        adversary = self.objective.adversary
        objective_vars = dict(frozen)
        if adversary is not None:  # the discriminator as it is before this step, held fixed
            objective_vars["adversary"] = state.adversary_params

        def loss_fn(params):
            out, model_state = self.model.apply(
                {"params": params, **state.model_state},
                x,
                training=True,
                rngs={"noise": rng, "quantizer": jax.random.fold_in(rng, 1)},
                mutable=list(state.model_state),
            )
            loss, metrics = self.objective(x, out, objective_vars)
            if config.debug_inject_nan_at >= 0:  # testing hook (see the config's comment)
                loss = loss + jnp.where(state.step == config.debug_inject_nan_at, jnp.nan, 0.0)
                metrics["loss"] = loss
            return loss, (metrics, model_state, out["x_hat"])

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, model_state, x_hat)), grads = grad_fn(state.params)
        extra = {}
        if self.uses_heldout:
            # reduce_on_plateau compares the mean of `value` over each window of plateau_every
            # steps (its count runs with state.step). The held-out loss enters at the window's
            # last step weighted by the window's length, zeros elsewhere: the mean is exactly it.
            every = config.optimizer.plateau_every
            last = (state.step + 1) % every == 0
            extra["value"] = jnp.where(last, heldout * every, 0.0)
        elif self.plateau:
            extra["value"] = loss  # no held-out images: the window's mean training loss
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params, **extra)
        params = optax.apply_updates(state.params, updates)
        metrics["grad_norm"] = optax.global_norm(grads)
        lr = self.learning_rate
        metrics["lr"] = jnp.asarray(lr(state.step) if callable(lr) else lr, jnp.float32)
        if self.plateau:  # the effective learning rate of this step, reductions included
            metrics["lr"] = metrics["lr"] * plateau_state(opt_state).scale
        model_state = {**state.model_state, **model_state}
        new = {"step": state.step + 1, "params": params, "opt_state": opt_state}
        if adversary is not None:
            # One step of the discriminator against this step's x̂ (the codec's output before
            # its update, as HiFiC alternates them), with its own optimizer.
            a_grad_fn = jax.value_and_grad(adversary.discriminator_loss, has_aux=True)
            (_, a_metrics), a_grads = a_grad_fn(
                state.adversary_params, x, jax.lax.stop_gradient(x_hat)
            )
            a_updates, new["adversary_opt_state"] = adversary.optimizer.update(
                a_grads, state.adversary_opt_state, state.adversary_params
            )
            new["adversary_params"] = optax.apply_updates(state.adversary_params, a_updates)
            metrics.update(a_metrics)
        return state.replace(model_state=model_state, **new), metrics

    def reconstruction(self, state: TrainState, pixels: np.ndarray) -> np.ndarray:
        """The eval-mode reconstruction of an image (uint8 H×W×3, at most its top-left 512²),
        as uint8 of the same size."""
        from nlq_jax.codec.api import pad_to_multiple, to_model_input
        from nlq_jax.codec.image_io import to_uint8

        pixels = pixels[:512, :512]
        x = pad_to_multiple(to_model_input(pixels), self.model.stride)
        variables = jax.device_get({"params": state.params, **state.model_state})
        out = self.model.apply(variables, x, training=False)
        h, w = pixels.shape[:2]
        return to_uint8(np.asarray(out["x_hat"])[0, :h, :w])


def refit_priors(trainer: Trainer, state: TrainState, batches) -> TrainState:
    """`state` with the model's categorical priors refit to the codes of `batches` (global
    batches), by its module's `fit_priors` (discrete latents; `state` if `batches` is empty).

    The code counts are summed by a jitted function over the global batches, so every process
    computes the same fit.
    """
    module = models.get_module(trainer.config.model.name)
    count = jax.jit(functools.partial(trainer.model.apply, method="index_counts"))
    variables = {"params": state.params, **state.model_state}
    total = None
    for batch in batches:
        counts = count(variables, batch[trainer.domain.batch_key])
        total = counts if total is None else jax.tree_util.tree_map(jnp.add, total, counts)
    if total is None:
        return state
    params = jax.tree_util.tree_map(np.asarray, jax.device_get(state.params))
    return state.replace(params=module.fit_priors(trainer.model, params, jax.device_get(total)))


# A hook: `hook(trainer, state, batches, info) -> state`, with `batches` an iterator of further
# global training batches (take only what is needed) and `info` the logger's message line.
Hook = Callable[[Trainer, TrainState, Iterator[dict], Callable[[str], None]], TrainState]
PHASES = ("end",)  # "end": after the last step, before the export


def _refit_priors_at_end(trainer: Trainer, state: TrainState, batches, info) -> TrainState:
    """The "end" hook of discrete models: `refit_priors` on `prior_fit_batches` batches."""
    n = trainer.config.get("prior_fit_batches", 0)
    if not n:
        return state
    state = refit_priors(trainer, state, itertools.islice(batches, n))
    info(f"refit the categorical priors to the codes of {n} training batches")
    return state


# The hooks a model module gets by what it exports: export name → {phase: hook}. A module may
# instead declare its own, `TRAINING_HOOKS = {"end": (hook, ...)}`, which then replaces these.
HOOKS_BY_EXPORT: dict[str, dict[str, Hook]] = {"fit_priors": {"end": _refit_priors_at_end}}


def training_hooks(module) -> dict[str, tuple[Hook, ...]]:
    """phase → the hooks of a model's module, in order: its `TRAINING_HOOKS` declaration if it
    has one, else those its exports select in `HOOKS_BY_EXPORT`."""
    declared = getattr(module, "TRAINING_HOOKS", None)
    if declared is None:
        declared = {}
        for export, hooks in HOOKS_BY_EXPORT.items():
            if getattr(module, export, None) is not None:
                for phase, hook in hooks.items():
                    declared.setdefault(phase, []).append(hook)
    unknown = set(declared) - set(PHASES)
    if unknown:
        raise ValueError(f"unknown training hook phase(s) {sorted(unknown)}; use {PHASES}")
    return {
        phase: tuple(hooks) if isinstance(hooks, (tuple, list)) else (hooks,)
        for phase, hooks in declared.items()
    }


def initialize_from_export(trainer: Trainer, state: TrainState, source: str) -> TrainState:
    """`state` with the weights (and model state) of an export, for fine-tuning; a fresh
    optimizer state. `source` is an export directory or a shipped model's name ("default")."""
    from nlq_jax import pretrained
    from nlq_jax.errors import CheckpointError

    directory = pretrained.resolve(source)
    meta, variables, _ = checkpoint.load_variables(directory)
    config = trainer.config
    from nlq_jax import quantizers

    theirs = _comparable(quantizers.from_legacy_kwargs(meta["model"], meta["kwargs"]))
    ours = _comparable(model_kwargs(config))
    differ = sorted(k for k in set(theirs) & set(ours) if theirs[k] != ours[k])
    if meta["model"] != config.model.name or differ:
        raise CheckpointError(
            f"cannot fine-tune from {directory}: it holds {meta['model']} {theirs}, the config "
            f"asks for {config.model.name} {ours}"
        )
    params = variables.pop("params")

    def shapes(tree):
        return jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)

    if shapes(params) != shapes(state.params):
        raise CheckpointError(
            f"cannot fine-tune from {directory}: its parameters differ from the config's model "
            "(set the config's model fields to the export's, e.g. prior_filters)"
        )

    def fresh(state, params, model_state):  # an adversary, if any, keeps its fresh state
        return state.replace(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=trainer.optimizer.init(params),
            model_state=model_state,
        )

    return jax.jit(fresh, out_shardings=trainer.state_sharding)(state, params, variables)


def checkpoint_manager(workdir: str | os.PathLike, config):
    """The Orbax manager of a run's checkpoints (`WORKDIR/checkpoints`), as the config keeps
    them."""
    return checkpoint.training_manager(
        Path(workdir) / "checkpoints",
        keep=config.keep_checkpoints,
        asynchronous=config.async_checkpoints,
    )


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


def center_crops(images: list[tuple[str, np.ndarray]], size: int) -> np.ndarray:
    """float32 [n, size, size, 3] in [0, 1]: the centre size² of each image (uint8 H×W×3);
    images smaller than that are first padded by reflection, as the training crops are."""
    from nlq_jax.data.pipeline import _reflect_pad

    crops = []
    for _, pixels in images:
        pixels = _reflect_pad(pixels, size)
        top, left = (pixels.shape[0] - size) // 2, (pixels.shape[1] - size) // 2
        crops.append(pixels[top : top + size, left : left + size])
    return np.stack(crops).astype(np.float32) / np.float32(255)


class Evaluator:
    """A measurement of the model on the held-out images, built by name (`EVALUATORS`).

    The loop logs `__call__`'s scalars under "eval/" at the steps where `due` says so, and the
    run's result holds `final`'s (with the exported codec) as "eval".
    """

    def due(self, done: int) -> bool:
        """Whether to evaluate after `done` steps (not at the last: `final` runs there)."""
        del done
        return False

    def __call__(self, state: TrainState) -> dict[str, float]:
        return {}

    def final(self, state: TrainState, codec) -> dict[str, float]:
        """The end-of-run evaluation of `state`, whose export is `codec`."""
        del state, codec
        return {}


class HeldOutLoss(Evaluator):
    """The rate–distortion loss of the model in eval mode (rounding, as CompressAI's
    `model.eval()` test loss) on fixed centre crops of held-out images, for the plateau schedule.

    The crops are `data.crop_size`² (CompressAI's test loader: centre crops of the patch size)
    and go through one jitted function in batches of `data.batch_size`, split over the mesh
    like training batches; the last batch is padded with masked-out zeros, so the function
    compiles once and the result is the mean of the per-image losses.
    """

    def __init__(self, trainer: Trainer, images: list[tuple[str, np.ndarray]]):
        config = trainer.config
        if not images:
            raise TrainingError("the plateau schedule's held-out set (eval.source) is empty")
        crops = center_crops(images, config.data.crop_size)
        self.num_images = len(crops)
        b = config.data.batch_size
        n = -(-len(crops) // b) * b
        self._mask = np.zeros(n, np.float32)
        self._mask[: len(crops)] = 1.0
        self._crops = np.concatenate([crops, np.zeros((n - len(crops), *crops.shape[1:]))])
        self._crops = self._crops.astype(np.float32)
        self._batch = b
        self._sharding = sharding.batch_sharding(trainer.mesh)
        self._objective_vars = trainer.objective_vars
        model, objective = trainer.model, trainer.objective

        def total(params, model_state, x, mask, extra):
            def one(image):  # batch 1 per image: the loss is a batch mean
                image = image[None]
                out = model.apply({"params": params, **model_state}, image, training=False)
                return objective(image, out, extra)[0]  # no adversary: the R–D loss

            return jnp.sum(jax.vmap(one)(x) * mask)

        self._total = jax.jit(total, out_shardings=sharding.replicated(trainer.mesh))

    def loss(self, state: TrainState) -> float:
        """The mean held-out loss of `state`'s model (the same value on every process)."""
        total = 0.0
        for i in range(0, len(self._mask), self._batch):
            x, mask = self._crops[i : i + self._batch], self._mask[i : i + self._batch]
            x, mask = (
                jax.make_array_from_callback(a.shape, self._sharding, lambda idx, a=a: a[idx])
                for a in (x, mask)
            )
            total += float(
                jax.device_get(
                    self._total(state.params, state.model_state, x, mask, self._objective_vars)
                )
            )
        return total / self.num_images

    def __call__(self, state: TrainState) -> dict[str, float]:
        return {"heldout_loss": self.loss(state)}


def evaluate_codec(codec, images: list[tuple[str, np.ndarray]]) -> dict[str, float]:
    """Mean bpp (real bytes), PSNR, MS-SSIM and times of `codec` on held-out images."""
    from nlq_jax.evaluation.report import evaluate_arrays

    if not images:
        return {}
    results = evaluate_arrays(codec, images, codec.name)["results"]
    return {k: v[0] for k, v in results.items() if v[0] is not None}


class CodecEvaluation(Evaluator):
    """The codec's real bitstreams on the held-out images (`evaluate_codec`), every
    `eval_every` steps and at the end."""

    def __init__(self, trainer: Trainer, images: list[tuple[str, np.ndarray]]):
        self.trainer, self.images = trainer, images

    def due(self, done: int) -> bool:
        config = self.trainer.config
        return bool(config.eval_every) and done % config.eval_every == 0 and done < config.num_steps

    def __call__(self, state: TrainState) -> dict[str, float]:
        step = int(jax.device_get(state.step))
        return evaluate_codec(_codec(self.trainer, state, f"step{step}"), self.images)

    def final(self, state: TrainState, codec) -> dict[str, float]:
        return evaluate_codec(codec, self.images)


# Evaluators by the names `config.evaluators` lists: name → (trainer, held-out images) → an
# Evaluator, or None where it has nothing to do (the held-out loss feeds only the plateau
# schedule; the codec needs held-out images).
EVALUATORS: dict[str, Callable[[Trainer, list], Evaluator | None]] = {
    "heldout_loss": lambda trainer, images: (
        HeldOutLoss(trainer, images) if trainer.uses_heldout else None
    ),
    "codec": lambda trainer, images: CodecEvaluation(trainer, images) if images else None,
}


def make_evaluators(trainer: Trainer, images: list[tuple[str, np.ndarray]]) -> dict:
    """name → Evaluator, for the names of `config.evaluators` that apply to this run."""
    names = trainer.config.get("evaluators", tuple(EVALUATORS))
    unknown = [n for n in names if n not in EVALUATORS]
    if unknown:
        raise ValueError(f"unknown evaluator(s) {unknown}; use {', '.join(EVALUATORS)}")
    built = {name: EVALUATORS[name](trainer, images) for name in names}
    return {name: e for name, e in built.items() if e is not None}


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

    if not config.data.train:
        raise TrainingError(
            "config.data.train is not set: pass --config.data.train=folder:PATH (CompressAI's "
            "recipe trains on Vimeo-90K: folder:/data/vimeo_septuplet/sequences), "
            "samples or tfds:NAME[:SPLIT]"
        )
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
    evaluators = make_evaluators(trainer, holdout)
    heldout_loss = evaluators.get("heldout_loss")
    if trainer.plateau:
        oc = config.optimizer
        watched = (
            f"the eval-mode loss on {heldout_loss.num_images} held-out images (eval.source)"
            if heldout_loss
            else "the mean training loss over each window (no held-out images: eval.source "
            "is empty)"
        )
        logger.info(
            f"plateau schedule: every {oc.plateau_every} steps, {watched}; the learning rate "
            f"is multiplied by {oc.plateau_factor} after {oc.plateau_patience} windows "
            "without improvement"
        )

    # Checkpoints: resume from the newest intact one, if there are any.
    manager, state, latest = checkpoint.restore_latest_intact(
        functools.partial(checkpoint_manager, workdir, config),
        trainer.abstract_state,
        data_it,
        move_damaged=trainer.is_main,
        warn=logger.info,
    )
    if latest is not None:
        logger.info(f"resumed from step {latest} in {workdir / 'checkpoints'}")
        plateau = plateau_state(state.opt_state)
        if plateau is not None:
            plateau = jax.device_get(plateau)
            if int(plateau.count) != latest % config.optimizer.plateau_every:
                raise TrainingError(
                    "optimizer.plateau_every differs from the checkpoint's; keep it to resume"
                )
            logger.info(
                f"plateau schedule: learning-rate scale {float(plateau.scale):g}, best "
                f"monitored loss {float(plateau.best_value):.6g}, {int(plateau.plateau_count)} "
                "windows without improvement"
            )
    else:
        state = trainer.init_state()
        if config.get("init_from"):
            state = initialize_from_export(trainer, state, config.init_from)
            logger.info(f"initialised the weights from the export {config.init_from}")
    start = int(jax.device_get(state.step))
    rng = jax.random.PRNGKey(config.seed + 1)
    # Hours before the first checkpoint would find out:
    checkpoint.check_space(workdir, state, latest)

    # Loop. Metrics stay on the device between log steps (fetching them every step would block
    # asynchronous dispatch on an accelerator); the first non-finite loss is recorded on the
    # device too, and checked wherever the host fetches, before any checkpoint is written.
    logger.info(
        f"compiling the train step ({config.model.name}, "
        f"batch {config.data.batch_size}×{config.data.crop_size}²; the first step takes longest)"
    )
    bar = logger.progress(start, config.num_steps)
    t_last, s_last = time.perf_counter(), start
    first_bad = jnp.asarray(-1, jnp.int32)
    try:
        for step in range(start, config.num_steps):
            batch = sharding.global_batch(next(data_it), trainer.mesh)
            # The plateau compares the held-out loss at each window's last step (of the weights
            # before it); nothing to carry over a restart: it is computed where it is needed.
            value = heldout_loss.loss(state) if trainer.window_ends(step) else 0.0
            state, metrics = trainer.train_step(state, batch, rng, value)
            first_bad = _first_nonfinite(first_bad, metrics["loss"], step)
            done = step + 1
            bar.advance()
            log_now = done % config.log_every == 0 or done == config.num_steps
            save_now = done % config.checkpoint_every == 0 or done == config.num_steps
            due = [e for e in evaluators.values() if e.due(done)]
            image_now = config.image_every and done % config.image_every == 0
            window = trainer.window_ends(step)
            if not (step == start or log_now or save_now or due or image_now or window):
                continue
            metrics, bad = jax.device_get((metrics, first_bad))
            if bad >= 0:
                manager.wait_until_finished()
                good = manager.latest_step()
                where = f"step {good} in {workdir / 'checkpoints'}" if good is not None else "none"
                raise TrainingError(
                    f"the loss became non-finite at step {int(bad)}; stopped. "
                    f"Last good checkpoint: {where}"
                )
            if step == start:
                logger.info(f"first step done in {time.perf_counter() - t_last:.1f} s")
            bar.show(metrics)
            if window:
                logger.scalars(done, {"heldout_loss": value, "lr": float(metrics["lr"])})
            if log_now:
                now = time.perf_counter()
                rate = (done - s_last) / max(now - t_last, 1e-9)
                t_last, s_last = now, done
                logger.scalars(
                    done,
                    {k: float(v) for k, v in metrics.items()}
                    | {"steps_per_s": rate, "images_per_s": rate * config.data.batch_size}
                    | {f"data/{k}": v for k, v in data_it.stats.as_dict().items()},
                )
            if image_now and holdout and logger.enabled:
                pixels = holdout[0][1]
                logger.reconstruction(done, pixels, trainer.reconstruction(state, pixels))
            if save_now:
                checkpoint.save_training(manager, done, state, data_it)
            for evaluator in due:
                logger.scalars(done, {f"eval/{k}": v for k, v in evaluator(state).items()})
    finally:
        bar.close()
        manager.wait_until_finished()
        manager.close()

    # The model's own end-of-training steps (discrete models: refit the priors).
    for hook in training_hooks(models.get_module(config.model.name)).get("end", ()):
        batches = (sharding.global_batch(next(data_it), trainer.mesh) for _ in itertools.count())
        state = hook(trainer, state, batches, logger.info)

    # Export and final evaluation with real bitstreams.
    label = f"{config.model.name}-{config.name}" if config.get("name") else config.model.name
    logger.info(f"exporting the model with its coding tables to {workdir / 'export'}")
    codec = _codec(trainer, state, label)
    result = {"step": int(jax.device_get(state.step)), "compilations": trainer.trace_count}
    codec.save(workdir / "export")  # every process: Orbax's save is a collective
    if trainer.is_main:
        if holdout:
            n = len(holdout)
            logger.info(f"evaluating on {n} held-out image{'s' * (n > 1)} with real bitstreams")
        result["eval"] = {}
        for evaluator in evaluators.values():
            result["eval"].update(evaluator.final(state, codec))
        if result["eval"]:
            logger.scalars(result["step"], {f"eval/{k}": v for k, v in result["eval"].items()})
            logger.info(
                f"held-out images: {result['eval']['bpp']:.4f} bpp, "
                f"{result['eval']['psnr-rgb']:.2f} dB PSNR (real bitstreams)"
            )
        if config.report and holdout:
            from nlq_jax.evaluation.report import get_writer

            name = config.get("report_writer", "baselines")
            write = get_writer(name)
            logger.info(f"writing the report ({name})")
            result["report"] = write(workdir, codec, holdout, result, config)
        (workdir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
        logger.info(summary(workdir, result))
    logger.close()
    return result


def _first_nonfinite(first_bad: jax.Array, loss: jax.Array, step: int) -> jax.Array:
    """The first step whose loss was not finite (-1: none yet), kept on the device."""
    return jnp.where((first_bad < 0) & ~jnp.isfinite(loss), step, first_bad)


# What a finished run leaves in its workdir, in the order the summary names it.
_OUTPUTS = (
    ("export", "the trained model with its coding tables: nlq compress IMG OUT --checkpoint"),
    ("checkpoints", "Orbax train state + data position; the same command resumes"),
    ("metrics.json", "final step and held-out evaluation"),
    ("metrics.jsonl", "the logged scalars, one line per log step"),
    ("report.md", "the held-out evaluation beside JPEG and WebP"),
    ("rd.png", "its point beside JPEG and WebP"),
    ("reconstruction.png", "original | ours | JPEG at about the same rate"),
    ("tb", "TensorBoard: tensorboard --logdir"),
)


def summary(workdir: Path, result: dict) -> str:
    """The closing lines of a run: what it reached and where each output is."""
    lines = [f"done: step {result['step']}, step compiled {result['compilations']}×"]
    if result.get("eval"):
        e = result["eval"]
        lines[0] += f"; held-out {e['bpp']:.4f} bpp, {e['psnr-rgb']:.2f} dB (real bitstreams)"
    lines.append(f"outputs in {workdir}:")
    for name, what in _OUTPUTS:
        path = workdir / name
        if path.exists():
            shown = f"{what} {path}" if what.endswith(("--checkpoint", "--logdir")) else what
            lines.append(f"  {name + ('/' if path.is_dir() else ''):<20} {shown}")
    return "\n".join(lines)
