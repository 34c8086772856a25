"""Models made of transforms and a tree of latent codecs, and their bitstream path.

A model subclasses `LatentCodecModel` and, in `setup`, sets `g_a` (analysis), `g_s`
(synthesis) and `entropy` (the root latent codec, `nlq_jax.latent_codecs`); the forward, the
coding, the coding tables, the stream checks and the latent shapes follow from them, so a model
module needs no code of its own for `compress`/`decompress`:

```
class Model(LatentCodecModel):
    def setup(self):
        self.g_a, self.g_s = analysis(...), synthesis(...)
        self.entropy = HyperpriorCodec(
            h_a=..., h_s=..., side=EntropyBottleneckCodec(prior, key="z"),
            latent=GaussianConditionalCodec(param_form="mean_scale"))

(build_tables, compress, decompress, stream_specs, decode_memory,
 latent_shapes) = composed.functions()
```
A module's functions (the interface of `nlq_jax.models`, used by `nlq_jax.codec`) are then:
`build_tables(model, params)` (the tree's tables), `latent_shapes(model, H, W)` (from
`jax.eval_shape` of the model's own transforms, no hard-coded divisor), `stream_specs(model, H,
W)`, `decode_memory(model, H, W)`, `compress(runner, x, **options)` and `decompress(runner,
streams, H, W)`.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.latent_codecs import bitstream
from nlq_jax.latent_codecs import roi as roi_lib
from nlq_jax.latent_codecs.base import Context

ROOT = ("entropy",)


class LatentCodecModel(nn.Module):
    """A model `x → g_a → y → entropy (a latent codec) → ŷ → g_s → x̂`.

    Subclasses set `g_a`, `g_s` and `entropy` in `setup` (or override `analysis` /
    `synthesis`, e.g. for a ŷ of two levels), and the class attributes `stride`
    (input sizes must be multiples of it), `domain` (`nlq_jax.domains`) and, for the decoder's
    memory bound, `synthesis_bytes_per_pixel()` and `bytes_per_symbol`.
    """

    domain = "image"
    channels = 3  # of its input (the domain's sample)
    bytes_per_symbol = 64

    def __call__(self, x: jax.Array, *, training: bool) -> dict:
        """x: float [B, ...] in [0, 1] → {"x_hat", "bits": {key: [B]}, "aux": {...}} (a codec
        may add auxiliary losses and statistics: a discrete quantizer's)."""
        y_hat, bits, *aux = self.entropy(self.analysis(x), training=training)
        return {"x_hat": self.synthesis(y_hat), "bits": bits, "aux": dict(aux[0]) if aux else {}}

    def analysis(self, x: jax.Array) -> jax.Array:
        return self.g_a(x)

    def synthesis(self, y_hat: jax.Array) -> jax.Array:
        return self.g_s(y_hat)

    def latents(self, x: jax.Array) -> dict:
        """{key: latent} of the coded latents for input x (traced by `latent_shapes`)."""
        return self.entropy.latents(self.analysis(x))

    def synthesis_bytes_per_pixel(self) -> float:
        """Peak bytes per output pixel of g_s (see `nlq_jax.models.factorized`)."""
        raise NotImplementedError

    def extra_decode_bytes(self, height: int, width: int) -> int:
        """What decoding a (padded) input size holds beyond g_s's per-pixel peak and the
        symbols (e.g. a self-attention's weights); 0 by default."""
        return 0


@functools.lru_cache(maxsize=64)
def _abstract(model: nn.Module):
    """The model bound to abstract variables (shapes only): its codec tree's host methods that
    need no weights (stream specs) work on it without initializing anything."""
    x = jnp.zeros((1, model.stride, model.stride, model.channels), jnp.float32)
    variables = jax.eval_shape(
        lambda k: model.init({"params": k, "noise": k}, x, training=False), jax.random.key(0)
    )
    return model.bind(variables), variables


@functools.lru_cache(maxsize=256)
def _shapes(model: nn.Module, height: int, width: int) -> tuple:
    _, variables = _abstract(model)
    x = jax.ShapeDtypeStruct((1, height, width, model.channels), jnp.float32)
    out = jax.eval_shape(lambda v, x: model.apply(v, x, method="latents"), variables, x)
    return tuple(sorted((k, tuple(v.shape)) for k, v in out.items()))


def latent_shapes(model: nn.Module, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the coded latents for a (padded) input size, from the model's transforms."""
    return dict(_shapes(model, height, width))


def build_tables(model: nn.Module, params: dict) -> dict:
    """The coding tables of the model's codec tree (a pure function of the parameters)."""
    return model.bind({"params": params}).entropy.tables()


def stream_specs(
    model: nn.Module, height: int, width: int, progressive: bool = True
) -> list[bitstream.StreamSpec]:
    """What each stream of a (padded) input size must be (see `bitstream.check_streams`);
    `progressive=False`: those of a progressive model's version-1 files."""
    tree = _abstract(model)[0].entropy
    shapes = latent_shapes(model, height, width)
    if not progressive:
        return tree.stream_specs(shapes, progressive=False)
    return tree.stream_specs(shapes)


def decode_memory(model: nn.Module, height: int, width: int) -> int:
    """Upper bound on the bytes `decompress` allocates for a (padded) image size: g_s's peak
    per output pixel and the coded symbols' host arrays (`bitstream.coding_bytes`)."""
    specs = stream_specs(model, height, width)
    return bitstream.synthesis_memory(
        height,
        width,
        model.synthesis_bytes_per_pixel(),
        bitstream.coding_bytes(specs, model.bytes_per_symbol)
        + model.extra_decode_bytes(height, width),
    )


def coding_options(model: nn.Module) -> frozenset[str]:
    """The coding options the model's `compress` / `decompress` take ("roi", "roi_gain",
    "num_stages", ...): its codec tree's."""
    tree = _abstract(model)[0].entropy
    known = ("roi", "roi_gain", "roi_stages_outside", "num_stages")
    return frozenset(option for option in known if tree.supports(option))


def compress(
    runner: bitstream.Runner, x: np.ndarray, roi: np.ndarray | None = None, **options: Any
):
    """Padded inputs [B, H, W, C] → each one's streams (the codec tree's, in order).

    Args:
      runner: the model bound to its variables and tables.
      x: the padded inputs.
      roi: a region of interest, a mask [H, W] (or one per input, [B, H, W]) padded like the
        inputs, for a tree whose codec of y offers it (`supports("roi")`); with it, `roi_gain`.
      **options: the tree's other coding options.
    """
    tree = runner.bound.entropy
    for option in [*options, "roi"] if roi is not None else options:
        if not tree.supports(option):
            raise ValueError(f"this model has no coding option {option!r}")
    y = runner.call("analysis", x)
    if roi is not None:
        roi = np.broadcast_to(np.asarray(roi), (len(x), *x.shape[1:3]))
    out = []
    for i, y1 in enumerate(y):
        extra = dict(options)
        if roi is not None:
            extra["roi"] = roi_lib.latent_mask(roi[i], x.shape[1] // y.shape[1])
        streams, _ = tree.compress(Context(runner, ROOT), y1[None], **extra)
        out.append(streams)
    return out


def decompress(
    runner: bitstream.Runner,
    streams: list[bytes],
    height: int,
    width: int,
    num_stages: int | None = None,
) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, C] (float, unclipped).

    `num_stages`: a tree with prefix-decodable stages (RVQ) decodes at most that many."""
    shapes = latent_shapes(runner.model, height, width)
    tree = runner.bound.entropy
    options = {}
    if num_stages is not None:
        if not tree.supports("num_stages"):
            raise ValueError("this model has no coding option 'num_stages'")
        options["num_stages"] = num_stages
    y_hat = tree.decompress(Context(runner, ROOT), streams, shapes, **options)
    return runner.call("synthesis", y_hat)


def functions():
    """A composed model module's interface: (build_tables, compress, decompress, stream_specs,
    decode_memory, latent_shapes)."""
    return build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes


def progressive(model: nn.Module) -> bool:
    """Whether the model writes progressive files (any prefix of its streams decodes)."""
    return bool(getattr(_abstract(model)[0].entropy, "writes_progressive", lambda: False)())


def file_stages(model: nn.Module, streams: list[bytes], declared: int) -> tuple[int, int]:
    """(stages the file was written with, stages complete in it), for a progressive model's
    file; (1, 1) otherwise."""
    tree = _abstract(model)[0].entropy
    if not hasattr(tree, "file_stages"):
        return 1, 1
    return tree.file_stages(streams, declared)
