"""Compress and decompress images (and, through the model's domain, any signal) with a trained
(or exported) model: the Python API.

```python
from nlq_jax.codec.api import Codec
codec = Codec.load("runs/hyperprior-q3/export")
data = codec.compress(pixels)          # uint8 H×W×3 → the whole .nlq file
pixels_hat = codec.decompress(data)    # → uint8 H×W×3
```
Coding options go to the model: an RVQ model's `codec.compress(pixels, num_stages=2)` codes
only its first stages, `codec.compress(pixels, roi=mask)` (a mask H×W, nonzero in the region of
interest; also the scalar hyperprior models) spends the bits in the region. An RVQ model's files
are progressive: `codec.decompress(data, num_stages=1)` decodes only the first stages, and a
file cut short decodes its complete stages (`codec.progress(data)` says how many).

Any image size works: the image is padded (edge-replicated) on the bottom and right to a
multiple of the model's stride, and the reconstruction is cropped back. What is particular to
images (scaling uint8 to the model's input, the axes padded to the stride, the shape a file
records) is asked of the model's domain (`nlq_jax.domains`: the model class's `domain`,
"image" when it has none), so the same `Codec` codes any domain's signals. The bytes of an image
depend only on the image and the model (not on the batch it came in, nor on jit); a file made
with other weights is refused (the header carries a hash of weights and tables).

Decoding is bounded: a file's header alone decides what its decoder allocates (76 bytes can
declare 2048² pixels), so before decoding anything `decode_header` checks the streams' number
and lengths against what the model writes for the declared size and compares the model's
estimate of its peak memory (`Codec.decode_memory`, each model's `decode_memory`) with a budget,
`max_memory` (default `DEFAULT_MAX_MEMORY`, 4 GiB). A legitimately tiny file of a huge flat
image is valid (the shipped model codes a flat 1024² image in 5.3 KB, 0.04 bpp). The budget,
not the file size, is the guard: such a file decodes when its estimate fits, and is refused
with `MemoryBudgetError` otherwise (raise the budget to decode it); an out-of-memory inside XLA
becomes the same error.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import numpy as np

from nlq_jax import checkpoint, models, quantizers
from nlq_jax.codec import container, model_index
from nlq_jax.codec.image_io import to_uint8
from nlq_jax.domains import IMAGE, Domain, get_domain
from nlq_jax.errors import (
    CheckpointError,
    FormatError,
    ImageError,
    MemoryBudgetError,
    ModelMismatchError,
)
from nlq_jax.latent_codecs.bitstream import Runner, check_streams

# Largest image the codec accepts (both ways): its synthesis transform holds N float32 feature
# maps at full resolution, ~8.6 GB for 16.7 MP at N = 128.
MAX_PIXELS = 1 << 24
# Decoding is refused when the model's estimate of its peak memory for the file's declared size
# exceeds this (`max_memory` of `Codec.decompress`, `nlq decompress --max-memory`): a file's
# header alone decides what its decoder allocates, so a few bytes can ask for gigabytes.
DEFAULT_MAX_MEMORY = 4 << 30


def pad_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-pads [B, H, W, C] on the bottom/right so H and W are multiples of `multiple`
    (`IMAGE.pad`; a `Codec` pads along its model's domain's axes)."""
    return IMAGE.pad(x, multiple)


