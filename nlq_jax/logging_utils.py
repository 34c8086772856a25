"""Training logs: a progress bar, TensorBoard event files, and a JSON-lines metrics file.

Only the main process writes; the others get a silent logger. `workdir/metrics.jsonl` holds
one line per logged step (what the tests and scripts read); `workdir/tb/` the TensorBoard
scalars and reconstructions. The logger receives what it logs (scalars, images as arrays),
never the trainer or its state.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

_SHOWN = {"loss": ".4g", "bpp": ".3f", "psnr": ".2f"}
_SHOWN |= {"fixed_bpp": ".3f", "usage": ".2f", "perplexity": ".4g", "dead_codes": ".4g"}


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
            shown = {}
            # The rate (bpp for images) and quality; discrete latents: codebook health and the
            # fixed-length rate beside the coded one. Keys a run does not have are left out.
            for key, fmt in _SHOWN.items():
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
        """Logs scalars (TensorBoard and a line of metrics.jsonl) at `step`."""
        if not self.enabled:
            return
        for k, v in values.items():
            self._writer.add_scalar(k, v, step)
        with open(self.workdir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")

    def reconstruction(self, step: int, original: np.ndarray, reconstructed: np.ndarray) -> None:
        """Logs original | reconstruction side by side (uint8 H×W×C; the original is cut to
        the reconstruction's size, e.g. the trainer's 512² top-left corner)."""
        if not self.enabled:
            return
        h, w = reconstructed.shape[:2]
        side = np.concatenate([np.asarray(original)[:h, :w], np.asarray(reconstructed)], 1)
        self._writer.add_image("reconstruction", side, step, dataformats="HWC")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
