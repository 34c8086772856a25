"""Import CompressAI checkpoints: bmshj2018-factorized, bmshj2018-hyperprior, mbt2018-mean and
mbt2018 (MSE or MS-SSIM trained) as nlq_jax exports, ready for `nlq compress`, `nlq eval` and
fine-tuning.

    nlq import compressai bmshj2018-hyperprior-3-5c6f152b.pth.tar --out models/hp3

The file is read without torch and without executing anything from it
(`nlq_jax.compat.torch_checkpoint`). The model's layers are CompressAI's layer for layer
(`factorized`, `hyperprior`, `mean_scale`, `joint`); N, M and the depth of the deep factorized
prior are read off the weight shapes. The weights change layout only:

- convolutions: torch's (O, I, kh, kw) → (kh, kw, I, O); transposed convolutions (g_s, h_s):
  (I, O, kh, kw) → (kh, kw, I, O) (our `UpConv` flips the kernel itself); mbt2018's 1×1
  `entropy_parameters`: (O, I, 1, 1) → (I, O);
- GDN's β and γ are copied as stored (the same non-negative reparameterization);
- the entropy bottleneck's density network is copied as it is, with `filters` from its shapes
  ((3, 3, 3, 3) in CompressAI), and its learned medians (`quantiles[:, 0, 1]`) are kept as the
  quantization offsets of ẑ (`prior_medians="stored"`): they decide where ẑ is rounded, so
  keeping them is what makes x̂ CompressAI's.

CompressAI's buffers are dropped (its quantiles' tails, CDFs, offsets, scale table, masks and
reparameterization constants): the coding tables are rebuilt by the model's `build_tables`.
Two consequences, by design: the tables span the tails of the density itself, not the learned
tails; and y's scale is snapped to the nearest table entry in log space where CompressAI takes
the next larger one — files differ in size by a fraction of a percent, never in x̂.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from nlq_jax.errors import NLQError

# CompressAI's model names → ours.
ARCHITECTURES = {
    "bmshj2018-factorized": "factorized",
    "bmshj2018-hyperprior": "hyperprior",
    "mbt2018-mean": "mean_scale",
    "mbt2018": "joint",
}
MODELS = tuple(ARCHITECTURES.values())

# Keys of CompressAI buffers and constants that the import drops.
_DROPPED = re.compile(
    r"(^|\.)(_offset|_quantized_cdf|_cdf_length|target|scale_table|mask|pedestal|bound)$"
    r"|^gaussian_conditional\."
    r"|_reparam\."
)
# The entropy bottleneck's density network under its three historical key spellings:
# `matrices.0` (CompressAI ≥ 1.2), `_matrices.0` (older zoo files), `_matrix0` (CompressAI 1.1).
_BOTTLENECK = re.compile(
    r"^entropy_bottleneck\.(?:(matrices|biases|factors)\.|_(matrices|biases|factors)\.|"
    r"_(matrix|bias|factor))(\d+)$"
)
_SINGULAR = {"matrices": "matrix", "biases": "bias", "factors": "factor"}


def model_name(name: str) -> str:
    """Our model name for a CompressAI architecture name (or one of ours)."""
    if name in MODELS:
        return name
    if name in ARCHITECTURES:
        return ARCHITECTURES[name]
    known = ", ".join([*ARCHITECTURES, *MODELS])
    raise NLQError(f"unknown CompressAI architecture {name!r}; expected one of {known}")


def _normalize_keys(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strips DataParallel's `module.` prefix and spells the bottleneck keys as ours
    (`entropy_bottleneck.matrix0`); drops the buffers that the import rebuilds."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module.") :]
        m = _BOTTLENECK.match(key)
        if m:
            kind = m.group(3) or _SINGULAR[m.group(1) or m.group(2)]
            key = f"entropy_bottleneck.{kind}{m.group(4)}"
        elif _DROPPED.search(key):
            continue
        out[key] = np.asarray(value)
    return out


def detect_architecture(state_dict: dict[str, np.ndarray]) -> str:
    """Our model name for a (normalized) CompressAI state dict, from the layers it has."""
    keys = set(state_dict)
    if "context_prediction.weight" in keys:
        return "joint"
    if "h_s.4.weight" in keys and "g_a.6.weight" in keys:
        M = state_dict["g_a.6.weight"].shape[0]
        return "mean_scale" if state_dict["h_s.4.weight"].shape[0] == 2 * M else "hyperprior"
    if "g_a.6.weight" in keys and not any(k.startswith("h_a.") for k in keys):
        return "factorized"
    raise NLQError(
        "not a CompressAI bmshj2018-factorized/-hyperprior, mbt2018-mean or mbt2018 state dict "
        f"(no g_a.6.weight; keys start with {sorted(keys)[:4]})"
    )


def _torch_key(path: tuple[str, ...]) -> str:
    """Our parameter path → the CompressAI state-dict key holding the same weights."""
    parts = []
    for p in path:
        if p == "conv":  # DownConv wraps its nn.Conv
            continue
        m = re.fullmatch(r"layers_(\d+)", p)
        parts.append(m.group(1) if m else {"kernel": "weight"}.get(p, p))
    return ".".join(parts)


def _convert(path: tuple[str, ...], value: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A CompressAI tensor in our layout for the parameter at `path` of `shape`."""
    if path[-1] == "kernel" and value.ndim == 4:
        if len(shape) == 2:  # 1×1 conv as a dense layer
            return value[:, :, 0, 0].T
        transposed = path[0] in ("g_s", "h_s") and value.shape[2:] == (5, 5)
        return value.transpose(2, 3, 0, 1) if transposed else value.transpose(2, 3, 1, 0)
    return value


