"""Input data: image sources (folders, the built-in sample set, TFDS) and Grain pipelines.

The sources need only numpy (and tensorflow-datasets for TFDS, imported when one is opened);
the pipelines need grain (``pip install 'nlq_jax[data]'``) and are imported on first use, so
that ``nlq_jax.data.samples`` and the sources work without it.
"""

from typing import Any

from nlq_jax.data.sources import (
    IMAGE_EXTENSIONS,
    FolderSource,
    ImageSource,
    SampleSource,
    eval_images,
    make_source,
)
from nlq_jax.data.tfds_sources import TfdsSource

# Imported from nlq_jax.data.pipeline on first use.
_PIPELINE_NAMES = (
    "PipelineStats",
    "RandomCropFlip",
    "TrainIterator",
    "TrainPipeline",
    "train_pipeline",
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderSource",
    "ImageSource",
    "PipelineStats",
    "RandomCropFlip",
    "SampleSource",
    "TfdsSource",
    "TrainIterator",
    "TrainPipeline",
    "eval_images",
    "make_source",
    "train_pipeline",
]


def __getattr__(name: str) -> Any:
    if name in _PIPELINE_NAMES:
        from nlq_jax.data import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
