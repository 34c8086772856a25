"""The built-in sample set: natural photographs shipped inside installed Python packages.

Nothing here downloads. The images are files that scikit-image, scikit-learn and matplotlib
install with themselves; they are located through the packages' import specs (without importing
the packages) and decoded with `nlq_jax.codec.image_io.load_image`. `skimage.data` functions are
deliberately not called: some of them fetch files with pooch.

Only natural colour photographs are kept. Left out on purpose: logos and text (`logo`, `page`,
`text`), synthetic or rendered images (`color`, `chessboard_*`, `phantom`), microscopy and
medical images (`cell`, `ihc`, `retina`, `microaneurysms`), astronomy (`hubble_deep_field`),
greyscale-only photographs (`camera`, `moon`, `coins`, `grass`, ...), silhouettes (`horse`),
the right view of a stereo pair (`motorcycle_right`, a near-duplicate of `motorcycle`) and
thumbnails under 256 pixels a side.

| name          | package      | file                                   | W x H     |
| ------------- | ------------ | -------------------------------------- | --------- |
| astronaut     | scikit-image | skimage/data/astronaut.png             | 512 x 512 |
| chelsea       | scikit-image | skimage/data/chelsea.png               | 451 x 300 |
| china         | scikit-learn | sklearn/datasets/images/china.jpg      | 640 x 427 |
| coffee        | scikit-image | skimage/data/coffee.png                | 600 x 400 |
| flower        | scikit-learn | sklearn/datasets/images/flower.jpg     | 640 x 427 |
| grace_hopper  | matplotlib   | mpl-data/sample_data/grace_hopper.jpg  | 512 x 600 |
| motorcycle    | scikit-image | skimage/data/motorcycle_left.png       | 741 x 500 |
| rocket        | scikit-image | skimage/data/rocket.jpg                | 640 x 427 |

(scikit-learn's two files are what `sklearn.datasets.load_sample_images` returns.)
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
from PIL import Image

from nlq_jax.codec import image_io
from nlq_jax.errors import ImageError

# name -> (pip package, import name, file path inside the import package's directory).
_SAMPLES: dict[str, tuple[str, str, str]] = {
    "astronaut": ("scikit-image", "skimage", "data/astronaut.png"),
    "chelsea": ("scikit-image", "skimage", "data/chelsea.png"),
    "coffee": ("scikit-image", "skimage", "data/coffee.png"),
    "motorcycle": ("scikit-image", "skimage", "data/motorcycle_left.png"),
    "rocket": ("scikit-image", "skimage", "data/rocket.jpg"),
    "china": ("scikit-learn", "sklearn", "datasets/images/china.jpg"),
    "flower": ("scikit-learn", "sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": (
        "matplotlib",
        "matplotlib",
        "mpl-data/sample_data/grace_hopper.jpg",
    ),
}

PHOTO_WIDTH = 768
PHOTO_HEIGHT = 512


def _package_dir(import_name: str) -> str | None:
    """The directory of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(import_name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def _sample_paths() -> dict[str, tuple[str, str]]:
    """name -> (pip package, absolute path) for every sample file present on disk."""
    found = {}
    for name, (package, import_name, relative) in _SAMPLES.items():
        directory = _package_dir(import_name)
        if directory is None:
            continue
        path = os.path.join(directory, *relative.split("/"))
        if os.path.isfile(path):
            found[name] = (package, path)
    return found


def available_sources() -> list[str]:
    """The installed packages that contribute sample images, sorted (pip names)."""
    return sorted({package for package, _ in _sample_paths().values()})


@functools.lru_cache(maxsize=len(_SAMPLES))
def _decode(path: str) -> np.ndarray:
    pixels = image_io.load_image(path).pixels
    pixels.setflags(write=False)
    return pixels


def sample_images() -> dict[str, np.ndarray]:
    """The built-in natural photographs, decoded once per process.

    Returns:
        name -> read-only uint8 array of shape (H, W, 3), in name order. Copy an array before
        writing to it.

    Raises:
        ImageError: none of scikit-image, scikit-learn, matplotlib is installed.
    """
    paths = _sample_paths()
    if not paths:
        raise ImageError(
            "no built-in sample images: install scikit-image, scikit-learn or matplotlib "
            "(`pip install nlq_jax[data]`)"
        )
    return {name: _decode(paths[name][1]) for name in sorted(paths)}


@functools.lru_cache(maxsize=1)
def _photo_768x512(path: str) -> np.ndarray:
    pixels = _decode(path)
    height, width = pixels.shape[:2]
    top, left, crop_height, crop_width = _centre_crop_3x2(height, width)
    crop = pixels[top : top + crop_height, left : left + crop_width]
    resized = Image.fromarray(np.ascontiguousarray(crop)).resize(
        (PHOTO_WIDTH, PHOTO_HEIGHT), Image.Resampling.LANCZOS
    )
    photo = np.asarray(resized).copy()
    photo.setflags(write=False)
    return photo


def _centre_crop_3x2(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the largest centred 3:2 (landscape) crop."""
    if 2 * width >= 3 * height:
        crop_height, crop_width = height, min(width, round(height * 3 / 2))
    else:
        crop_height, crop_width = min(height, round(width * 2 / 3)), width
    return (
        (height - crop_height) // 2,
        (width - crop_width) // 2,
        crop_height,
        crop_width,
    )


def photo_768x512() -> np.ndarray:
    """A 768 x 512 (width x height) natural photograph for tests and examples.

    The sample with the most pixels in its largest centred 3:2 crop is cropped to that and
    resized with Lanczos to 768 x 512. With scikit-image installed that is `motorcycle`
    (741 x 500, cropped to 741 x 494 and enlarged by 3.6%); without it, the choice falls to the
    largest sample present, so the picture depends on which packages are installed.

    Returns:
        A read-only uint8 array of shape (512, 768, 3).

    Raises:
        ImageError: no sample images are installed.
    """
    images = sample_images()

    def cropped_pixels(name: str) -> int:
        _, _, crop_height, crop_width = _centre_crop_3x2(*images[name].shape[:2])
        return crop_height * crop_width

    name = max(sorted(images), key=cropped_pixels)
    return _photo_768x512(_sample_paths()[name][1])