def convert_state_dict(
    state_dict: dict[str, np.ndarray], architecture: str | None = None
) -> tuple[str, dict, dict]:
    """A CompressAI state dict → (our model name, its constructor kwargs, its params).

    Args:
      state_dict: name → array, as `torch_checkpoint.load_state_dict` returns it (zoo files'
        older key names, DataParallel prefixes and CompressAI's buffers are accepted).
      architecture: CompressAI's or our model name; detected from the keys when None.

    Raises:
      NLQError: the state dict is not of that architecture (a missing, unexpected or
        misshapen weight), in one line.
    """
    import jax
    import jax.numpy as jnp

    from nlq_jax import models

    sd = _normalize_keys(state_dict)
    found = detect_architecture(sd)
    name = found if architecture is None else model_name(architecture)
    if name != found:
        raise NLQError(f"the checkpoint holds a {found} model, not {name} (--model)")
    if "entropy_bottleneck.quantiles" not in sd or "g_a.0.weight" not in sd:
        raise NLQError("the checkpoint has no entropy_bottleneck.quantiles or g_a.0.weight")
    depth = sum(1 for k in sd if re.fullmatch(r"entropy_bottleneck\.matrix\d+", k))
    filters = tuple(int(sd[f"entropy_bottleneck.matrix{k}"].shape[1]) for k in range(depth - 1))
    kwargs = {
        "N": int(sd["g_a.0.weight"].shape[0]),
        "M": int(sd["g_a.6.weight"].shape[0]),
        "prior_filters": filters,
        "prior_medians": "stored",
    }
    model = models.get_model(name, **kwargs)
    stride = model.stride
    abstract = jax.eval_shape(
        lambda: model.init(
            {"params": jax.random.PRNGKey(0), "noise": jax.random.PRNGKey(1)},
            jnp.zeros((1, stride, stride, 3)),
            training=True,
        )["params"]
    )
    used = set()
    leaves = []
    for key_path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]:
        path = tuple(k.key for k in key_path)
        if path == ("entropy_bottleneck", "medians"):
            key = "entropy_bottleneck.quantiles"
            value = sd[key][:, 0, 1]
        else:
            key = _torch_key(path)
            if key not in sd:
                raise NLQError(f"the checkpoint has no {key} (for {'/'.join(path)}) of {name}")
            value = _convert(path, sd[key], leaf.shape)
        if value.shape != leaf.shape:
            raise NLQError(
                f"{key} has shape {sd[key].shape}; {name} with N={kwargs['N']}, "
                f"M={kwargs['M']} needs {leaf.shape} (in our layout)"
            )
        used.add(key)
        leaves.append(np.ascontiguousarray(value, np.float32))
    extra = sorted(set(sd) - used)
    if extra:
        raise NLQError(f"unexpected weights in the checkpoint for {name}: {', '.join(extra[:5])}")
    params = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(abstract), leaves)
    return name, kwargs, params


# How ŷ is entropy-coded after an import: nlq_jax's tables, or CompressAI's (see below).
CODINGS = ("nlq_jax", "compressai")


def import_checkpoint(
    path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    architecture: str | None = None,
    quality: int | None = None,
    label: str | None = None,
    coding: str = "nlq_jax",
) -> Path:
    """Converts a CompressAI `.pth`/`.pth.tar` into an nlq_jax export at `out` (with coding
    tables); returns `out`. `quality` only names the export (the weights carry N and M).

    `coding="compressai"` makes the Gaussian models code ŷ as CompressAI does: the first table
    scale ≥ σ (nlq_jax: the nearest in log-space) and 16-bit table probabilities (nlq_jax: 24),
    so files come out the size of CompressAI's strings. The reconstructions are the same
    either way.
    """
    from nlq_jax.codec.api import Codec
    from nlq_jax.compat.torch_checkpoint import load_state_dict

    if coding not in CODINGS:
        raise NLQError(f"coding must be one of {', '.join(CODINGS)}, got {coding!r}")
    name, kwargs, params = convert_state_dict(load_state_dict(path), architecture)
    if coding == "compressai" and name != "factorized":
        kwargs = {**kwargs, "scale_rule": "next_larger", "table_precision": 16}
    if label is None:
        label = f"{name}-compressai" + (f"-q{quality}" if quality else "")
    codec = Codec(name, kwargs, params, label=label)
    return codec.save(out)
