"""Checkpoints: the trainer's (resumable, with the data iterator) and exported models.

Training checkpoints (`training_manager`, `save_training`, `restore_latest_intact`) are an
Orbax `CheckpointManager` in `WORKDIR/checkpoints/STEP/`, each holding the train state and the
grain iterator's position, so a run resumes where it stopped; a damaged one is moved aside and
the one before it restored. The rest of this module is the export.

Exported models: parameters + coding tables + model description, in one directory.

An export is what `nlq compress`/`nlq decompress` and `nlq eval` read:

```
DIR/model.json   {"format": "nlq_jax.export", "version": 2, "model": NAME, "kwargs": {...},
                  "label": "...", "hash": HEX}
DIR/state/       Orbax checkpoint of {"params": ..., "tables": {name: arrays},
                  "model_state": {collection: ...}}   (model_state only when not empty)
```
The tables are the output of the model module's pure `build_tables(model, params)`, saved so
that a decoder never recomputes them. `model_state` holds the model's variable collections
other than "params" that the forward reads (e.g. "quantizer_state": the EMA codebooks of vector
quantizers); models without any have none, and their exports and hashes are as before.
`hash` (sha256 of the parameters, model state and tables, first 16 bytes) goes into every .nlq
file, so a file is never decoded with other weights.

Versions: in version 2 the hash also covers the model description, `model` and `kwargs` (as
canonical JSON), so that an edited or damaged model.json is refused rather than building another
model around the weights; in version 1 (exports written before, such as the shipped model) it
covers the arrays only, and version-1 exports load as they always did, their hash unchanged
(their kwargs are checked instead to build parameters of the stored shapes, an abstract init of
≈0.1–1 s, skipped for the shipped models).
`read_meta` checks every field in both versions: `model` must be a registered model and `kwargs`
arguments its constructor accepts, each of the field's type (JSON numbers, strings, booleans,
lists, objects such as a discrete model's `quantizer` sub-dict); anything else is one
`CheckpointError` line. Exports of discrete models written before the quantizer sub-dict store
its options flat (`quantizer="rvq", codebook_size=...`): they are checked and built through
`nlq_jax.quantizers.from_legacy_kwargs`, and hashed as stored, so their files still decode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from nlq_jax.entropy.tables import CodingTables
from nlq_jax.errors import CheckpointError, TrainingError

FORMAT, VERSION = "nlq_jax.export", 2
SUPPORTED_VERSIONS = (1, 2)
_HASH_RE = re.compile(r"[0-9a-f]{32}")
# The shipped exports' folder (`nlq_jax.pretrained`): their version-1 descriptions are trusted.
_SHIPPED = Path(__file__).resolve().parent / "pretrained"


def tables_to_tree(tables: dict) -> dict:
    """Coding tables (CodingTables or arrays) as a plain pytree of numpy arrays."""
    return {
        k: v.to_arrays() if isinstance(v, CodingTables) else np.asarray(v)
        for k, v in tables.items()
    }


def tables_from_tree(tree: dict) -> dict:
    """Inverse of `tables_to_tree`."""
    return {
        k: CodingTables.from_arrays(v) if isinstance(v, dict) else np.asarray(v)
        for k, v in tree.items()
    }


def description_bytes(model_name: str, model_kwargs: dict) -> bytes:
    """The model description that a version-2 hash covers: canonical JSON of name and kwargs
    (sorted keys, no spaces; tuples as lists, as model.json stores them)."""
    desc = {"model": model_name, "kwargs": dict(model_kwargs)}
    return json.dumps(desc, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def model_hash(
    params: dict,
    tables: dict,
    model_state: dict | None = None,
    *,
    description: bytes | None = None,
) -> bytes:
    """16-byte fingerprint of parameters, model state and tables (names, dtypes, shapes and
    bytes), and of the model description when given (version 2, see `description_bytes`).

    An empty `model_state` and no `description` leave the fingerprint of params and tables
    unchanged (version 1).
    """
    h = hashlib.sha256()
    if description is not None:
        h.update(b"description" + len(description).to_bytes(8, "little") + description)
    tree = {"params": params, "tables": tables_to_tree(tables)}
    if model_state:
        tree["model_state"] = model_state
    for path, leaf in sorted(
        jax.tree_util.tree_flatten_with_path(tree)[0], key=lambda kv: jax.tree_util.keystr(kv[0])
    ):
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(jax.tree_util.keystr(path).encode())
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.digest()[:16]


def export(
    directory: str | os.PathLike,
    model_name: str,
    model_kwargs: dict,
    params: dict,
    tables: dict,
    *,
    label: str | None = None,
    model_state: dict | None = None,
    version: int = VERSION,
) -> Path:
    """Writes an export directory (overwriting one that exists); returns its path.

    `model_state` holds the variable collections other than "params" (see the module
    docstring); empty or None for models without any. `version` 1 keeps the hash of an
    export of that version (its files stay decodable); new exports are version 2.
    """
    import orbax.checkpoint as ocp

    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"export version must be one of {SUPPORTED_VERSIONS}, got {version}")
    validate_description(model_name, model_kwargs, "export")
    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    params = jax.tree_util.tree_map(np.asarray, params)
    model_state = jax.tree_util.tree_map(np.asarray, dict(model_state or {}))
    state = {"params": params, "tables": tables_to_tree(tables)}
    if model_state:
        state["model_state"] = model_state
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / "state", state, force=True)
    description = description_bytes(model_name, model_kwargs) if version >= 2 else None
    meta = {
        "format": FORMAT,
        "version": version,
        "model": model_name,
        "kwargs": json.loads(json.dumps(dict(model_kwargs))),  # tuples as lists
        "label": label or model_name,
        "hash": model_hash(params, tables, model_state, description=description).hex(),
    }
    if jax.process_index() == 0:
        (directory / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    return directory


def read_meta(directory: str | os.PathLike) -> dict:
    """The export's model.json, validated; CheckpointError if it is not an export."""
    path = Path(directory) / "model.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{directory} is not a nlq_jax export (no model.json)") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nlq_jax export description")
    version = meta.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:
        raise CheckpointError(
            f"{path} has export version {version!r}; this nlq_jax reads versions "
            f"{', '.join(map(str, SUPPORTED_VERSIONS))}"
        )
    if not isinstance(meta.get("hash"), str) or not _HASH_RE.fullmatch(meta["hash"]):
        raise CheckpointError(f"{path}: 'hash' must be 32 lowercase hex digits")
    validate_description(meta.get("model"), meta.get("kwargs"), str(path))
    if not isinstance(meta.setdefault("label", meta["model"]), str):
        raise CheckpointError(f"{path}: 'label' must be a string")
    return meta


