"""experiments/ablate.py: sweep parsing, skipping finished runs, and the summary it writes."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("ablate", ROOT / "experiments" / "ablate.py")
ablate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablate)


def test_sweep_is_parsed_and_bad_sweeps_are_one_line_errors():
    assert ablate.parse_sweep("model.quantizer.codebook_size=64, 256") == (
        "model.quantizer.codebook_size",
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


def test_documented_sweeps_name_fields_of_their_configs():
    """experiments/README.md's ablations, as written: each swept field (e.g. a quantizer option,
    `model.quantizer.distance`) is a field of its config, so `--config.FIELD=V` overrides it."""
    from nlq_jax import config_base

    text = (ROOT / "experiments" / "README.md").read_text().replace("\\\n", " ")
    sweeps = re.findall(r"ablate\.py --config=(\S+)\s+--sweep=(\S+)", text)
    assert len(sweeps) >= 6, sweeps
    for config, sweep in sweeps:
        field, values = ablate.parse_sweep(sweep)
        *parents, last = field.split(".")
        node = config_base.load_config(config)  # locked: an unknown field is an error
        for name in parents:
            node = node[name]
        default = node[last]
        for value in values:  # each value is one of the field's type
            node[last] = value if isinstance(default, str) else type(default)(value)
