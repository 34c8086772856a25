"""Grain training pipeline: sharded, shuffled, randomly cropped and flipped batches.

::

    source ─► shard (process) ─► shuffle(seed, per epoch) ─► repeat(num_epochs)
           ─► random crop + flip (seed, per element)      [pad small images, or mark to skip]
           ─► skip & count unreadable / small              [counts ride on the next example]
           ─► batch(drop_remainder) ─► worker processes ─► stats (main process) ─► batch

Batches are ``{"image": float32 [batch_size, crop, crop, 3] in [0, 1]}``, ``batch_size`` per
process. Everything random derives from ``seed`` and the element's position, so the same seed,
shard and ``worker_count`` give the same batches, and the iterator's state
(``get_state``/``set_state``, or Grain's Orbax handler) resumes the exact continuation.

Counting skipped images: a plain Grain filter drops records without a trace, and counters
incremented inside worker processes never reach the trainer. So the skip stage attaches to each
example the number of records it skipped just before it, the counts are batched with the
images, and the outermost stage, in the trainer's process, sums them into
:class:`PipelineStats` (``iterator.stats``) and drops them from the batch. The counts are exact
for everything delivered, whatever ``worker_count``, and are part of the iterator's checkpointed
state. Not counted: records skipped after the last delivered example of a finite pipeline, and
examples dropped with the final partial batch. They are per process: sum them across hosts to
report a global figure.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any, Literal

import numpy as np

try:
    import grain
except ImportError as e:  # grain is in the [data] extra.
    raise ImportError("nlq_jax.data.pipeline needs grain: pip install 'nlq_jax[data]'") from e

from nlq_jax.data.records import ImageSource
from nlq_jax.errors import NLQError

_log = logging.getLogger(__name__)

_OK, _UNREADABLE, _SMALL = 0, 1, 2

# Each unreadable file is logged once per process, and at most this many files in all.
_MAX_WARNINGS = 100
_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclasses.dataclass
class PipelineStats:
    """Counts of what one process's training iterator delivered and skipped so far.

    Attributes:
        examples: Crops delivered in batches.
        padded: Of those, crops of an image smaller than the crop, padded by reflection.
        skipped_unreadable: Records skipped because the image could not be decoded.
        skipped_small: Records skipped because the image was smaller than the crop
            (``small="skip"``).
    """

    examples: int = 0
    padded: int = 0
    skipped_unreadable: int = 0
    skipped_small: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name, e.g. for a metrics writer."""
        return dataclasses.asdict(self)


def _warn_unreadable(name: str, error: str) -> None:
    with _warned_lock:
        if name in _warned or len(_warned) >= _MAX_WARNINGS:
            return
        _warned.add(name)
    _log.warning("skipping unreadable image %s: %s", name, error)


