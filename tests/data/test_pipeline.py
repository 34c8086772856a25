"""Tests of the Grain training pipeline: crops, skips and counts, determinism, shards, state."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import grain
import numpy as np
import pytest
from PIL import Image

from nlq_jax.data import pipeline, sources
from nlq_jax.errors import NLQError

CROP = 16
# Sequential reading in the test process: no threads competing for the machine's cores.
READ = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# Usable images (PNG, exact pixels), one smaller than the crop, one unreadable file.
_LARGE = {"a.png": _noise(20, 24, 0), "b.png": _noise(16, 30, 1), "c.png": _noise(24, 17, 2)}
_SMALL = {"small.png": _noise(9, 12, 3)}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name, image in {**_LARGE, **_SMALL}.items():
        Image.fromarray(image).save(tmp_path / name)
    Image.fromarray(_noise(40, 40, 4)).save(tmp_path / "d.jpg", quality=95)
    (tmp_path / "unreadable.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return tmp_path


class _ConstantSource:
    """Record i is an image filled with the value i: a crop tells which record it came from."""

    def __init__(self, count: int, size: int = CROP + 4):
        self.count, self.size = count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        image = np.full((self.size, self.size, 3), int(index), np.uint8)
        return {"image": image, "name": str(index)}


def _take(ds, n: int) -> list[np.ndarray]:
    return [batch["image"] for batch in itertools.islice(iter(ds), n)]


def _record_ids(ds) -> list[int]:
    """The records of a pipeline over a _ConstantSource, in order, from batches of any size."""
    return [int(np.rint(crop[0, 0, 0] * 255)) for batch in ds for crop in batch["image"]]


def _windows(image: np.ndarray, size: int) -> list[np.ndarray]:
    image = image.astype(np.float32) / 255
    height, width = image.shape[:2]
    found = []
    for top in range(height - size + 1):
        for left in range(width - size + 1):
            window = image[top : top + size, left : left + size]
            found += [window, window[:, ::-1]]
    return found


def test_batches_are_float32_crops_in_unit_range(folder):
    ds = pipeline.train_pipeline(
        sources.FolderSource(folder), crop_size=CROP, batch_size=3, seed=0, read_options=READ
    )
    for images in _take(ds, 4):
        assert images.shape == (3, CROP, CROP, 3)
        assert images.dtype == np.float32
        assert 0.0 <= images.min() and images.max() <= 1.0


def test_crops_are_windows_of_source_images_possibly_flipped(folder):
    windows = [w for image in _LARGE.values() for w in _windows(image, CROP)]
    flipped = 0
    ds = pipeline.train_pipeline(
        sources.FolderSource(folder, extensions=("png",)),
        crop_size=CROP,
        batch_size=1,
        seed=1,
        small="skip",
        read_options=READ,
    )
    for images in _take(ds, 24):
        matches = [i for i, w in enumerate(windows) if np.array_equal(w, images[0])]
        assert matches, "a crop is not a window of any source image"
        flipped += all(i % 2 for i in matches)
    assert 0 < flipped < 24  # Both orientations occur.


def test_unreadable_and_small_images_are_skipped_and_counted(folder):
    epochs = 5
    usable = len(_LARGE) + 1  # The PNGs larger than the crop, and d.jpg.
    ds = pipeline.train_pipeline(
        sources.FolderSource(folder),
        crop_size=CROP,
        batch_size=1,
        seed=2,
        small="skip",
        read_options=READ,
    )
    it = iter(ds)
    for _ in range(epochs * usable):
        next(it)
    # Each epoch delivers every usable image once; a skipped record is counted with the next
    # example delivered, so the last epoch's skips after its last example are still pending.
    assert it.stats.examples == epochs * usable
    assert it.stats.padded == 0
    assert epochs - 1 <= it.stats.skipped_unreadable <= epochs
    assert epochs - 1 <= it.stats.skipped_small <= epochs


def test_small_images_are_padded_and_counted_when_asked(folder):
    epochs = 4
    usable = len(_LARGE) + len(_SMALL) + 1
    ds = pipeline.train_pipeline(
        sources.FolderSource(folder),
        crop_size=CROP,
        batch_size=1,
        seed=3,
        small="pad",
        read_options=READ,
    )
    it = iter(ds)
    for _ in range(epochs * usable):
        next(it)
    assert it.stats.examples == epochs * usable
    assert it.stats.padded == epochs  # One small image, delivered once an epoch.
    assert it.stats.skipped_small == 0
    assert epochs - 1 <= it.stats.skipped_unreadable <= epochs


def test_small_image_is_reflect_padded_to_the_crop():
    small = _noise(9, 12, 3)
    crop = pipeline.RandomCropFlip(CROP, "pad").random_map(
        {"image": small, "name": "small"}, np.random.default_rng(0)
    )
    expected = np.pad(small, ((3, 4), (2, 2), (0, 0)), mode="reflect").astype(np.float32) / 255
    assert crop["padded"] == 1
    assert np.array_equal(crop["image"], expected) or np.array_equal(
        crop["image"], expected[:, ::-1]
    )


def test_same_seed_gives_identical_batches_and_another_seed_different_ones(folder):
    def batches(seed):
        source = sources.FolderSource(folder)
        return _take(
            pipeline.train_pipeline(
                source, crop_size=CROP, batch_size=2, seed=seed, read_options=READ
            ),
            6,
        )

    first, again, other = batches(7), batches(7), batches(8)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def test_each_epoch_is_a_new_permutation_of_the_shard():
    ds = pipeline.train_pipeline(
        _ConstantSource(12), crop_size=CROP, batch_size=4, seed=0, num_epochs=2, read_options=READ
    )
    ids = _record_ids(ds)
    assert sorted(ids[:12]) == sorted(ids[12:]) == list(range(12))
    assert ids[:12] != ids[12:]


def test_shards_see_disjoint_equal_parts_of_the_source():
    source = _ConstantSource(11)
    shards = [
        _record_ids(
            pipeline.train_pipeline(
                source,
                crop_size=CROP,
                batch_size=1,
                seed=0,
                shard_index=index,
                shard_count=2,
                num_epochs=1,
                read_options=READ,
            )
        )
        for index in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1]) == 5  # 11 // 2; the 11th record is left out.
    assert not set(shards[0]) & set(shards[1])
    assert set(shards[0]) | set(shards[1]) <= set(range(11))


def test_drop_remainder_gives_only_full_batches():
    ds = pipeline.train_pipeline(
        _ConstantSource(10), crop_size=CROP, batch_size=4, seed=0, num_epochs=1, read_options=READ
    )
    assert [len(images) for images in _take(ds, 10)] == [4, 4]


def test_restored_iterator_state_resumes_the_identical_continuation(folder):
    def make():
        return pipeline.train_pipeline(
            sources.FolderSource(folder), crop_size=CROP, batch_size=2, seed=5, read_options=READ
        )

    it = iter(make())
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # Survives a JSON checkpoint file.
    expected = [next(it)["image"] for _ in range(4)]
    expected_stats = it.stats.as_dict()

    resumed = iter(make())
    resumed.set_state(state)
    for images in expected:
        np.testing.assert_array_equal(next(resumed)["image"], images)
    assert resumed.stats.as_dict() == expected_stats


def test_orbax_checkpoint_manager_saves_and_restores_the_iterator(folder, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")

    def make():
        return pipeline.train_pipeline(
            sources.FolderSource(folder), crop_size=CROP, batch_size=2, seed=6, read_options=READ
        )

    it = iter(make())
    next(it)
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
        manager.save(1, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(it)))
        manager.wait_until_finished()
    expected = [next(it)["image"] for _ in range(2)]

    resumed = iter(make())
    with ocp.CheckpointManager(tmp_path / "checkpoints") as manager:
        step = manager.latest_step()
        manager.restore(
            step, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed))
        )
    assert step == 1
    for images in expected:
        np.testing.assert_array_equal(next(resumed)["image"], images)


def test_worker_processes_give_the_same_batches_counts_and_resumable_state(folder):
    def iterator(worker_count):
        return iter(
            pipeline.train_pipeline(
                sources.FolderSource(folder),
                crop_size=CROP,
                batch_size=2,
                seed=4,
                small="skip",
                worker_count=worker_count,
                read_options=READ,
            )
        )

    in_process = iterator(0)
    expected = [next(in_process)["image"] for _ in range(5)]
    in_worker = iterator(1)
    try:
        for images in expected[:2]:
            np.testing.assert_array_equal(next(in_worker)["image"], images)
        state = json.loads(json.dumps(in_worker.get_state()))
        for images in expected[2:]:
            np.testing.assert_array_equal(next(in_worker)["image"], images)
        assert in_worker.stats == in_process.stats
        assert in_process.stats.skipped_unreadable + in_process.stats.skipped_small > 0
    finally:
        in_worker.close()
    resumed = iterator(1)
    try:
        resumed.set_state(state)
        for images in expected[2:]:
            np.testing.assert_array_equal(next(resumed)["image"], images)
        assert resumed.stats == in_process.stats
    finally:
        resumed.close()


def test_samples_source_feeds_the_pipeline():
    source = sources.SampleSource(exclude=sources.SampleSource().names[:1])
    images = _take(
        pipeline.train_pipeline(source, crop_size=64, batch_size=2, seed=0, read_options=READ), 2
    )
    assert [x.shape for x in images] == [(2, 64, 64, 3)] * 2


def test_tfds_source_feeds_the_pipeline():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4, policy=tfds.testing.MockPolicy.USE_CODE):
        source = sources.make_source("tfds:clic:train")
        images = _take(
            pipeline.train_pipeline(source, crop_size=8, batch_size=2, seed=0, read_options=READ),
            3,
        )
    assert [x.shape for x in images] == [(2, 8, 8, 3)] * 3


def test_source_without_usable_image_raises_instead_of_looping_forever(tmp_path):
    (tmp_path / "a.png").write_bytes(b"not a png")
    Image.fromarray(_noise(4, 4, 0)).save(tmp_path / "tiny.png")
    source = sources.FolderSource(tmp_path)
    ds = pipeline.train_pipeline(
        source, crop_size=CROP, batch_size=1, seed=0, small="skip", read_options=READ
    )
    with pytest.raises(NLQError, match="unusable"):
        next(iter(ds))
    finite = pipeline.train_pipeline(
        source, crop_size=CROP, batch_size=1, seed=0, small="skip", num_epochs=2, read_options=READ
    )
    assert list(finite) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"crop_size": 0},
        {"batch_size": 0},
        {"small": "crop"},
        {"num_epochs": 0},
        {"worker_count": -1},
        {"shard_index": 2, "shard_count": 2},
        {"shard_index": 0, "shard_count": 5},  # More shards than records.
    ],
)
def test_bad_arguments_raise_nlq_error(kwargs):
    args = {"crop_size": CROP, "batch_size": 1, "seed": 0, "shard_index": 0, "shard_count": 1}
    with pytest.raises(NLQError):
        pipeline.train_pipeline(_ConstantSource(4), **{**args, **kwargs})


def test_default_shard_is_this_jax_process():
    ds = pipeline.train_pipeline(_ConstantSource(3), crop_size=CROP, batch_size=1, seed=0)
    assert len(_take(ds, 6)) == 6  # One process: the shard is the whole source.
