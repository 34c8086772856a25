"""The trainer: compiled once, device-count invariant, multi-host, resumable, NaN-safe."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from nlq_jax import checkpoint, train
from nlq_jax.config_base import MSE_LAMBDAS, load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "hyperprior.py") + ":runlocal"
FAST = ["--config.eval.source=", "--config.log_every=1", "--config.image_every=0"]


def _run(workdir, *flags, devices=1, env=None, wait=True, timeout=600):
    cmd = [sys.executable, "-m", "nlq_jax.main", f"--config={CONFIG}", f"--workdir={workdir}"]
    full_env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    full_env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    full_env.update(env or {})
    proc = subprocess.Popen(
        [*cmd, *FAST, *flags], env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=ROOT,
    )  # fmt: skip
    if not wait:
        return proc
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _losses(workdir) -> dict[int, float]:
    """step → loss, the last logged value of each step (a resumed run logs some steps twice)."""
    out = {}
    for line in Path(workdir, "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" in rec:
            out[rec["step"]] = rec["loss"]
    return out


def _steps_logged(log: Path) -> list[int]:
    steps = []
    for line in log.read_text().splitlines():
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            pass  # a line still being written
    return steps


def test_configs_are_locked_and_follow_the_lambda_ladder():
    for q in range(1, 9):
        c = load_config(f"hyperprior:quality={q}")
        assert c.lmbda == MSE_LAMBDAS[q - 1]
    with pytest.raises(AttributeError):
        c.lmda = 0.1  # a typo is an error, not a new field
    with pytest.raises(ValueError, match="unknown config variant"):
        load_config("hyperprior:qualty=3")


def test_step_compiles_once_and_learns():
    config = load_config("hyperprior:runlocal")
    with config.unlocked():
        config.optimizer.learning_rate = 1e-3
    trainer = train.Trainer(config, "/tmp/unused")
    state = trainer.init_state()
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 64, 64, 3)).astype(np.float32)
    x = (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3  # a little structure
    losses = []
    for _ in range(30):
        batch = {"image": x + rng.normal(0, 0.01, x.shape).astype(np.float32)}
        state, metrics = trainer.train_step(state, batch, jax.random.PRNGKey(0))
        losses.append(float(metrics["loss"]))
    assert trainer.trace_count == 1
    assert int(state.step) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


@pytest.mark.slow
def test_eight_devices_give_the_losses_of_one(tmp_path):
    flags = ["--config.num_steps=3", "--config.data.batch_size=8"]
    runs = {"1": (1, []), "8": (8, []), "8-fsdp": (8, ["--config.sharding.fsdp=True"])}
    results = {}
    for name, (devices, extra) in runs.items():
        rc, _, err = _run(tmp_path / name, *flags, *extra, devices=devices)
        assert rc == 0, err
        results[name] = _losses(tmp_path / name)
    assert sorted(results["1"]) == [1, 2, 3]
    for name in ("8", "8-fsdp"):
        for step, loss in results["1"].items():
            assert results[name][step] == pytest.approx(loss, rel=1e-4), (name, step)


@pytest.mark.slow
def test_two_processes_with_jax_distributed_train(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        _run(
            tmp_path / "run",
            "--config.num_steps=3",
            devices=2,
            wait=False,
            env={
                "NLQ_COORDINATOR": f"127.0.0.1:{port}",
                "NLQ_NUM_PROCESSES": "2",
                "NLQ_PROCESS_ID": str(i),
            },
        )  # fmt: skip
        for i in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    assert sorted(_losses(tmp_path / "run")) == [1, 2, 3]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["step"] == 3


@pytest.mark.slow
def test_killed_run_resumes_and_matches_an_uninterrupted_one(tmp_path):
    # 200 steps: the kill must land after step 15 and before the end even on a loaded machine
    # (with 30, a run on a busy machine once finished between two polls).
    flags = ["--config.num_steps=200", "--config.checkpoint_every=10"]
    rc, _, err = _run(tmp_path / "ref", *flags)
    assert rc == 0, err
    reference = _losses(tmp_path / "ref")

    proc = _run(tmp_path / "run", *flags, wait=False)
    log = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:
        committed = (tmp_path / "run" / "checkpoints" / "10" / "commit_success.txt").exists()
        if committed and log.exists() and max(_steps_logged(log), default=0) >= 15:
            break
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert max(_losses(tmp_path / "run")) < 200  # it really was interrupted

    rc, _, err = _run(tmp_path / "run", *flags)
    assert rc == 0, err
    assert "resumed from step" in err
    resumed = _losses(tmp_path / "run")
    assert sorted(resumed) == sorted(reference)
    for step in range(11, 201):
        assert resumed[step] == pytest.approx(reference[step], rel=1e-5), step


@pytest.mark.slow
def test_nan_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(tmp_path):
    rc, _, err = _run(
        tmp_path, "--config.num_steps=20", "--config.checkpoint_every=5",
        "--config.debug_inject_nan_at=12", "--config.log_every=100",
    )  # fmt: skip
    # Metrics are fetched only at log, checkpoint and evaluation steps (log_every=100 here):
    # the non-finite loss of step 12 is found at step 15's checkpoint, before it is written.
    assert rc == 2
    last = err.strip().splitlines()[-1]
    assert "step 12" in last and "Last good checkpoint: step 10" in last, err
    assert "Traceback" not in err
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert max(kept) == 10
    assert not (tmp_path / "export").exists()


@pytest.mark.slow
def test_quickstart_writes_every_promised_file(tmp_path):
    config = ROOT / "configs" / "quickstart.py"
    cmd = [
        sys.executable,
        "-m",
        "nlq_jax.main",
        f"--config={config}:runlocal",
        f"--workdir={tmp_path}",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    files = ["export/model.json", "metrics.json", "rd.png", "reconstruction.png", "report.md"]
    for name in [*files, "results.json", "baselines/jpeg.json", "baselines/webp.json"]:
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / "tb").iterdir())
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["compilations"] == 1
    ours = metrics["report"]["ours"]
    assert ours["bpp"] == pytest.approx(metrics["eval"]["bpp"])
    assert "real bitstreams" in result.stderr


def _damage(step_dir: Path, how: str) -> None:
    """The three damages of issue 15: emptied metadata, deleted data files, an empty folder."""
    import shutil

    if how == "empty_metadata":
        (step_dir / "state" / "_METADATA").write_bytes(b"")
    elif how == "deleted_data":
        for path in (step_dir / "state").rglob("*"):
            if path.is_file() and "ocdbt" in str(path.relative_to(step_dir / "state")):
                path.unlink()
        shutil.rmtree(step_dir / "state" / "d", ignore_errors=True)
    else:
        shutil.rmtree(step_dir)
        step_dir.mkdir()


def test_resume_falls_back_past_a_damaged_latest_checkpoint(tmp_path, capsys):
    import shutil

    config = load_config("factorized:runlocal")
    with config.unlocked():
        config.num_steps, config.checkpoint_every, config.log_every = 4, 2, 2
        config.eval.source, config.image_every, config.async_checkpoints = "", 0, False
    first = tmp_path / "first"
    train.train_and_evaluate(config, first)
    for how in ("empty_metadata", "deleted_data", "empty_folder"):
        workdir = tmp_path / how
        shutil.copytree(first, workdir)
        shutil.rmtree(workdir / "export")
        _damage(workdir / "checkpoints" / "4", how)
        capsys.readouterr()
        result = train.train_and_evaluate(config, workdir)
        err = capsys.readouterr().err
        assert result["step"] == 4, how
        if how != "empty_folder":  # Orbax may not even list an empty folder as a step
            assert "warning: checkpoint step 4 cannot be restored" in err, (how, err)
            assert len(list((workdir / "checkpoints_damaged").iterdir())) == 1, how
        assert "resumed from step 2" in err, (how, err)
        # The resumed run trained steps 3 and 4 again, and saved a fresh step 4.
        assert [r["step"] for r in map(json.loads, (workdir / "metrics.jsonl").open())][-1] == 4
        assert (workdir / "checkpoints" / "4" / "state").is_dir(), how


def _mount_tmpfs(path: Path, size: str) -> bool:
    """Mounts a small tmpfs at `path` where this process may (root on Linux); False otherwise."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return False
    path.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    return subprocess.run(cmd, capture_output=True).returncode == 0


