"""The configs of cheng2020-anchor, cheng2020-attn and ELIC: their documented command lines
resolve, the λ ladder and sizes follow the quality, and their tiny variant takes training
steps."""

from __future__ import annotations

import importlib
import re
import shlex

import jax
import numpy as np
import pytest

from nlq_jax import config_base, train
from nlq_jax.config_base import MSE_LAMBDAS

NEW = ("cheng2020_anchor", "cheng2020_attn", "elic")


@pytest.mark.parametrize("name", NEW)
def test_documented_command_resolves(name):
    doc = importlib.import_module(f"configs.{name}").__doc__
    line = re.sub(r"\\\n\s*", " ", doc.split("\n\n")[1]).strip()
    argv = shlex.split(line)
    assert argv[:3] == ["python", "-m", "nlq_jax.main"], line
    flags = dict(a.removeprefix("--").split("=", 1) for a in argv[3:])
    config = config_base.load_config(flags.pop("config"))
    assert flags.pop("workdir")
    for field in flags:  # each override names an existing field
        node = config
        for part in field.removeprefix("config.").split("."):
            assert part in node, field
            node = node[part]
    assert config.model.name == name and config.lmbda == MSE_LAMBDAS[2]


@pytest.mark.parametrize("name", NEW)
def test_sizes_follow_the_quality(name):
    for q in (1, 6):
        c = config_base.load_config(f"configs/{name}.py:quality={q}")
        assert c.lmbda == MSE_LAMBDAS[q - 1]
        if name == "elic":
            assert (c.model.N, c.model.M) == (192, 320)
        else:  # CompressAI's cheng2020: N = M, 128 up to quality 3, then 192
            assert c.model.N == c.model.M == (128 if q <= 3 else 192)


@pytest.mark.slow
def test_elic_runlocal_trains(tmp_path):
    config = config_base.load_config("configs/elic.py:runlocal")
    trainer = train.Trainer(config, tmp_path)
    state = trainer.init_state()
    x = np.random.default_rng(0).uniform(size=(4, 64, 64, 3)).astype(np.float32)
    losses = []
    for i in range(3):
        state, metrics = trainer.train_step(state, {"image": x}, jax.random.PRNGKey(i))
        losses.append(float(metrics["loss"]))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
