"""Quantizers of the latent, and a registry of the discrete ones by name.

`scalar.quantize` is the noise/rounding quantizer of the continuous-latent models. The discrete
quantizers share one contract (Flax Linen modules):

    z_q, indices, aux = q(z, training=..., rng=None)   # z [..., D] → z_q [..., D], indices int32
                                                     # [..., G], aux float32 scalars "loss",
                                                     # "usage", "perplexity", "dead_codes"
    z_q = q.decode(indices)                          # bit-equal to the eval call's z_q
    q.num_codes                                      # alphabet size of each of the G groups
    q.prefix_decodable                               # the first n ≤ G groups are a coarser code
                                                     # (`decode(indices, num_stages=n)`; RVQ)

Mutable state (EMA codebooks) lives in the "quantizer_state" collection; quantizers without
state (fsq, scalar, gumbel) create none.

Configs. A model's quantizer is one sub-dict of its config, `config.model.quantizer =
dict(name="rvq", codebook_size=8192, num_stages=3, ...)`: `name` picks the module of
`QUANTIZERS`, every other key is one of its attributes (`option_names`), and the model adds
the latent size `dim`. Adding a quantizer is its module and one line in `QUANTIZERS`.
`from_legacy_kwargs` turns the flat model arguments of exports and configs written before
(`quantizer="rvq", codebook_size=..., num_stages=...`) into that sub-dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
from flax.core import FrozenDict

from nlq_jax.quantizers.fsq import FSQ
from nlq_jax.quantizers.gumbel import GumbelQuantizer, temperature_schedule
from nlq_jax.quantizers.learned_scalar import LearnedScalarQuantizer
from nlq_jax.quantizers.pq import ProductVQ
from nlq_jax.quantizers.rvq import ResidualVQ
from nlq_jax.quantizers.vq import VectorQuantizer

QUANTIZERS = {
    "vq": VectorQuantizer,
    "rvq": ResidualVQ,
    "pvq": ProductVQ,
    "fsq": FSQ,
    "scalar": LearnedScalarQuantizer,
    "gumbel": GumbelQuantizer,
}

# Config-style names accepted for the modules' attribute names.
ALIASES = {
    "commitment_cost": "beta",
    "ema_decay": "decay",
    "dead_code_threshold": "dead_threshold",
    "latent_dim": "dim",
}

__all__ = [
    "ALIASES",
    "FSQ",
    "QUANTIZERS",
    "GumbelQuantizer",
    "LearnedScalarQuantizer",
    "ProductVQ",
    "ResidualVQ",
    "VectorQuantizer",
    "freeze",
    "from_legacy_kwargs",
    "get_quantizer",
    "option_names",
    "temperature_schedule",
]


def get_quantizer(name: str, **kwargs) -> nn.Module:
    """Builds discrete quantizer `name` ("vq", "rvq", "pvq", "fsq", "scalar", "gumbel").

    Keyword arguments are the module's attributes; the config-style names of `ALIASES`
    (commitment_cost, ema_decay, dead_code_threshold, latent_dim) are accepted too.
    """
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; known: {', '.join(QUANTIZERS)}")
    renamed = {}
    for key, value in kwargs.items():
        target = ALIASES.get(key, key)
        if target in renamed:
            raise ValueError(f"{key!r} and {target!r} both given")
        renamed[target] = value
    unknown = set(renamed) - {"dim", *option_names(name)}
    if unknown:
        raise ValueError(
            f"quantizer {name!r} has no option {', '.join(map(repr, sorted(unknown)))} "
            f"(its options: {', '.join(option_names(name))})"
        )
    return QUANTIZERS[name](**renamed)


def option_names(name: str) -> tuple[str, ...]:
    """The attributes of quantizer `name` that a config sub-dict may set (all but `dim`,
    which the model supplies)."""
    fields = dataclasses.fields(QUANTIZERS[name])
    return tuple(f.name for f in fields if f.init and f.name not in ("parent", "name", "dim"))


def freeze(options: Mapping[str, Any]) -> FrozenDict:
    """A model's `quantizer` argument, checked, as a hashable FrozenDict (nested lists become
    tuples).

    Raises:
      TypeError: not a mapping, e.g. a bare name, which meant other defaults before the
        sub-dict (`from_legacy_kwargs` translates such arguments).
      ValueError: an unknown quantizer name or option.
    """
    if not isinstance(options, Mapping):
        raise TypeError(
            f"quantizer must be a dict(name=..., **options), got {options!r} (flat arguments "
            "of older exports and configs: nlq_jax.quantizers.from_legacy_kwargs)"
        )
    name = options.get("name")
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; known: {', '.join(QUANTIZERS)}")
    names = option_names(name)
    aliases = {alias for alias, target in ALIASES.items() if target in names}
    unknown = set(options) - {"name", *names, *aliases}  # `dim` too: the model's latent_dim
    if unknown:
        raise ValueError(
            f"quantizer {name!r} has no option {', '.join(map(repr, sorted(unknown)))} "
            f"(its options: {', '.join(option_names(name))})"
        )

    def frozen(value):
        if isinstance(value, Mapping):
            return FrozenDict({k: frozen(v) for k, v in value.items()})
        if isinstance(value, (list, tuple)):
            return tuple(frozen(v) for v in value)
        return value

    return frozen(options)


# The flat model arguments of the quantizer (nlq.Model and vqvae2.Model until the sub-dict),
# with their defaults then; the name, codebook size and stage count defaulted per model.
LEGACY_DEFAULTS = {
    "groups": 1,
    "levels": (8, 5, 5, 5),
    "commitment_cost": 0.25,
    "ema_decay": 0.99,
    "dead_code_threshold": 1.0,
    "kmeans_init": True,
    "stage_dropout": 1.0,
    "temperature": 1.0,
    "temperature_end": 1.0 / 16,
    "temperature_decay_steps": 0,
    "rvq_commitment": "stages",
}
LEGACY_MODELS = {
    "nlq": {"quantizer": "rvq", "codebook_size": 8192, "num_stages": 3},
    "vqvae2": {"quantizer": "vq", "codebook_size": 512, "num_stages": 2},
}


def from_legacy_kwargs(model_name: str, kwargs: Mapping[str, Any]) -> dict:
    """Model arguments with the quantizer's flat options (exports and configs written before
    the sub-dict: `quantizer="rvq", codebook_size=64, num_stages=2, ...`) → the same model's
    arguments with a `quantizer` sub-dict; other arguments, and other models', unchanged.

    The sub-dict is what the flat options built: the same quantizer, the same parameters and
    the same outputs, so exported weights load into it. The caller keeps the arguments as
    stored for anything hashed (an export's description).

    Raises:
      ValueError: flat options beside a `quantizer` sub-dict.
    """
    kwargs = dict(kwargs)
    if model_name not in LEGACY_MODELS:
        return kwargs
    names = (*LEGACY_DEFAULTS, "codebook_size", "num_stages")
    flat = {k: kwargs.pop(k) for k in names if k in kwargs}
    if not flat and not isinstance(kwargs.get("quantizer"), str):
        return kwargs  # already a sub-dict, or the model's default quantizer
    name = kwargs.get("quantizer", LEGACY_MODELS[model_name]["quantizer"])
    if not isinstance(name, str):
        raise ValueError(f"flat quantizer options {sorted(flat)} beside a quantizer sub-dict")
    o = {**LEGACY_DEFAULTS, **LEGACY_MODELS[model_name], **flat}
    levels = tuple(int(n) for n in o["levels"])
    vq = {
        "codebook_size": o["codebook_size"],
        "beta": o["commitment_cost"],
        "decay": o["ema_decay"],
        "dead_threshold": o["dead_code_threshold"],
        "kmeans_init": o["kmeans_init"],
    }
    if name == "vq":
        options = vq
    elif name == "rvq":
        dropout = {"dropout": o["stage_dropout"] > 0, "dropout_rate": o["stage_dropout"]}
        options = {"num_stages": o["num_stages"], **vq, **dropout}
        options["commitment"] = o["rvq_commitment"]
    elif name == "pvq":
        options = {"groups": o["groups"], **vq}
    elif name == "fsq":
        options = {"levels": levels}
    elif name == "scalar":
        # Levels per channel, or levels[0] for every channel when their count is not D.
        per_channel = len(levels) == kwargs.get("latent_dim", 64)
        options = {"levels": levels if per_channel else levels[0]}
    elif name == "gumbel":
        names = ("codebook_size", "temperature", "temperature_end", "temperature_decay_steps")
        options = {k: o[k] for k in names}
    else:
        raise ValueError(f"unknown quantizer {name!r}; known: {', '.join(QUANTIZERS)}")
    kwargs["quantizer"] = {"name": name, **options}
    return kwargs