def test_full_disk_ends_in_one_line_with_nothing_half_written(tmp_path, monkeypatch):
    disk = tmp_path / "disk"
    if _mount_tmpfs(disk, "3m"):  # a real full disk: the state needs ≈3.6 MB with margin
        try:
            rc, _, err = _run(disk / "run", "--config.num_steps=4", "--config.checkpoint_every=2")
        finally:
            subprocess.run(["umount", str(disk)], check=False)
        assert rc == 2
        assert len(err.strip().splitlines()) == 1 and "not enough space" in err, err
    else:  # elsewhere, the disk reports 1 MB free
        free = __import__("shutil").disk_usage(tmp_path)._replace(free=1 << 20)
        monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda _: free)
        config = load_config("factorized:runlocal")
        with pytest.raises(train.TrainingError, match="not enough space") as e:
            train.train_and_evaluate(config, disk / "run")
        assert "\n" not in str(e.value)
        assert not list((disk / "run" / "checkpoints").glob("*"))


def test_write_failures_are_recognised_through_orbax_wrappers():
    from nlq_jax.main import write_failure

    wrapped = ValueError(
        'OUT_OF_RANGE: Error writing "params.w/0.0.0" in OCDBT database: Failed to write 687871 '
        "bytes to file 7: No space left on device [os_error_code='28']"
    )
    assert write_failure(wrapped) == "no space left on device"
    try:
        try:
            raise OSError(28, "No space left on device")
        except OSError as inner:
            raise RuntimeError("save failed") from inner
    except RuntimeError as outer:
        assert write_failure(outer) == "no space left on device"
    assert write_failure(ValueError("shapes differ")) is None


def test_ms_ssim_with_crops_too_small_for_its_scales_is_one_line(tmp_path):
    config = load_config("mean_scale:msssim,runlocal")
    assert config.data.crop_size >= 161  # the debug variant itself is usable
    with config.unlocked():
        config.data.crop_size = 64
    with pytest.raises(train.TrainingError, match="at least 161 pixels") as e:
        train.Trainer(config, tmp_path)
    assert "\n" not in str(e.value)
