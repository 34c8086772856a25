"""The shipped configs show their own fields: a model's config writes out its constructor's
arguments, each with a comment, and names nothing the model does not take."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re

import pytest

from nlq_jax import config_base, models, train

# A model's identity, not an option: cheng2020_anchor and cheng2020_attn differ by it.
IDENTITY = {"attention"}


def _arguments(name: str) -> set[str]:
    fields = dataclasses.fields(models.get_module(name).Model)
    return {f.name for f in fields if f.init and f.name not in ("parent", "name")}


@pytest.mark.parametrize("config_name", config_base.config_names())
def test_every_config_field_is_an_argument_of_its_model(config_name):
    config = config_base.load_config(config_name)
    kwargs = train.model_kwargs(config)
    unknown = set(kwargs) - _arguments(config.model.name)
    assert not unknown, f"{config_name}: {sorted(unknown)} are not arguments of the model"


# The scalar-latent models' configs (the discrete ones share discrete_base's transform fields
# and write out their quantizer's sub-dict: tests/quantizers/test_registry.py).
MODEL_CONFIGS = [
    n for n in config_base.config_names() if n in models.MODELS and "quantizer" not in _arguments(n)
]


@pytest.mark.parametrize("config_name", MODEL_CONFIGS)
def test_a_model_config_writes_out_every_argument_with_a_comment(config_name):
    config = config_base.load_config(config_name)
    assert config.model.name == config_name
    assert set(config.model) - {"name"} == _arguments(config_name) - IDENTITY

    lines = inspect.getsource(importlib.import_module(f"configs.{config_name}")).splitlines()
    for field in config.model:
        at = [i for i, line in enumerate(lines) if re.match(rf"\s+c\.model\.{field} = ", line)]
        assert at, f"{config_name}: c.model.{field} is not written in the config file"
        i = at[0]
        commented = "#" in lines[i] or lines[i - 1].strip().startswith("#")
        assert commented, f"{config_name}: c.model.{field} has no comment"
