"""Random-access image sources: image folders and the built-in sample set; :func:`make_source`.

Every source is a Grain ``RandomAccessDataSource`` (``__len__`` and ``__getitem__``) whose
records are dicts ``{"image": uint8 H×W×3 | None, "name": str}``. A record that cannot be
decoded is returned with ``"image": None`` and an ``"error"`` message instead of raising, so that
a training pipeline can skip and count it without crashing mid-epoch. TFDS datasets are in
:mod:`nlq_jax.data.tfds_sources`.

One string selects a source in configs (:func:`make_source`)::

    samples                          the natural photographs shipped with scikit-image & co.
    folder:/data/kodak               every image under a folder (Kodak, BSDS500, your photos)
    tfds:imagenet2012:train          a prepared TFDS dataset in ArrayRecord format
    tfds:celeb_a_hq/1024:train[:90%] any TFDS split syntax after the name
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from nlq_jax.codec.image_io import load_image
from nlq_jax.data import samples, tfds_sources
from nlq_jax.data.records import ImageSource, Record, as_rgb, invalid_record
from nlq_jax.errors import ImageError, NLQError

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")

_log = logging.getLogger(__name__)


class FolderSource:
    """Every image file under a folder, in sorted order of relative path.

    Files are decoded on access with :func:`nlq_jax.codec.image_io.load_image`, so only the list
    of paths is held (and pickled to Grain worker processes). Hidden files and folders (names
    starting with ``.``, such as macOS ``._photo.jpg`` resource forks) are ignored.

    Attributes:
        root: The folder, as given.
        paths: Relative paths (POSIX separators) of the image files, sorted.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        recursive: bool = True,
    ):
        """Lists the images of a folder.

        Args:
            path: The folder.
            extensions: File name extensions to take, without dot, case-insensitive.
            recursive: Whether to descend into sub-folders.

        Raises:
            NLQError: if ``path`` is not a folder or holds no file with these extensions.
        """
        self.root = os.fspath(path)
        if not os.path.isdir(self.root):
            raise NLQError(f"image folder {self.root!r} does not exist or is not a folder")
        suffixes = tuple("." + e.lower().lstrip(".") for e in extensions)
        paths = []
        for directory, subdirs, files in os.walk(self.root):
            subdirs[:] = [d for d in subdirs if not d.startswith(".")] if recursive else []
            for file in files:
                if not file.startswith(".") and file.lower().endswith(suffixes):
                    relative = os.path.relpath(os.path.join(directory, file), self.root)
                    paths.append(relative.replace(os.sep, "/"))
        if not paths:
            raise NLQError(
                f"no image files ({', '.join(s[1:] for s in suffixes)}) in {self.root!r}"
                + (" or its sub-folders" if recursive else "")
            )
        self.paths: list[str] = sorted(paths)

    def __len__(self) -> int:
        """Number of image files."""
        return len(self.paths)

    def __getitem__(self, index: int) -> Record:
        """Decodes one file; an unreadable one gives an invalid record instead of raising."""
        name = self.paths[index]
        try:
            pixels = as_rgb(load_image(os.path.join(self.root, name)).pixels)
        # OSError: a file removed or made unreadable since it was listed.
        except (ImageError, OSError) as e:
            return invalid_record(name, str(e) or type(e).__name__)
        return {"image": pixels, "name": name}

    def __repr__(self) -> str:
        return f"FolderSource({self.root!r}, {len(self)} images)"


class SampleSource:
    """The built-in sample set: natural photographs shipped inside installed packages.

    See :func:`nlq_jax.data.samples.sample_images`. Nothing is downloaded.

    Attributes:
        names: The names of the images in this source, sorted.
    """

    def __init__(self, names: Sequence[str] | None = None, exclude: Sequence[str] | None = None):
        """Selects images of the sample set.

        Args:
            names: The images to take (default: all).
            exclude: Images to leave out, e.g. to hold them out for evaluation.

        Raises:
            NLQError: for an unknown name, or if nothing is left.
        """
        images = samples.sample_images()
        unknown = sorted((set(names or ()) | set(exclude or ())) - set(images))
        if unknown:
            raise NLQError(f"unknown sample images {unknown}; known: {sorted(images)}")
        chosen = sorted(set(images if names is None else names) - set(exclude or ()))
        if not chosen:
            raise NLQError("no sample image left after `names` and `exclude`")
        self.names: list[str] = chosen
        self._images = {n: as_rgb(images[n]) for n in chosen}

    def __len__(self) -> int:
        """Number of images."""
        return len(self.names)

    def __getitem__(self, index: int) -> Record:
        """The image at ``index`` (shared, do not modify in place)."""
        name = self.names[index]
        return {"image": self._images[name], "name": name}

    def __repr__(self) -> str:
        return f"SampleSource({self.names})"


def make_source(spec: str, **kwargs: Any) -> ImageSource:
    """Builds the source that one config string names.

    Args:
        spec: ``"samples"``, ``"folder:PATH"`` or ``"tfds:NAME[:VERSION][:SPLIT]"``.
        **kwargs: Passed to the source's constructor (``exclude=`` for samples,
            ``recursive=`` for folders, ``data_dir=`` for TFDS, ...).

    Returns:
        A :class:`SampleSource`, :class:`FolderSource` or :class:`TfdsSource`.

    Raises:
        NLQError: for an unknown kind of source, or whatever the source raises.
    """
    kind, _, arg = spec.partition(":")
    if kind == "samples" and not arg:
        return SampleSource(**kwargs)
    if kind == "folder" and arg:
        return FolderSource(arg, **kwargs)
    if kind == "tfds" and arg:
        name, split = tfds_sources.parse_tfds_spec(arg)
        return tfds_sources.TfdsSource(name, split, **kwargs)
    raise NLQError(
        f"unknown data source {spec!r}; expected 'samples', 'folder:PATH' or "
        "'tfds:NAME[:SPLIT]' (e.g. 'tfds:imagenet2012:train')"
    )


def eval_images(source: ImageSource) -> Iterator[tuple[str, np.ndarray]]:
    """Yields ``(name, uint8 H×W×3)`` for every readable image of ``source``, uncropped.

    For evaluation with real bitstreams. Unreadable images are logged and skipped.
    """
    for index in range(len(source)):
        record = source[index]
        if record["image"] is None:
            _log.warning("skipping unreadable image %s: %s", record["name"], record.get("error"))
            continue
        yield record["name"], record["image"]