def validate_description(model_name: object, model_kwargs: object, where: str) -> None:
    """Checks that `model_name` is a registered model and `model_kwargs` arguments that its
    constructor accepts, each a JSON value of its field's type.

    Args:
        model_name: the description's model name.
        model_kwargs: its constructor arguments (a dict; lists stand for tuples).
        where: what is checked, for the message (model.json's path).

    Raises:
        CheckpointError: one line saying what is wrong.
    """
    from nlq_jax import models, quantizers

    if not isinstance(model_name, str) or model_name not in models.MODELS:
        raise CheckpointError(
            f"{where}: 'model' is {model_name!r}, not one of {', '.join(models.MODELS)}"
        )
    if not isinstance(model_kwargs, dict):
        raise CheckpointError(f"{where}: 'kwargs' must be an object, got {model_kwargs!r}")
    try:
        model_kwargs = quantizers.from_legacy_kwargs(model_name, model_kwargs)
    except ValueError as e:
        raise CheckpointError(f"{where}: {e}") from None
    module = models.get_module(model_name)
    fields = {
        f.name: f.type for f in dataclasses.fields(module.Model) if f.name not in ("parent", "name")
    }
    for key, value in model_kwargs.items():
        if key not in fields:
            raise CheckpointError(
                f"{where}: {model_name} has no argument {key!r} (its arguments: "
                f"{', '.join(fields)})"
            )
        if not _of_type(value, str(fields[key])):
            raise CheckpointError(
                f"{where}: {model_name} argument {key}={value!r} is not of type {fields[key]}"
            )
    try:
        module.Model(**{k: tuple(v) if isinstance(v, list) else v for k, v in model_kwargs.items()})
    except Exception as e:  # noqa: BLE001 - any refusal of the constructor is the export's fault
        raise CheckpointError(f"{where}: {model_name}({model_kwargs}) fails: {e}") from None


