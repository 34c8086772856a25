"""Errors a user can cause (bad files, bad input, wrong model); printed as one line by the CLI."""


class NLQError(Exception):
    """Base class of errors caused by input rather than by a bug."""


class FormatError(NLQError):
    """A .nlq file is corrupted, truncated, foreign, of another version, or absurd."""


class MemoryBudgetError(NLQError):
    """Decoding a file would need more memory than allowed (its estimate exceeds the budget) or
    than the machine has (an out-of-memory during decoding)."""


class ModelMismatchError(NLQError):
    """A .nlq file was written by another model or other weights than the ones given."""


class ImageError(NLQError):
    """An input image cannot be read or is of a kind the codec refuses."""


class CheckpointError(NLQError):
    """A checkpoint directory is missing, incomplete, or not a nlq_jax export."""


class TrainingError(NLQError):
    """Training cannot go on (a non-finite loss, a data source without usable images, a disk
    without room for the next checkpoint)."""
