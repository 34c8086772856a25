"""TFDS data sources: prepared datasets read through ``tfds.data_source`` without TensorFlow.

``tfds.data_source`` reads datasets prepared in the ArrayRecord file format by random access,
which is what Grain needs; TensorFlow is only needed once, to prepare (build) a dataset. How to
prepare imagenet2012, coco/2017, celeb_a_hq and clic is in docs/data.md.
"""

from __future__ import annotations

import os
import re
from typing import Any

from nlq_jax.data.records import Record, as_rgb, invalid_record
from nlq_jax.errors import NLQError

# The image feature of each supported TFDS dataset (the key of the record `tfds.data_source`
# returns), by dataset name without config or version.
TFDS_IMAGE_KEYS = {
    "imagenet2012": "image",
    "coco": "image",
    "celeb_a_hq": "image",
    "clic": "image",
}

# Features that hold a file name in the supported TFDS datasets, tried in order.
_TFDS_NAME_KEYS = ("file_name", "image/filename", "filename", "image/id")

_VERSION = re.compile(r"^\d+\.\d+\.\d+$")


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise NLQError(
            "TFDS sources need tensorflow-datasets (TensorFlow itself is not needed to read "
            "prepared ArrayRecord datasets): pip install 'nlq_jax[data]'; see docs/data.md"
        ) from e
    return tfds


class TfdsSource:
    """A prepared TFDS dataset read through ``tfds.data_source`` (ArrayRecord, no TensorFlow).

    The dataset must have been prepared beforehand in the ArrayRecord file format (see
    docs/data.md); nothing is downloaded or built here. The underlying data source is reopened
    lazily in each process it is pickled to (Grain worker processes).

    Attributes:
        name: TFDS name, with config and version if given (``"celeb_a_hq/1024"``).
        split: TFDS split, any split syntax (``"train[:90%]"``).
        data_dir: TFDS data directory (default: TFDS's own, ``$TFDS_DATA_DIR`` or
            ``~/tensorflow_datasets``).
        image_key: The feature holding the image.
    """

    def __init__(
        self,
        name: str,
        split: str = "train",
        data_dir: str | os.PathLike[str] | None = None,
        image_key: str | None = None,
    ):
        """Opens a prepared TFDS dataset split.

        Args:
            name: TFDS name, e.g. ``"imagenet2012"``, ``"coco/2017"``, ``"celeb_a_hq/1024"``,
                ``"clic"``.
            split: The split.
            data_dir: TFDS data directory.
            image_key: The image feature; default from :data:`TFDS_IMAGE_KEYS`, else
                ``"image"``.

        Raises:
            NLQError: if tensorflow-datasets is missing, or the dataset is not prepared in
                ArrayRecord format in ``data_dir``.
        """
        self.name = name
        self.split = split
        self.data_dir = None if data_dir is None else os.fspath(data_dir)
        base = name.split("/")[0].split(":")[0]
        self.image_key = image_key or TFDS_IMAGE_KEYS.get(base, "image")
        self._source: Any = None
        self._length = len(self._data_source())

    def _data_source(self) -> Any:
        if self._source is None:
            tfds = _import_tfds()
            try:
                self._source = _open_data_source(tfds, self.name, self.split, self.data_dir)
            # TFDS raises many kinds of errors here; all mean "not usable as given".
            except Exception as e:
                where = self.data_dir or "the default TFDS data_dir"
                raise NLQError(
                    f"cannot open TFDS dataset {self.name!r} split {self.split!r} in {where}: "
                    f"{type(e).__name__}: {e}. It must be prepared in ArrayRecord format first "
                    "(tfds build --file_format=array_record); see docs/data.md"
                ) from e
        return self._source

    def __len__(self) -> int:
        """Number of records in the split."""
        return self._length

    def __getitem__(self, index: int) -> Record:
        """Decodes one record; a corrupted one gives an invalid record instead of raising."""
        index = int(index)
        name = f"{self.name}:{self.split}:{index}"
        try:
            record = self._data_source()[index]
            for key in _TFDS_NAME_KEYS:
                if key in record:
                    value = record[key]
                    name = value.decode() if isinstance(value, bytes) else str(value)
                    break
            pixels = as_rgb(record[self.image_key])
        # A damaged shard can make TFDS or its decoders raise anything; skip, never crash.
        except Exception as e:  # noqa: BLE001
            return invalid_record(name, f"{type(e).__name__}: {e}")
        return {"image": pixels, "name": name}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_source"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"TfdsSource({self.name!r}, split={self.split!r}, data_dir={self.data_dir!r})"


def _open_data_source(tfds: Any, name: str, split: str, data_dir: str | None) -> Any:
    """``tfds.data_source``, but from the prepared files first, so that no TensorFlow is needed.

    ``tfds.data_source`` builds the dataset's ``DatasetBuilder`` from code when there is code,
    and some builders need TensorFlow just to describe their features (coco). A prepared
    dataset describes them in its own files, which is all that reading needs. Falls back to
    ``tfds.data_source`` (and its error messages, and ``tfds.testing.mock_data``) when no
    prepared files are found.
    """
    try:
        builder = tfds.core.read_only_builder.builder_from_files(name, data_dir=data_dir)
    except Exception:  # noqa: BLE001 - not found, or not readable from files: use the code.
        # download=False: an unprepared dataset is an error, never a multi-gigabyte download.
        return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    return builder.as_data_source(split=split)


def parse_tfds_spec(spec: str) -> tuple[str, str]:
    """Splits ``"NAME[:VERSION][:SPLIT]"`` (after ``tfds:``) into the TFDS name and the split.

    The split may itself hold colons (``"train[:1000]"``); a version ``x.y.z`` right after the
    name stays with the name. The split defaults to ``"train"``.
    """
    tokens = spec.split(":")
    name, rest = tokens[0], tokens[1:]
    if rest and _VERSION.match(rest[0]):
        name, rest = f"{name}:{rest[0]}", rest[1:]
    if not name:
        raise NLQError(f"no TFDS dataset name in {spec!r}")
    return name, ":".join(rest) or "train"
