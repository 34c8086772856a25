"""experiments/nlq_studies.py and experiments/roi_kodak.py, run in the forms their docstrings
and docs/results/nlq/README.md document, at toy sizes on a folder of two small photographs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nlq_jax.data import samples

ROOT = Path(__file__).resolve().parents[1]
TOY = [
    "--config.num_steps=3", "--config.model.N=16", "--config.model.latent_dim=8",
    "--config.model.quantizer.codebook_size=16", "--config.prior_fit_batches=1",
    "--config.checkpoint_every=3", "--config.log_every=1",
]  # fmt: skip


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "coffee"):
        Image.fromarray(samples.sample_images()[name][:128, :192]).save(folder / f"{name}.png")
    return folder


def run(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_studies_train_resume_and_publish(photos, tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    # The documented form (experiments/README.md), with --studies and toy overrides.
    train = ["experiments/nlq_studies.py", "train", "--train", f"folder:{photos}",
             "--eval", f"folder:{photos}", "--out", str(runs), "--studies", "num_stages",
             "--", *TOY]  # fmt: skip
    out = run(*train)
    assert (runs / "num_stages=4" / "metrics.json").exists()
    # Run again: nothing is trained twice.
    assert out.count("finished, not trained again") == 0
    again = run(*train)
    assert again.count("finished, not trained again") == 1
    run("experiments/nlq_studies.py", "publish", "--out", str(runs), "--images", str(photos),
        "--baselines", "docs/results/kodak",
        "--reference", "docs/results/default_model/results.json",
        "--results", str(results))  # fmt: skip
    summary = json.loads((results / "studies.json").read_text())
    assert set(summary["studies"]) == {"num_stages"}
    assert "base" in summary["missing"]  # the studies not trained are listed, not invented
    (stages,) = summary["studies"]["num_stages"]
    assert [p["stages"] for p in stages["prefixes"]] == [1, 2, 3, 4]
    # A prefix of more stages is a longer file.
    bpp = [p["bpp"] for p in stages["prefixes"]]
    assert bpp == sorted(bpp) and len(set(bpp)) == 4
    assert np.isclose(stages["prefixes"][-1]["bpp"], stages["bpp"])
    assert len(stages["code_use"]) == 4 and all(0 < u <= 1 for u in stages["code_use"])
    table = (results / "num_stages.md").read_text()
    assert "| 4 |" in table and "gain over n − 1" in table
    for name in ("num_stages.png", "rd.png"):
        assert (results / name).stat().st_size > 0


def test_unknown_study_is_a_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "experiments/nlq_studies.py", "train", "--train=samples",
         "--eval=samples", f"--out={tmp_path}", "--studies=latent"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("studies: unknown ['latent']")


def test_roi_kodak_measures_a_scalar_model(photos, tmp_path):
    out = run("experiments/roi_kodak.py", "--images", str(photos), "--checkpoint", "default",
              "--gains", "4", "--out", str(tmp_path / "roi.json"))  # fmt: skip
    result = json.loads((tmp_path / "roi.json").read_text())
    m = result["summary"]["gain=4"]
    assert result["images"] == 2 and "| gain=4 |" in out
    # Equal size within 1 %, the region better and the rest worse (see test_roi_scalar.py).
    assert abs(m["bytes"] - m["plain_bytes"]) <= 0.01 * m["plain_bytes"]
    assert m["inside_gain"] > 0 > m["outside_gain"]