def to_model_input(pixels: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] or [B, H, W, 3] → float32 [B, H, W, 3] in [0, 1] (`IMAGE.to_model_input`).

    Raises:
      ImageError: not uint8 images of 3 channels.
    """
    return IMAGE.to_model_input(pixels)


@dataclasses.dataclass(frozen=True)
class Progress:
    """How much of a file decodes (`Codec.progress`), in stages (an RVQ model's; 1 of 1 for
    every other model, whose files are not progressive).

    Attributes:
      declared: the stages the file was written with.
      complete: the stages wholly present (fewer when a progressive file was cut short).
      decoded: what `decompress` decodes with the same `num_stages`: min(complete, num_stages).
    """

    declared: int
    complete: int
    decoded: int

    @property
    def truncated(self) -> bool:
        """The file was cut short: some of its stages are missing."""
        return self.complete < self.declared


class Codec:
    """A model bound to its weights and coding tables, ready to code images (or the signals of
    its model's domain, `domain`).

    Args:
      model_name: a name in `nlq_jax.models.MODELS`.
      model_kwargs: the model's constructor arguments.
      params: the "params" collection.
      tables: coding tables (default: the model module's `build_tables(model, params)`).
      label: a name for reports (default: the model name).
      jit: compile the bitstream path (False: run it eagerly, for determinism tests).
      model_state: the model's other variable collections that its forward reads, e.g.
        {"quantizer_state": EMA codebooks}; exported and hashed with the parameters.
      hash_version: what `hash` covers (see `nlq_jax.checkpoint`): 2, the default, the arrays
        and the model description; 1, the arrays only (exports of version 1).
    """

    def __init__(
        self,
        model_name: str,
        model_kwargs: dict,
        params: dict,
        tables: dict | None = None,
        *,
        label: str | None = None,
        jit: bool = True,
        model_state: dict | None = None,
        hash_version: int = checkpoint.VERSION,
    ):
        self.model_name = model_name
        # JSON gives lists where the model's fields are tuples (e.g. prior_filters).
        self.model_kwargs = {
            k: tuple(v) if isinstance(v, list) else v for k, v in dict(model_kwargs).items()
        }
        self.module = models.get_module(model_name)
        # Older exports' flat quantizer arguments become the sub-dict (the hash keeps them).
        kwargs = quantizers.from_legacy_kwargs(model_name, self.model_kwargs)
        self.model = self.module.Model(**kwargs)
        # What the signal is (`nlq_jax.domains`): the model class's, an image if it says none.
        self.domain: Domain = get_domain(getattr(self.module.Model, "domain", "image"))
        self.params = params
        self.model_state = dict(model_state or {})
        self.tables = self.module.build_tables(self.model, params) if tables is None else tables
        self.name = label or model_name
        self.hash_version = hash_version
        described = hash_version >= 2
        description = checkpoint.description_bytes(model_name, self.model_kwargs)
        self.hash = checkpoint.model_hash(
            params, self.tables, self.model_state, description=description if described else None
        )
        self.runner = Runner(self.model, self.variables, self.tables, jit=jit)
        # Whether its files are progressive (the container's flag; the module's
        # `progressive(model)`).
        self.progressive = bool(getattr(self.module, "progressive", lambda m: False)(self.model))
        self._forward = None

    @property
    def variables(self) -> dict:
        """Every variable collection of the model: {"params": ..., **model_state}."""
        return {"params": self.params, **self.model_state}

    @classmethod
    def load(cls, directory: str | os.PathLike, *, jit: bool = True) -> Codec:
        """Loads an export directory (see `nlq_jax.checkpoint`), or a shipped model by name
        ("default": see `nlq_jax.pretrained`)."""
        from nlq_jax import pretrained

        directory = pretrained.resolve(directory)
        meta, variables, tables = checkpoint.load_variables(directory)
        params = variables.pop("params")
        codec = cls(
            meta["model"], meta["kwargs"], params, tables, label=meta.get("label"), jit=jit,
            model_state=variables, hash_version=meta["version"],
        )  # fmt: skip
        remember(codec.hash, directory)
        return codec

    def save(self, directory: str | os.PathLike) -> Path:
        """Exports weights and tables so that `Codec.load` (and `nlq compress`) can use them."""
        path = checkpoint.export(
            directory,
            self.model_name,
            self.model_kwargs,
            self.params,
            self.tables,
            label=self.name,
            model_state=self.model_state,
            version=self.hash_version,
        )
        remember(self.hash, path)
        return path

    # Encoding.
    def compress(self, pixels: np.ndarray, channels: int = 3, **options) -> bytes:
        """One uint8 image [H, W, 3] → the .nlq file's bytes.

        Args:
          pixels: the image.
          channels: 1 to have the file decode to greyscale (for greyscale sources), else 3.
          **options: the model's coding options (e.g. `num_stages` of an RVQ model: code only
            the first stages, a coarser file that any decoder of this model reads; `roi`, a
            region of interest, a mask [H, W], bool or numbers, nonzero in the region, padded
            here like the image, for the models whose `compress` takes it).
        """
        return self.compress_batch(np.asarray(pixels)[None], channels, **options)[0]

    def compress_batch(self, pixels: np.ndarray, channels: int = 3, **options) -> list[bytes]:
        """A batch of same-sized uint8 images [B, H, W, 3] → one .nlq file each.

        The analysis transforms run on the whole batch; for the scalar models the result is the
        same bytes as compressing each image on its own (tested). A discrete model's
        nearest-code search is not batch-invariant: XLA's float sums differ with the batch
        size, so a near tie between two codes can fall the other way (seen with random RVQ
        weights); every file still decodes exactly to its own codes. `options` as in
        `compress` (`roi`: one mask [H, W] for every image, or one each [B, H, W]).

        Raises:
          ImageError: the images or the region-of-interest mask are not of a size it takes.
          ValueError: an option the model does not take (e.g. `roi` of a model without
            region-of-interest coding), or out of its range.
        """
        domain = self.domain
        x = domain.to_model_input(pixels)
        shape = domain.header_shape(x.shape, channels)
        if domain.num_samples(shape) > MAX_PIXELS:
            size = "×".join(str(n) for n in domain.spatial_shape(shape)[::-1])
            raise ImageError(
                f"{domain.name} of {size} exceeds the codec's limit of {MAX_PIXELS} {_unit(domain)}"
            )
        xp = domain.pad(x, self.model.stride)
        if "roi" in options and options["roi"] is None:
            del options["roi"]  # no region: the plain file, for every model
        if "roi" in options:
            if "roi" not in models.coding_options(self.model):
                raise ValueError(f"model {self.model_name!r} has no region-of-interest coding")
            b, h, w = x.shape[:3]
            options["roi"] = _padded_mask(options["roi"], b, h, w, self.model.stride)
        header = container.Header(
            self.model_name, self.hash, progressive=self.progressive, shape=shape, domain=domain
        )
        return [
            container.pack(header, streams)
            for streams in self.module.compress(self.runner, xp, **options)
        ]

    # Decoding.
    def decode_header(
        self, data: bytes, *, max_memory: int | None = None
    ) -> tuple[container.Header, list[bytes]]:
        """Parses and checks a file against this model, before anything is allocated for it.

        Checks the container (`container.unpack_partial`: a progressive file may be cut short
        after its first stream), the model's name and hash, the number of streams and each
        one's length against what this model writes for the declared size (`stream_specs`),
        and the estimated peak memory of decoding it against the budget.

        Args:
          data: the whole .nlq file (of a progressive file, any start of it that holds its
            first stream).
          max_memory: the budget in bytes (default `DEFAULT_MAX_MEMORY`).

        Returns:
          `(header, streams)`: the complete streams.

        Raises:
          FormatError: a malformed or truncated file (a progressive one: cut before the streams
            this model needs), or streams this model cannot have written.
          ModelMismatchError: the file was written by another model or other weights.
          MemoryBudgetError: decoding would need more than `max_memory` bytes.
        """
        header, streams, _ = self._read(data, max_memory)
        return header, streams

    def _read(
        self, data: bytes, max_memory: int | None
    ) -> tuple[container.Header, list[bytes], int]:
        """`decode_header`, and the number of streams the file declares."""
        header, streams, declared = container.unpack_partial(data, max_pixels=MAX_PIXELS)
        if header.model_name != self.model_name or header.model_hash != self.hash:
            raise ModelMismatchError(
                f"the file was made by model {header.model_name!r} with weights "
                f"{header.model_hash.hex()}, not by this {self.model_name!r} "
                f"({self.hash.hex()})"
            )
        if header.domain != self.domain:
            raise FormatError(
                f"corrupted file: it holds a {header.domain.name}, this model codes "
                f"{self.domain.name} signals"
            )
        sizes = self._padded(*self.domain.spatial_shape(header.shape))
        if self.progressive and not header.progressive:  # version 1: before progressive files
            specs = self.module.stream_specs(self.model, *sizes, progressive=False)
        else:
            specs = self.module.stream_specs(self.model, *sizes)
        required = sum(1 for spec in specs if not spec.optional)
        if len(streams) < min(declared, required):
            raise FormatError(
                f"truncated .nlq file: {len(streams)} of its {declared} streams complete, "
                f"this model needs the first {required}"
            )
        check_streams(specs, streams)
        if declared > len(specs):
            raise FormatError(
                f"corrupted file: {declared} stream(s) declared, this model writes at most "
                f"{len(specs)}"
            )
        budget = DEFAULT_MAX_MEMORY if max_memory is None else max_memory
        need = self.decode_memory(*self.domain.spatial_shape(header.shape))
        if need > budget:
            raise MemoryBudgetError(
                f"decoding this {_size(self.domain, header.shape)} needs about "
                f"{_gib(need)} of memory, over the limit of {_gib(budget)} "
                "(raise it with --max-memory, or max_memory= in Python)"
            )
        return header, streams, declared

    def progress(
        self, data: bytes, *, num_stages: int | None = None, max_memory: int | None = None
    ) -> Progress:
        """How many stages the file declares, holds complete, and `decompress` decodes.

        A progressive file (an RVQ model's) cut short decodes its complete stages: this is
        how to tell (`Progress.truncated`). Raises as `decode_header`.
        """
        _, streams, declared = self._read(data, max_memory)
        file_stages = getattr(self.module, "file_stages", None)
        if file_stages is None:
            return Progress(1, 1, 1)
        total, complete = file_stages(self.model, streams, declared)
        decoded = complete if num_stages is None else min(complete, int(num_stages))
        return Progress(total, complete, decoded)

    def decode_memory(self, *sizes: int) -> int:
        """The model's upper bound on the bytes decoding a signal of these spatial sizes (an
        image's height, width) allocates (`decode_memory` of its module, on the padded sizes),
        what `max_memory` is compared to.
        """
        return self.module.decode_memory(self.model, *self._padded(*sizes))

    def _padded(self, *sizes: int) -> tuple[int, ...]:
        return self.domain.padded_shape(sizes, self.model.stride)

    def decompress_float(
        self, data: bytes, *, max_memory: int | None = None, num_stages: int | None = None
    ) -> tuple[container.Header, np.ndarray]:
        """The file's reconstruction as float [H, W, 3] (a signal of the model's domain: its
        shape, with the model's channels), unclipped (for exactness tests).

        Raises as `decode_header`, and MemoryBudgetError if the machine runs out of memory
        while decoding (XLA's RESOURCE_EXHAUSTED, numpy's MemoryError); ValueError if
        `num_stages` is out of the model's range or the model has no stages.
        """
        header, streams = self.decode_header(data, max_memory=max_memory)
        spatial = self.domain.spatial_shape(header.shape)
        sizes = self._padded(*spatial)
        options = {}
        if num_stages is not None:
            if "num_stages" not in models.coding_options(self.model):
                raise ValueError(f"num_stages applies to an RVQ model, not {self.model_name!r}")
            options["num_stages"] = num_stages
        try:
            x_hat = self.module.decompress(self.runner, streams, *sizes, **options)
        except (jax.errors.JaxRuntimeError, MemoryError) as e:
            if not isinstance(e, MemoryError) and "RESOURCE_EXHAUSTED" not in str(e):
                raise
            raise MemoryBudgetError(
                f"out of memory decoding this {_size(self.domain, header.shape)} (estimated "
                f"{_gib(self.decode_memory(*spatial))}); free memory or decode it on a larger "
                "machine"
            ) from None
        return header, self.domain.crop(x_hat, header.shape)[0]

    def decompress(
        self, data: bytes, *, max_memory: int | None = None, num_stages: int | None = None
    ) -> np.ndarray:
        """A .nlq file's bytes → uint8 [H, W, 3] (a greyscale file repeats its one channel).

        Args:
          data: the whole .nlq file; of a progressive file (an RVQ model's), any start of it
            that holds its first stage: it decodes the stages complete in it (`progress`).
          max_memory: refuse (MemoryBudgetError) a file whose decoding the model estimates to
            need more bytes than this (default `DEFAULT_MAX_MEMORY`, 4 GiB). The budget, not
            the file's size, bounds the work: a legitimately tiny file of a large flat image
            is valid and decodes if its size fits.
          num_stages: an RVQ model decodes at most the first `num_stages` stages (1..S;
            default: every stage in the file).
        """
        header, x_hat = self.decompress_float(data, max_memory=max_memory, num_stages=num_stages)
        pixels = to_uint8(x_hat)
        if header.shape[-1] == 1 < pixels.shape[-1]:
            grey = np.round(pixels.astype(np.float32).mean(axis=-1)).astype(np.uint8)
            pixels = np.repeat(grey[..., None], pixels.shape[-1], axis=-1)
        return pixels

    # The model's own view, for measurements.
    def forward(self, pixels: np.ndarray) -> dict:
        """Eval-mode forward on padded images, cropped back: {"x_hat", "bits", "aux"} as numpy."""
        x = self.domain.to_model_input(pixels)
        shape = self.domain.header_shape(x.shape)
        if self._forward is None:
            model = self.model

            def forward(variables, x):
                return model.apply(variables, x, training=False)

            self._forward = jax.jit(forward) if self.runner.jit else forward
        out = self._forward(self.variables, self.domain.pad(x, self.model.stride))
        out = jax.tree_util.tree_map(np.asarray, out)
        x_hat = self.domain.crop(out["x_hat"], shape)
        return {"x_hat": x_hat, "bits": out["bits"], "aux": out.get("aux", {})}


def _padded_mask(roi: np.ndarray, batch: int, height: int, width: int, multiple: int) -> np.ndarray:
    """A region-of-interest mask [H, W] or [B, H, W] (nonzero: the region) → bool, edge-padded
    like the images (`pad_to_multiple`)."""
    mask = np.asarray(roi)
    if mask.shape not in ((height, width), (batch, height, width)):
        size = "×".join(str(n) for n in mask.shape[::-1])
        raise ImageError(f"the region-of-interest mask is {size}, the image {width}×{height}")
    padded = pad_to_multiple(mask.reshape(-1, height, width, 1) != 0, multiple)[..., 0]
    return padded if mask.ndim == 3 else padded[0]


def _unit(domain: Domain) -> str:
    return "pixels" if domain == IMAGE else "samples"


def _size(domain: Domain, shape: tuple[int, ...]) -> str:
    """How messages name a signal: "640×480 image" (width first, as image sizes are said)."""
    return "×".join(str(n) for n in domain.spatial_shape(shape)[::-1]) + f" {domain.name}"


def _gib(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.2f} GiB"


# The local index from model hash to export directory (`nlq_jax.codec.model_index`), so that
# `nlq decompress` finds the model that wrote a file without being told.
nlq_home = model_index.nlq_home
remember = model_index.remember


def find_checkpoint(data: bytes) -> Path:
    """The export directory that wrote a .nlq file, from the local index."""
    header, _, _ = container.unpack_partial(data, max_pixels=MAX_PIXELS)
    found = model_index.lookup(header.model_hash) or _shipped_with_hash(header.model_hash)
    if found is None:
        raise CheckpointError(
            f"the file was made by model {header.model_name!r} ({header.model_hash.hex()}), "
            "which is not known here; pass --checkpoint DIR"
        )
    return Path(found)


def _shipped_with_hash(model_hash: bytes) -> Path | None:
    """The shipped model (`nlq_jax.pretrained`) that has this hash, if any."""
    from nlq_jax import pretrained

    for directory in pretrained.shipped_exports():
        try:
            if checkpoint.read_meta(directory).get("hash") == model_hash.hex():
                return directory
        except CheckpointError:
            continue
    return None


__all__ = [
    "Codec",
    "FormatError",
    "MAX_PIXELS",
    "Progress",
    "find_checkpoint",
    "pad_to_multiple",
]