def _of_type(value: object, annotation: str) -> bool:
    """Whether a JSON value fits a model field's annotation (a string under PEP 563)."""
    if annotation.endswith(" | None") and value is None:
        return True
    annotation = annotation.removesuffix(" | None")
    scalar = {
        "int": lambda v: type(v) is int,
        "float": lambda v: type(v) in (int, float) and math.isfinite(v),
        "bool": lambda v: type(v) is bool,
        "str": lambda v: type(v) is str,
    }
    if annotation in scalar:
        return scalar[annotation](value)
    if annotation.startswith(("tuple[", "Sequence[", "list[")):
        inner = annotation[annotation.index("[") + 1 : -1].split(",")[0].strip()
        check = scalar.get(inner, _is_json)
        return isinstance(value, (list, tuple)) and all(check(v) for v in value)
    return _is_json(value)


def _is_json(value: object) -> bool:
    if value is None or type(value) in (bool, int, str):
        return True
    if type(value) is float:
        return math.isfinite(value)
    if isinstance(value, dict):  # a sub-dict, e.g. a discrete model's quantizer
        return all(type(k) is str and _is_json(v) for k, v in value.items())
    return isinstance(value, (list, tuple)) and all(_is_json(v) for v in value)


def load(directory: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Reads an export: (meta, params, tables). Verifies the stored hash.

    For models with variables beyond "params" use `load_variables`.
    """
    meta, variables, tables = load_variables(directory)
    return meta, variables["params"], tables


def load_variables(directory: str | os.PathLike) -> tuple[dict, dict, dict]:
    """Reads an export: (meta, variables, tables), variables = {"params": ..., **model_state}
    (every collection the model's forward reads). Verifies the stored hash."""
    import orbax.checkpoint as ocp

    meta = read_meta(directory)
    state_dir = Path(directory).absolute() / "state"
    if not state_dir.is_dir():
        raise CheckpointError(f"{directory} has no state/ directory: incomplete export")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            state = ckptr.restore(state_dir)
    except Exception as e:  # orbax raises many types for a damaged checkpoint
        raise CheckpointError(f"cannot restore {state_dir}: {type(e).__name__}: {e}") from None
    params = jax.tree_util.tree_map(np.asarray, state["params"])
    model_state = jax.tree_util.tree_map(np.asarray, dict(state.get("model_state") or {}))
    tables = tables_from_tree(jax.tree_util.tree_map(np.asarray, state["tables"]))
    description = meta_description(meta)
    if model_hash(params, tables, model_state, description=description).hex() != meta["hash"]:
        covered = "weights or tables" if description is None else "weights, tables, model or kwargs"
        raise CheckpointError(f"{directory}: {covered} do not match model.json's hash")
    if description is None and Path(directory).resolve().parent != _SHIPPED:
        # Version 1: the hash does not cover kwargs, so check that they build these weights.
        check_param_shapes(meta["model"], meta["kwargs"], params, str(directory))
    return meta, {"params": params, **model_state}, tables


def check_param_shapes(model_name: str, model_kwargs: dict, params: dict, where: str) -> None:
    """Checks that the model described builds parameters of the shapes of `params` (an abstract
    init, ≈0.1–0.4 s); version-1 exports need it, their hash not covering the description.

    Raises:
        CheckpointError: a parameter is missing, extra or of another shape, in one line.
    """
    import functools

    from nlq_jax import models, quantizers

    kwargs = quantizers.from_legacy_kwargs(model_name, model_kwargs)
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    model = models.get_model(model_name, **kwargs)
    x = jax.ShapeDtypeStruct((1, model.stride, model.stride, 3), np.float32)
    rngs = {k: jax.random.key(0) for k in ("params", "noise", "quantizer")}
    try:
        expected = jax.eval_shape(functools.partial(model.init, training=True), rngs, x)["params"]
    except Exception as e:  # noqa: BLE001 - a description the model cannot even build
        raise CheckpointError(f"{where}: {model_name}({model_kwargs}) fails: {e}") from None

    def shapes(tree):
        flat = jax.tree_util.tree_flatten_with_path(tree)[0]
        return {jax.tree_util.keystr(k): tuple(np.shape(v)) for k, v in flat}

    want, have = shapes(expected), shapes(params)
    if want != have:
        key = min(set(want) ^ set(have) or {k for k in want if want[k] != have[k]})
        raise CheckpointError(
            f"{where}: the weights do not fit {model_name}({model_kwargs}): parameter {key} "
            f"is {have.get(key, 'missing')} in the export, {want.get(key, 'absent')} in the model"
        )


def meta_description(meta: dict) -> bytes | None:
    """What an export's hash covers besides the arrays: None for version 1, else its
    `description_bytes`."""
    return description_bytes(meta["model"], meta["kwargs"]) if meta["version"] >= 2 else None


# -- training checkpoints ---------------------------------------------------------------------


def training_manager(directory: str | os.PathLike, *, keep: int, asynchronous: bool):
    """The Orbax `CheckpointManager` of a run's checkpoints (`WORKDIR/checkpoints`), keeping the
    newest `keep`."""
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=asynchronous
    )
    return ocp.CheckpointManager(Path(directory), options=options)


def check_space(directory: str | os.PathLike, state: Any, latest: int | None) -> None:
    """Refuses, in one line, to start a checkpoint that the disk cannot hold.

    A write that runs out of space fails inside Orbax's and TensorStore's writer threads, which
    report it once per array; checking first (a checkpoint is about the state's size) turns the
    common case into one clear error, before anything is half-written.
    """
    need = sum(int(x.nbytes) for x in jax.tree_util.tree_leaves(state)) * 1.1 + (1 << 20)
    free = shutil.disk_usage(directory).free
    if free < need:
        resume = f"from step {latest}" if latest is not None else "from the start"
        raise TrainingError(
            f"not enough space in {directory} for a checkpoint: {free / 1e6:.1f} MB free, about "
            f"{need / 1e6:.1f} MB needed; make room and run the same command again (it resumes "
            f"{resume})"
        )


def save_training(manager, step: int, state: Any, data_it) -> None:
    """Saves the train state and the data iterator's position as checkpoint `step`."""
    import grain
    import orbax.checkpoint as ocp

    check_space(Path(manager.directory), state, manager.latest_step())
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_it)
        ),
    )