def _reflect_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Pads height and width up to at least ``size`` by reflection, centred."""
    missing = [max(size - n, 0) for n in image.shape[:2]]
    pads = [(m // 2, m - m // 2) for m in missing]
    return np.pad(image, [*pads, (0, 0)], mode="reflect")


class RandomCropFlip(grain.transforms.RandomMap):
    """Random ``crop_size``² crop and horizontal flip of a source record, as float32 in [0, 1].

    Marks records to skip instead of dropping them (a 1:1 map): unreadable ones, and ones
    smaller than the crop when ``small="skip"``; with ``small="pad"`` those are padded by
    reflection first.
    """

    def __init__(self, crop_size: int, small: Literal["pad", "skip"]):
        """Configures the transform.

        Args:
            crop_size: Side of the square crops.
            small: ``"pad"`` or ``"skip"`` images smaller than the crop.
        """
        self.crop_size = crop_size
        self.small = small

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        """Crops and flips one record; see the class docstring."""
        image = element["image"]
        if image is None:
            _warn_unreadable(element["name"], element.get("error", ""))
            return {"status": _UNREADABLE}
        size = self.crop_size
        padded = image.shape[0] < size or image.shape[1] < size
        if padded:
            if self.small == "skip":
                return {"status": _SMALL}
            image = _reflect_pad(image, size)
        top = rng.integers(0, image.shape[0] - size + 1)
        left = rng.integers(0, image.shape[1] - size + 1)
        crop = image[top : top + size, left : left + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return {
            "status": _OK,
            "image": crop.astype(np.float32) / np.float32(255),
            "padded": np.int32(padded),
        }


class _SkipAndCountIterator(grain.DatasetIterator):
    """Drops marked records; each example delivered carries the counts skipped before it."""

    def __init__(self, parent: grain.DatasetIterator, max_skipped_in_a_row: int | None):
        super().__init__(parent)
        self._max_skipped_in_a_row = max_skipped_in_a_row

    def __next__(self) -> dict[str, Any]:
        skipped = {_UNREADABLE: 0, _SMALL: 0}
        while True:
            element = next(self._parent)
            if element["status"] == _OK:
                return {
                    "image": element["image"],
                    "padded": element["padded"],
                    "skipped_unreadable": np.int32(skipped[_UNREADABLE]),
                    "skipped_small": np.int32(skipped[_SMALL]),
                }
            skipped[element["status"]] += 1
            limit = self._max_skipped_in_a_row
            if limit is not None and sum(skipped.values()) >= limit:
                raise NLQError(
                    f"{sum(skipped.values())} images in a row were unusable "
                    f"({skipped[_UNREADABLE]} unreadable, {skipped[_SMALL]} smaller than the "
                    "crop): check the data source, or pad small images (small='pad')"
                )

    def get_state(self) -> dict[str, Any]:
        return self._parent.get_state()

    def set_state(self, state: dict[str, Any]) -> None:
        self._parent.set_state(state)


class _SkipAndCount(grain.IterDataset):
    def __init__(self, parent: grain.IterDataset, max_skipped_in_a_row: int | None):
        super().__init__(parent)
        self._max_skipped_in_a_row = max_skipped_in_a_row

    def __iter__(self) -> _SkipAndCountIterator:
        return _SkipAndCountIterator(self._parent.__iter__(), self._max_skipped_in_a_row)

    def __str__(self) -> str:
        return "SkipAndCount"


class TrainIterator(grain.DatasetIterator):
    """The training iterator: batches ``{"image"}``, plus :attr:`stats` and checkpointable state.

    Attributes:
        stats: What this iterator delivered and skipped so far (restored with the state).
    """

    def __init__(self, parent: grain.DatasetIterator):
        """Wraps the batched iterator (internal; use :func:`train_pipeline`)."""
        super().__init__(parent)
        self.stats = PipelineStats()

    def __next__(self) -> dict[str, np.ndarray]:
        batch = next(self._parent)
        self.stats.examples += len(batch["image"])
        self.stats.padded += int(batch["padded"].sum())
        self.stats.skipped_unreadable += int(batch["skipped_unreadable"].sum())
        self.stats.skipped_small += int(batch["skipped_small"].sum())
        return {"image": batch["image"]}

    def get_state(self) -> dict[str, Any]:
        """Returns the position in the data and the stats (JSON-serializable)."""
        return {"parent": self._parent.get_state(), "stats": self.stats.as_dict()}

    def set_state(self, state: dict[str, Any]) -> None:
        """Moves to a position (and stats) returned by :meth:`get_state`."""
        self._parent.set_state(state["parent"])
        self.stats = PipelineStats(**state["stats"])


class TrainPipeline(grain.IterDataset):
    """A training pipeline definition; ``iter()`` gives a :class:`TrainIterator`."""

    def __iter__(self) -> TrainIterator:
        return TrainIterator(self._parent.__iter__())

    def __str__(self) -> str:
        return "TrainPipeline"


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise NLQError(message)


def train_pipeline(
    source: ImageSource,
    *,
    crop_size: int,
    batch_size: int,
    seed: int,
    shard_index: int | None = None,
    shard_count: int | None = None,
    small: Literal["pad", "skip"] = "pad",
    num_epochs: int | None = None,
    worker_count: int = 0,
    read_options: grain.ReadOptions | None = None,
) -> TrainPipeline:
    """Builds the training input pipeline of one process.

    The source is split into ``shard_count`` disjoint, equally long shards (the last
    ``len(source) % shard_count`` records are left out so that every process runs as many
    steps per epoch); this process reads shard ``shard_index``. Each epoch is shuffled anew.

    Args:
        source: A random-access source (:mod:`nlq_jax.data.sources`).
        crop_size: Side of the square training crops, in pixels.
        batch_size: Crops per batch for this process (not global).
        seed: Seed of the shuffle, the crops and the flips.
        shard_index: This process's shard; default ``jax.process_index()``.
        shard_count: Number of shards; default ``jax.process_count()``.
        small: Images smaller than the crop are ``"pad"``-ded by reflection or ``"skip"``-ped.
        num_epochs: Passes over the shard; ``None`` repeats forever.
        worker_count: Processes decoding and cropping in parallel (0: in this process). The
            batches depend on it (deterministically); keep it fixed to resume a run.
        read_options: Threads and buffer for reading and cropping records, in each process.
            Default: 8 threads, a buffer of ``max(2 * batch_size, 64)`` crops (Grain's own
            default buffer, 500, holds 400 MB of 256² float crops per process).

    Returns:
        A :class:`TrainPipeline`; ``iter()`` it for batches
        ``{"image": float32 [batch_size, crop_size, crop_size, 3] in [0, 1]}``.

    Raises:
        NLQError: for a bad argument, or a source with fewer records than shards.
    """
    if shard_index is None or shard_count is None:
        import jax

        shard_index = jax.process_index() if shard_index is None else shard_index
        shard_count = jax.process_count() if shard_count is None else shard_count
    _check(crop_size >= 1, f"crop_size must be positive, got {crop_size}")
    _check(batch_size >= 1, f"batch_size must be positive, got {batch_size}")
    _check(small in ("pad", "skip"), f"small must be 'pad' or 'skip', got {small!r}")
    _check(num_epochs is None or num_epochs >= 1, f"num_epochs must be ≥ 1, got {num_epochs}")
    _check(worker_count >= 0, f"worker_count must be ≥ 0, got {worker_count}")
    _check(0 <= shard_index < shard_count, f"shard_index {shard_index} not in [0, {shard_count})")
    shard_length = len(source) // shard_count
    _check(
        shard_length >= 1,
        f"{len(source)} images cannot be shared by {shard_count} processes: {source!r}",
    )
    shuffle_seed, crop_seed = (
        int(s) for s in np.random.SeedSequence(seed).generate_state(2, dtype=np.uint32)
    )

    ds = grain.MapDataset.source(source)
    ds = ds[shard_index : shard_length * shard_count : shard_count]
    ds = ds.shuffle(seed=shuffle_seed).repeat(num_epochs)
    ds = ds.random_map(RandomCropFlip(crop_size, small), seed=crop_seed)
    if read_options is None:
        read_options = grain.ReadOptions(
            num_threads=8, prefetch_buffer_size=max(2 * batch_size, 64)
        )
    it = ds.to_iter_dataset(read_options)
    # A pipeline that repeats forever over a source with nothing usable would spin without end;
    # it raises instead (a finite one just ends). Two epochs in a row hold every record of the
    # shard, so that many unusable records in a row mean that nothing is usable. A worker sees
    # every worker_count-th record only: its window spans worker_count² times more epochs.
    max_skipped = None if num_epochs else 2 * shard_length * max(worker_count, 1) ** 2
    it = _SkipAndCount(it, max_skipped_in_a_row=max_skipped)
    it = it.batch(batch_size, drop_remainder=True)
    if worker_count > 0:
        from absl import flags

        # Grain's workers read absl flags; outside absl.app.run (notebooks, tests) nothing
        # parsed them, and the defaults are what we want.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count))
    return TrainPipeline(it)
