"""The `nlq` command line as documented: every sub-command, the README's command lines, and
training by config name from any directory with progress lines and a closing summary."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nlq_jax import cli, config_base

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _nlq(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """`nlq ARGS` in a new process, as a user types it (the console script runs cli.main)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "nlq_jax.cli", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_command_and_each_command_has_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    listed = re.findall(r"^    (\w+)\s", capsys.readouterr().out, re.M)
    assert listed == list(cli.COMMANDS)
    for name in cli.COMMANDS:
        if name == "train":
            continue  # absl's help, in a process of its own below
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0
        assert f"usage: nlq {name}" in capsys.readouterr().out


def test_train_help_shows_the_real_flags(tmp_path):
    proc = _nlq("train", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    assert "--config" in proc.stdout and "--workdir" in proc.stdout


def _documented_commands() -> list[tuple[str, list[str]]]:
    """Every `nlq ...` command line in a bash block of the README and docs/."""
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(encoding="utf-8"), re.S):
            text = re.sub(r"\\\n\s*", " ", block)
            for line in text.splitlines():
                line = line.split("  #")[0].strip()
                if line.startswith("nlq "):
                    found.append((f"{doc.relative_to(ROOT)}: {line}", shlex.split(line)[1:]))
    return found


def test_every_documented_command_line_parses(tmp_path, monkeypatch):
    """Each `nlq` line of the docs names a real command with known flags, and each `nlq train`
    line's config resolves from a directory without configs/, with its overrides existing."""
    commands = _documented_commands()
    assert len(commands) >= 10, commands
    monkeypatch.chdir(tmp_path)
    # The shell variables the documented loops and commands use.
    for name, value in {"M": "psnr", "O": "psnr", "T": "title", "R": "r", "KODAK": "k"}.items():
        monkeypatch.setenv(name, value)
    for where, argv in commands:
        name, args = argv[0], [os.path.expandvars(a) for a in argv[1:]]
        assert name in cli.COMMANDS, where
        if name == "train":
            flags = dict(a.removeprefix("--").split("=", 1) for a in args if "=" in a)
            config = config_base.load_config(flags.pop("config"))
            flags.pop("workdir")
            for field in flags:
                assert config.get_ref(field.removeprefix("config.")) is not None, where
            continue
        parser = cli.argparse.ArgumentParser(prog=f"nlq {name}")
        cli._command_module(name).add_arguments(parser, name)
        try:
            parser.parse_args(args)
        except SystemExit as e:
            raise AssertionError(f"does not parse: {where}") from e


def test_documented_pytest_lines_take_their_flags():
    """The docs' inline `python -m pytest ...` lines (the CI's own command, in a code block, is
    what .ci/run runs) name files that exist and flags that parse (`-n 0 -s`): collected in a
    subprocess, not run."""
    lines = {m for doc in DOCS for m in re.findall(r"`(python -m pytest [^`]+)`", doc.read_text())}
    assert lines
    for line in lines:
        argv = [*shlex.split(line)[3:], "--collect-only", "-q"]
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, (line, proc.stdout[-2000:], proc.stderr[-2000:])


def test_configs_by_name_are_the_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here, as for an installed wheel
    by_path = config_base.load_config(str(ROOT / "configs" / "hyperprior.py") + ":quality=5")
    for spec in (
        "hyperprior:quality=5",
        "configs/hyperprior.py:quality=5",
        "hyperprior.py:quality=5",
    ):
        assert config_base.load_config(spec).to_dict() == by_path.to_dict(), spec
    assert config_base.load_config("hyperprior:quality=5").lmbda == config_base.MSE_LAMBDAS[4]
    assert "quickstart" in config_base.config_names()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--config=factorized:runlocal", "--config.lmbdaa=1"],
            "has no field 'lmbdaa'; Did you mean \"lmbda\"",
        ),
        (["--config=factorized:bogus"], "unknown config variant(s) ['bogus']"),
        (["--config=no_such_config"], "no shipped config of that name"),
        (
            ["--config=factorized:runlocal", "--config.lmbda=abc"],
            "could not convert string to float",
        ),
        (["--", "--config=factorized:runlocal"], "unexpected arguments"),
        (
            ["--config=rvq:runlocal", "--config.model.quantizer.codebook_sise=3"],
            "has no field 'codebook_sise'; Did you mean \"codebook_size\"",
        ),
        # The flat form of older configs: the quantizer's options are in its sub-dict now.
        (["--config=rvq:runlocal", "--config.model.codebook_size=64"], "no field 'codebook_size'"),
    ],
)
def test_bad_training_flags_are_one_line(tmp_path, flags, expected):
    proc = _nlq("train", *flags, f"--workdir={tmp_path / 'w'}", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("nlq train: error:") and len(proc.stderr.splitlines()) == 1
    assert expected in proc.stderr, proc.stderr
    assert not (tmp_path / "w").exists()


def test_quantizer_options_are_overridden_in_the_documented_form(tmp_path):
    """`nlq train --config=rvq:runlocal --config.model.quantizer.codebook_size=32` (README): one
    option of the quantizer's sub-dict, set on the locked config, reaches the model's quantizer
    (here also the cosine distance, which no flat config could set)."""
    code = (
        "import sys; from nlq_jax import main, models, train; from nlq_jax.models import nlq; "
        "main.parse_flags(sys.argv[1:]); c = main._CONFIG.value; "
        "q = nlq.build_quantizer(models.get_model(c.model.name, **train.model_kwargs(c))); "
        "print(q.codebook_size, q.distance, q.num_stages)"
    )
    argv = ["nlq train", "--config=rvq:runlocal", "--config.model.quantizer.codebook_size=32",
            "--config.model.quantizer.distance=cosine", f"--workdir={tmp_path}"]  # fmt: skip
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["32", "cosine", "3"]


@pytest.mark.slow
def test_train_by_name_from_anywhere_says_what_it_does_and_where_outputs_went(tmp_path):
    """`nlq train --config=NAME:variant --workdir=DIR --config.X=...` run outside the repository."""
    workdir = tmp_path / "run"
    proc = _nlq(
        "train", "--config=factorized:runlocal", f"--workdir={workdir}",
        "--config.num_steps=3", "--config.log_every=2", "--config.checkpoint_every=100",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr
    for line in ("compiling the train step", "first step done in", "exporting the model",
                 "evaluating on", "done: step 3", f"outputs in {workdir}"):  # fmt: skip
        assert line in err, line
    assert err.index("compiling") < err.index("exporting") < err.index("done: step 3")
    assert f"--checkpoint {workdir / 'export'}" in err
    # Metrics were fetched at log steps only: step 2 (log_every) and 3 (the last).
    logged = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [2, 3]
    assert (workdir / "export" / "model.json").is_file()