def restore_training(manager, step: int, abstract_state: Any, data_it) -> Any:
    """The train state of checkpoint `step` (shaped and sharded as `abstract_state`); moves
    `data_it` to the position it had then."""
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


def restore_latest_intact(
    make_manager: Callable[[], Any],
    abstract_state: Any,
    data_it,
    *,
    move_damaged: bool = True,
    warn: Callable[[str], None] = print,
) -> tuple[Any, Any, int | None]:
    """(manager, state, step) of the newest checkpoint in the manager's directory that
    restores; (manager, None, None) when there is none. A damaged one (emptied metadata,
    missing data files, an empty step folder) is moved to `../checkpoints_damaged/` (by the
    process that has `move_damaged`) with a warning, and the one before it is tried: a run
    never restarts from scratch while an intact checkpoint exists, and the moved step number
    is free to be saved again."""
    manager = make_manager()
    directory = Path(manager.directory)
    damaged = directory.parent / f"{directory.name}_damaged"
    tried = []
    while True:
        steps = [s for s in sorted(manager.all_steps(), reverse=True) if s not in tried]
        if not steps:
            break
        step = steps[0]
        tried.append(step)
        try:
            return manager, restore_training(manager, step, abstract_state, data_it), step
        except Exception as e:  # noqa: BLE001 (Orbax and TensorStore raise many kinds)
            reason = " ".join(str(e).split())[:160] or type(e).__name__
            broken = directory / str(step)
            aside = damaged / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
            manager.close()
            if move_damaged and broken.exists():
                aside.parent.mkdir(parents=True, exist_ok=True)
                broken.rename(aside)
            warn(
                f"warning: checkpoint step {step} cannot be restored ({type(e).__name__}: "
                f"{reason}); moved to {aside}, trying the one before"
            )
            manager = make_manager()
    if tried:
        raise TrainingError(
            f"no checkpoint in {directory} could be restored (tried steps "
            f"{', '.join(map(str, tried))}; moved to {damaged}); rerun to start afresh"
        )
    return manager, None, None
