"""Compression models, one module per architecture, selected by name.

`config.model.name = "hyperprior"` imports `nlq_jax.models.hyperprior`; every such module
exports `Model` (a Flax Linen module), `get_default_sizes(quality)`, `build_tables(model,
params)`, `compress`/`decompress` (the bitstream path, see
`nlq_jax.latent_codecs.bitstream`), and for
bounded decoding `stream_specs(model, height, width)` (what each stream of a file must be) and
`decode_memory(model, height, width)` (an upper bound on what decoding allocates).
"""

from __future__ import annotations

import importlib
from types import ModuleType

import flax.linen as nn

MODELS = (
    "factorized",
    "hyperprior",
    "mean_scale",
    "joint",
    "checkerboard",
    "channelwise",
    "cheng2020_anchor",
    "cheng2020_attn",
    "elic",
    "nlq",
    "vqvae2",
)


def get_module(name: str) -> ModuleType:
    """The module that implements model `name`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}")
    return importlib.import_module(f"nlq_jax.models.{name}")


def get_model(name: str, **kwargs) -> nn.Module:
    """Builds model `name` with keyword arguments (the config's `model` dict minus `name`)."""
    return get_module(name).Model(**kwargs)


def coding_options(model: nn.Module) -> frozenset[str]:
    """The coding options a model's `compress`/`decompress` take ("roi", "roi_gain",
    "roi_stages_outside", "num_stages"): its latent codecs' (`composed.coding_options`)."""
    from nlq_jax.models import composed

    return composed.coding_options(model)


def models_with(option: str) -> list[str]:
    """The models whose default configuration takes the coding option `option`."""
    return [name for name in MODELS if option in coding_options(get_model(name))]
