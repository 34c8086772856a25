"""Exported models: parameters + coding tables + model description, in one directory.

An export is what `nlq compress`/`nlq decompress` and `nlq eval` read:

```
DIR/model.json   {"format": "nlq_jax.export", "version": 1, "model": NAME, "kwargs": {...},
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
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import numpy as np

from nlq_jax.entropy.tables import CodingTables
from nlq_jax.errors import CheckpointError

FORMAT, VERSION = "nlq_jax.export", 1


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


def model_hash(params: dict, tables: dict, model_state: dict | None = None) -> bytes:
    """16-byte fingerprint of parameters, model state and tables (names, dtypes, shapes and
    bytes). An empty `model_state` leaves the fingerprint of params and tables unchanged."""
    h = hashlib.sha256()
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
) -> Path:
    """Writes an export directory (overwriting one that exists); returns its path.

    `model_state` holds the variable collections other than "params" (see the module
    docstring); empty or None for models without any.
    """
    import orbax.checkpoint as ocp

    directory = Path(directory).absolute()
    directory.mkdir(parents=True, exist_ok=True)
    params = jax.tree_util.tree_map(np.asarray, params)
    model_state = jax.tree_util.tree_map(np.asarray, dict(model_state or {}))
    state = {"params": params, "tables": tables_to_tree(tables)}
    if model_state:
        state["model_state"] = model_state
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(directory / "state", state, force=True)
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "model": model_name,
        "kwargs": dict(model_kwargs),
        "label": label or model_name,
        "hash": model_hash(params, tables, model_state).hex(),
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
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has export version {meta.get('version')}; need {VERSION}")
    return meta


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
    if model_hash(params, tables, model_state).hex() != meta["hash"]:
        raise CheckpointError(f"{directory}: weights or tables do not match model.json's hash")
    return meta, {"params": params, **model_state}, tables
