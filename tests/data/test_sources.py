"""Tests of the image sources: folders, the built-in sample set, TFDS data sources."""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from nlq_jax.data import sources, tfds_sources
from nlq_jax.errors import NLQError


def _noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A folder with PNGs (one nested, one grey), a JPEG, an unreadable file and non-images."""
    (tmp_path / "sub").mkdir()
    (tmp_path / ".cache").mkdir()
    Image.fromarray(_noise(20, 24, 0)).save(tmp_path / "b.png")
    Image.fromarray(_noise(18, 30, 1)).save(tmp_path / "sub" / "c.PNG")
    Image.fromarray(_noise(16, 16, 2)[..., 0]).save(tmp_path / "grey.png")
    Image.fromarray(_noise(32, 32, 3)).save(tmp_path / "a.jpg", quality=90)
    Image.fromarray(_noise(8, 8, 4)).save(tmp_path / ".hidden.png")
    Image.fromarray(_noise(8, 8, 5)).save(tmp_path / ".cache" / "d.png")
    (tmp_path / "broken.jpeg").write_bytes(b"this is not a JPEG")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_folder_source_lists_images_sorted_recursively_skipping_hidden_and_other_files(folder):
    source = sources.FolderSource(folder)
    assert source.paths == ["a.jpg", "b.png", "broken.jpeg", "grey.png", "sub/c.PNG"]
    assert len(source) == 5


def test_folder_source_not_recursive_takes_top_level_only(folder):
    source = sources.FolderSource(folder, recursive=False)
    assert "sub/c.PNG" not in source.paths
    assert len(source) == 4


def test_folder_source_extensions_select_files(folder):
    assert sources.FolderSource(folder, extensions=("jpg", ".JPEG")).paths == [
        "a.jpg",
        "broken.jpeg",
    ]


def test_folder_source_decodes_lossless_pixels_exactly_as_rgb(folder):
    source = sources.FolderSource(folder)
    record = source[source.paths.index("b.png")]
    np.testing.assert_array_equal(record["image"], _noise(20, 24, 0))
    assert record["name"] == "b.png"
    grey = source[source.paths.index("grey.png")]["image"]
    assert grey.shape == (16, 16, 3) and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey, np.repeat(_noise(16, 16, 2)[..., :1], 3, axis=-1))


def test_folder_source_returns_invalid_record_for_unreadable_file_instead_of_raising(folder):
    source = sources.FolderSource(folder)
    record = source[source.paths.index("broken.jpeg")]
    assert record["image"] is None
    assert record["name"] == "broken.jpeg"
    assert record["error"]


def test_folder_source_returns_invalid_record_for_file_deleted_since_listing(folder):
    source = sources.FolderSource(folder)
    (folder / "b.png").unlink()
    assert source[source.paths.index("b.png")]["image"] is None


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p / "empty"])
def test_folder_source_missing_or_empty_folder_raises_nlq_error(tmp_path, make):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NLQError, match="empty|missing"):
        sources.FolderSource(make(tmp_path))


def test_folder_source_pickles_for_worker_processes(folder):
    source = pickle.loads(pickle.dumps(sources.FolderSource(folder)))
    np.testing.assert_array_equal(source[1]["image"], _noise(20, 24, 0))


def test_sample_source_holds_sorted_uint8_rgb_photographs():
    source = sources.SampleSource()
    assert len(source) >= 2
    assert source.names == sorted(source.names)
    for index in range(len(source)):
        record = source[index]
        image = record["image"]
        assert record["name"] == source.names[index]
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3


def test_sample_source_names_and_exclude_select_images():
    all_names = sources.SampleSource().names
    held_out = all_names[0]
    train = sources.SampleSource(exclude=[held_out])
    assert train.names == all_names[1:]
    assert sources.SampleSource(names=[held_out]).names == [held_out]


@pytest.mark.parametrize("kwargs", [{"names": ["no_such_image"]}, {"exclude": ["no_such"]}])
def test_sample_source_unknown_name_raises_nlq_error(kwargs):
    with pytest.raises(NLQError, match="unknown sample images"):
        sources.SampleSource(**kwargs)


def test_sample_source_excluding_everything_raises_nlq_error():
    with pytest.raises(NLQError, match="no sample image"):
        sources.SampleSource(exclude=sources.SampleSource().names)


def test_make_source_selects_source_by_spec_string(folder):
    assert isinstance(sources.make_source("samples"), sources.SampleSource)
    folder_source = sources.make_source(f"folder:{folder}", recursive=False)
    assert isinstance(folder_source, sources.FolderSource)
    assert len(folder_source) == 4


@pytest.mark.parametrize("spec", ["", "sample", "folder", "folder:", "tfds:", "imagenet2012"])
def test_make_source_unknown_spec_raises_nlq_error(spec):
    with pytest.raises(NLQError, match="unknown data source"):
        sources.make_source(spec)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("imagenet2012:train", ("imagenet2012", "train")),
        ("coco/2017:validation", ("coco/2017", "validation")),
        ("celeb_a_hq/1024:train[:90%]", ("celeb_a_hq/1024", "train[:90%]")),
        ("imagenet2012:5.1.0:validation", ("imagenet2012:5.1.0", "validation")),
        ("clic", ("clic", "train")),
    ],
)
def test_parse_tfds_spec_splits_name_version_and_split(spec, expected):
    assert tfds_sources.parse_tfds_spec(spec) == expected


def test_eval_images_yields_full_images_and_skips_unreadable(folder):
    source = sources.FolderSource(folder)
    images = dict(sources.eval_images(source))
    assert sorted(images) == ["a.jpg", "b.png", "grey.png", "sub/c.PNG"]
    np.testing.assert_array_equal(images["b.png"], _noise(20, 24, 0))
    assert images["sub/c.PNG"].shape == (18, 30, 3)


# TFDS: tensorflow-datasets reads ArrayRecord data sources without TensorFlow; its mock_data
# generates random records from each dataset's feature spec, without any data on disk.
@pytest.fixture
def tfds():
    return pytest.importorskip("tensorflow_datasets")


# coco's builder code needs TensorFlow to describe its features, so mock_data (which runs the
# builder code) cannot stand in for it: a prepared coco is tested from files below.
@pytest.mark.parametrize("name", ["imagenet2012", "celeb_a_hq/1024", "clic"])
def test_tfds_source_reads_uint8_rgb_images_of_supported_datasets(tfds, name):
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        source = sources.make_source(f"tfds:{name}:train")
        assert isinstance(source, tfds_sources.TfdsSource)
        assert len(source) == 2
        record = source[1]
    image = record["image"]
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert isinstance(record["name"], str) and record["name"]


def _prepare_fake_coco(tfds, data_dir: Path) -> list[np.ndarray]:
    """Prepares a 3-image "coco/2017" in ArrayRecord format, without TensorFlow; its images."""
    images = [_noise(10 + i, 12, 10 + i) for i in range(3)]

    def encoded(image):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        buffer.seek(0)
        return buffer

    class FakeCoco(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = "coco"
        VERSION = tfds.core.Version("1.1.0")
        BUILDER_CONFIGS: ClassVar[list] = [tfds.core.BuilderConfig(name="2017")]

        def _info(self):
            features = {"image": tfds.features.Image(), "image/filename": tfds.features.Text()}
            return tfds.core.DatasetInfo(
                builder=self, features=tfds.features.FeaturesDict(features)
            )

        def _split_generators(self, dl_manager):
            del dl_manager
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i, image in enumerate(images):
                yield i, {"image": encoded(image), "image/filename": f"{i:012d}.jpg"}

    FakeCoco(config="2017", data_dir=data_dir, file_format="array_record").download_and_prepare()
    return images


def test_tfds_source_reads_prepared_array_record_files_without_builder_code(tfds, tmp_path):
    # Real coco builder code imports TensorFlow; reading the prepared files must not need it.
    images = _prepare_fake_coco(tfds, tmp_path)
    source = sources.make_source("tfds:coco/2017:train", data_dir=tmp_path)
    assert len(source) == 3
    for i, image in enumerate(images):
        record = source[i]
        np.testing.assert_array_equal(record["image"], image)
        assert record["name"] == f"{i:012d}.jpg"
    assert len(tfds_sources.TfdsSource("coco/2017", "train[:2]", data_dir=tmp_path)) == 2


def test_tfds_source_pickles_and_reopens_in_another_process(tfds):
    with tfds.testing.mock_data(num_examples=3, policy=tfds.testing.MockPolicy.USE_CODE):
        source = tfds_sources.TfdsSource("clic", "train")
        expected = source[2]["image"]
        copy = pickle.loads(pickle.dumps(source))
        assert copy._source is None
        np.testing.assert_array_equal(copy[2]["image"], expected)


def test_tfds_source_of_unprepared_dataset_raises_nlq_error_pointing_to_docs(
    tfds, tmp_path, monkeypatch
):
    downloads, real = [], tfds.data_source

    def spy(*args, **kwargs):
        downloads.append(kwargs.get("download", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(tfds, "data_source", spy)
    with pytest.raises(NLQError, match=r"array_record.*docs/data.md"):
        tfds_sources.TfdsSource("clic", "train", data_dir=tmp_path)
    assert downloads == [False]  # an unprepared dataset is an error, never a download


def test_tfds_source_bad_record_is_invalid_not_an_exception(tfds):
    with tfds.testing.mock_data(num_examples=2, policy=tfds.testing.MockPolicy.USE_CODE):
        source = tfds_sources.TfdsSource("clic", "train", image_key="no_such_feature")
        record = source[0]
    assert record["image"] is None
    assert "no_such_feature" in record["error"]


def test_tfds_source_without_tensorflow_datasets_raises_nlq_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(NLQError, match="tensorflow-datasets"):
        tfds_sources.TfdsSource("clic", "train")
