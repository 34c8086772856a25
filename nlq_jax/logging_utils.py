"""Training logs: a progress bar, TensorBoard event files, and a JSON-lines metrics file.

Only the main process writes; the others get a silent logger. `workdir/metrics.jsonl` holds
one line per logged step (what the tests and scripts read); `workdir/tb/` the TensorBoard
scalars and reconstructions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

_DISCRETE = {"fixed_bpp": ".3f", "usage": ".2f", "perplexity": ".4g", "dead_codes": ".4g"}


class _Bar:
    def __init__(self, start: int, total: int, enabled: bool):
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=start, unit="step", dynamic_ncols=True, file=sys.stderr,
                desc="train", smoothing=0.1,
            )  # fmt: skip

    def advance(self) -> None:
        """One more step (no device values needed: the bar never waits for the device)."""
        if self._bar is not None:
            self._bar.update(1)

    def show(self, metrics: dict) -> None:
        """Shows fetched metrics beside the bar, until the next fetch."""
        if self._bar is not None:
            shown = {
                "loss": f"{float(metrics['loss']):.4g}",
                "bpp": f"{float(metrics['bpp']):.3f}",
                "psnr": f"{float(metrics['psnr']):.2f}",
            }
            # Discrete latents: codebook health and the fixed-length rate beside the coded one.
            for key, fmt in _DISCRETE.items():
                if key in metrics:
                    shown[key] = format(float(metrics[key]), fmt)
            self._bar.set_postfix(shown, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Logger:
    """Writes scalars, images and messages for one run (no-ops when not `enabled`)."""

    def __init__(self, workdir: Path, enabled: bool = True):
        self.workdir = Path(workdir)
        self.enabled = enabled
        self._writer = None
        if enabled:
            from tensorboardX import SummaryWriter

            self._writer = SummaryWriter(str(self.workdir / "tb"))

    def progress(self, start: int, total: int) -> _Bar:
        return _Bar(start, total, self.enabled)

    def info(self, message: str) -> None:
        """A progress line on stderr (above the bar, if one is showing)."""
        if self.enabled:
            from tqdm.auto import tqdm

            tqdm.write(message, file=sys.stderr)
            sys.stderr.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        for k, v in values.items():
            self._writer.add_scalar(k, v, step)
        with open(self.workdir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def reconstruction(self, step: int, trainer, state, holdout) -> None:
        """Logs original | reconstruction (eval-mode forward) of the first held-out image."""
        if not self.enabled or not holdout:
            return
        import jax

        from nlq_jax.codec.api import pad_to_multiple, to_model_input
        from nlq_jax.codec.image_io import to_uint8

        _, pixels = holdout[0]
        x = pad_to_multiple(to_model_input(pixels[:512, :512]), trainer.model.stride)
        variables = jax.device_get({"params": state.params, **state.model_state})
        out = trainer.model.apply(variables, x, training=False)
        h, w = min(512, pixels.shape[0]), min(512, pixels.shape[1])
        side = np.concatenate([pixels[:h, :w], to_uint8(np.asarray(out["x_hat"])[0, :h, :w])], 1)
        self._writer.add_image("reconstruction", side, step, dataformats="HWC")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
