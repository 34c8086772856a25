"""experiments/ablate.py: sweep parsing, skipping finished runs, and the summary it writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ablate", ROOT / "experiments" / "ablate.py")
ablate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablate)


def test_sweep_is_parsed_and_bad_sweeps_are_one_line_errors():
    assert ablate.parse_sweep("model.codebook_size=64, 256") == (
        "model.codebook_size",
        ["64", "256"],
    )
    for bad in ("model.N", "=1,2", "model.N="):
        with pytest.raises(SystemExit, match="FIELD=V1"):
            ablate.parse_sweep(bad)


def test_finished_runs_are_not_rerun_and_the_summary_lists_each_value(tmp_path, capsys):
    evals = {"16": (0.41, 27.5), "32": (0.38, 28.9)}
    for value, (bpp, psnr) in evals.items():
        run = tmp_path / f"model.N={value}"
        run.mkdir()
        result = {"step": 20, "eval": {"bpp": bpp, "psnr-rgb": psnr}}
        (run / "metrics.json").write_text(json.dumps(result))
    # A config that does not exist: any attempt to train would fail the test.
    ablate.main(["--config=missing.py", "--sweep=model.N=16,32", f"--out={tmp_path}"])
    summary = json.loads((tmp_path / "ablation.json").read_text())
    assert [r["value"] for r in summary["runs"]] == ["16", "32"]
    assert [r["eval"]["bpp"] for r in summary["runs"]] == [0.41, 0.38]
    assert (tmp_path / "ablation.png").stat().st_size > 0
    assert "| 32 | 0.38 | 28.9 |" in capsys.readouterr().out
