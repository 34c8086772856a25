"""The model shipped inside the package: loadable by name, used by `nlq compress` without
flags, found by `nlq decompress` on a fresh install, and a starting point for fine-tuning."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nlq_jax import checkpoint, cli, pretrained, train
from nlq_jax.codec.api import Codec
from nlq_jax.errors import CheckpointError

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "default_model.py")


def test_the_default_model_ships_with_its_card():
    directory = pretrained.resolve("default")
    meta = checkpoint.read_meta(directory)
    assert meta["model"] == "mean_scale"
    card = (directory / "MODEL_CARD.md").read_text()
    for needed in ("BSDS500", "Licence", "steps", "Kodak"):
        assert needed in card, needed


def test_compress_and_decompress_without_flags(tmp_path, photo, monkeypatch, capsys):
    """A fresh install: an empty model index, no --checkpoint anywhere."""
    monkeypatch.setenv("NLQ_HOME", str(tmp_path / "fresh_home"))
    src, nlq, out = tmp_path / "in.png", tmp_path / "in.nlq", tmp_path / "out.png"
    Image.fromarray(photo[:96, :128]).save(src)
    assert cli.main(["compress", str(src), str(nlq)]) == 0
    (tmp_path / "fresh_home" / "models.json").unlink(missing_ok=True)  # forget what it learnt
    assert cli.main(["decompress", str(nlq), str(out)]) == 0
    expected = Codec.load("default").decompress(nlq.read_bytes())
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)
    # It compresses: a real model, not an untrained one (which decodes at ≈7 dB).
    err = (np.asarray(Image.open(out), np.float64) - photo[:96, :128]) ** 2
    assert 10 * np.log10(255**2 / err.mean()) > 20


def test_fine_tuning_starts_from_the_shipped_weights(tmp_path):
    from nlq_jax.config_base import load_config

    config = _config("runlocal,finetune")
    trainer = train.Trainer(config, tmp_path)
    state = train.initialize_from_export(trainer, trainer.init_state(), config.init_from)
    shipped = Codec.load("default")
    leaves = zip(
        np.asarray(state.params["g_a"]["layers_0"]["conv"]["kernel"]).ravel(),
        np.asarray(shipped.params["g_a"]["layers_0"]["conv"]["kernel"]).ravel(),
    )
    assert all(a == b for a, b in leaves)
    assert int(state.step) == 0
    # Another model's export is refused in one line.
    other = load_config("mean_scale:runlocal")
    with pytest.raises(CheckpointError, match="cannot fine-tune") as e:
        train.initialize_from_export(train.Trainer(other, tmp_path), None, "default")
    assert "\n" not in str(e.value)


def _config(variant: str):
    sys.path.insert(0, str(ROOT / "configs"))
    try:
        import default_model
    finally:
        sys.path.pop(0)
    return default_model.get_config(variant)


@pytest.mark.slow
def test_nlq_train_finetune_as_documented(tmp_path):
    """`nlq train --config=configs/default_model.py:finetune --workdir=...` with overrides."""
    workdir = tmp_path / "ft"
    cmd = [
        sys.executable, "-m", "nlq_jax.cli", "train", f"--config={CONFIG}:runlocal,finetune",
        f"--workdir={workdir}", "--config.num_steps=3", "--config.eval.source=",
    ]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "initialised the weights from the export default" in proc.stdout + proc.stderr
    result = json.loads((workdir / "metrics.json").read_text())
    assert result["step"] == 3
    assert (workdir / "export" / "model.json").is_file()
