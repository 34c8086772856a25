"""What the layers above the models need to know about a kind of signal: a domain adapter.

Quantizers, priors, latent codecs and the range coder handle arrays of any shape; what is
particular to images (or audio, or video) is small and lives here: the batch key of the data
pipeline, the sample the trainer initializes a model with, what the rate is divided by (pixels
for bits per pixel, seconds for bits per second), the byte that names the domain in a
container, and how the codec turns a uint8 signal into the model's input and back (scaling,
padding to the model's stride along the spatial axes, cropping, the shape a file records). The
codec, the trainer's loss and the evaluation ask the model's domain instead of assuming an RGB
image.

A signal of a domain is an array [*spatial, channels] (an image [H, W, C]), a batch of them
[B, *spatial, channels]; `spatial_axes` are counted in the batch.

```
domain = get_domain("image")
domain.sample(crop=256)               # float32 [1, 256, 256, 3]: the trainer's init input
domain.rate_units(x.shape)            # H·W: bits / this is bits per pixel
domain.rate_unit                      # "bpp"
x = domain.to_model_input(pixels)     # uint8 [H, W, 3] → float32 [1, H, W, 3] in [0, 1]
xp = domain.pad(x, model.stride)      # edge-padded to multiples of the stride along H, W
shape = domain.header_shape(x.shape)  # (H, W, 3): what a .nlq file records
x_hat = domain.crop(x_hat, shape)     # the reconstruction, back to H×W
```
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nlq_jax.errors import ImageError

# The largest size of any axis a container can record (u32).
MAX_SIZE = (1 << 32) - 1


@dataclasses.dataclass(frozen=True)
class Domain:
    """A kind of signal, as the codec, trainer and evaluation see it.

    Attributes:
      name: the domain's name ("image").
      code: its byte in a container (0 is image: files written before domains were recorded).
      batch_key: the data pipeline's key for the signal in a batch ("image").
      rate_unit: the name of the rate's unit ("bpp": bits per pixel).
      spatial_axes: the axes of a batch [B, ...] that a model's stride applies to and that a
        codec pads (an image's H and W).
      channels: the channel counts (last axis) a codec accepts; the last is the model's input.
      max_size: the largest size of a spatial axis a file may record (an image side: 65535).
    """

    name: str
    code: int
    batch_key: str
    rate_unit: str
    spatial_axes: tuple[int, ...]
    channels: tuple[int, ...]
    max_size: int = MAX_SIZE

    def sample(self, crop: int, channels: int | None = None) -> np.ndarray:
        """A zero input of batch 1, `crop` along each spatial axis (the trainer's init input)."""
        shape = [1] + [crop] * len(self.spatial_axes) + [channels or self.channels[-1]]
        return np.zeros(shape, np.float32)

    def rate_units(self, shape: tuple[int, ...]) -> int:
        """What bits are divided by for the rate of one example of a batch of `shape`: the
        product of the spatial sizes (H·W for an image: bits per pixel)."""
        return int(np.prod([shape[a] for a in self.spatial_axes]))

    # One example's shape, as a container records it: [*spatial, channels].
    @property
    def rank(self) -> int:
        """The rank of one example (3 for an image: H, W, C)."""
        return max(self.spatial_axes) + 1

    def spatial_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The spatial sizes of one example of `shape` ((H, W) of an image's (H, W, C))."""
        return tuple(shape[a - 1] for a in self.spatial_axes)

    def check_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Checks one example's shape as a file records it; returns it as a tuple of ints.

        Raises:
          ValueError: a rank other than `rank`, a spatial size outside 1..`max_size`, another
            size outside 1..`MAX_SIZE`, or a channel count not in `channels`; one line.
        """
        shape = tuple(shape)
        if len(shape) != self.rank or not all(_is_int(n) for n in shape):
            raise ValueError(f"invalid {self.name} shape {shape!r} (must be {self.rank} ints)")
        spatial = self.spatial_shape(shape)
        if not all(1 <= n <= self.max_size for n in spatial):
            size = "x".join(str(n) for n in spatial)
            raise ValueError(
                f"absurd {self.name} size {size} (each side must be 1..{self.max_size})"
            )
        if not all(1 <= n <= MAX_SIZE for n in shape):
            raise ValueError(f"absurd {self.name} shape {shape} (each size must be 1..{MAX_SIZE})")
        if shape[-1] not in self.channels:
            allowed = " or ".join(str(c) for c in self.channels)
            raise ValueError(f"invalid channel count {shape[-1]} (must be {allowed})")
        return shape

    def header_shape(self, shape: tuple[int, ...], channels: int | None = None) -> tuple[int, ...]:
        """The shape a file records for each example of a batch of `shape` [B, ...]: an
        example's, its channels replaced by `channels` (what the file decodes to, e.g. 1 for a
        greyscale image coded as RGB)."""
        shape = tuple(int(n) for n in shape[1:])
        return shape if channels is None else (*shape[:-1], channels)

    # The codec's conversions.
    def to_model_input(self, array: np.ndarray) -> np.ndarray:
        """uint8 [*example] or [B, *example] → float32 [B, *example] in [0, 1] (`x / 255`).

        Raises:
          ImageError: not uint8, not of this domain's rank, or not the model's channel count.
        """
        from nlq_jax.codec.image_io import to_float  # the codec's own scaling (imports PIL)

        x = np.asarray(array)
        if x.ndim == self.rank:
            x = x[None]
        if x.ndim != self.rank + 1 or x.shape[-1] != self.channels[-1] or x.dtype != np.uint8:
            example = ", ".join(["…"] * (self.rank - 1) + [str(self.channels[-1])])
            raise ImageError(
                f"expected uint8 {self.name}s [{example}] or [B, {example}], "
                f"got {x.dtype} {x.shape}"
            )
        return to_float(x)

    def pad(self, x: np.ndarray, multiple: int) -> np.ndarray:
        """Edge-pads a batch [B, ...] at the end of each spatial axis to a multiple of
        `multiple` (the model's stride)."""
        widths = [(0, 0)] * x.ndim
        for a in self.spatial_axes:
            widths[a] = (0, -x.shape[a] % multiple)
        if not any(after for _, after in widths):
            return x
        return np.pad(x, widths, mode="edge")

    def padded_shape(self, spatial: tuple[int, ...], multiple: int) -> tuple[int, ...]:
        """Spatial sizes rounded up to multiples of `multiple` (what `pad` gives)."""
        return tuple(n + (-n % multiple) for n in spatial)

    def crop(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """A padded batch [B, ...] cropped back to the spatial sizes of the example `shape`."""
        index = [slice(None)] * x.ndim
        for a, n in zip(self.spatial_axes, self.spatial_shape(shape), strict=True):
            index[a] = slice(0, n)
        return x[tuple(index)]

    def num_samples(self, shape: tuple[int, ...]) -> int:
        """The product of the spatial sizes of the example `shape` (an image's pixels)."""
        return math.prod(self.spatial_shape(shape))


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


IMAGE = Domain(
    name="image",
    code=0,
    batch_key="image",
    rate_unit="bpp",
    spatial_axes=(1, 2),
    channels=(1, 3),
    max_size=65535,
)

DOMAINS: dict[str, Domain] = {IMAGE.name: IMAGE}


def get_domain(name: str) -> Domain:
    """The domain `name`; a one-line error names the known ones."""
    try:
        return DOMAINS[name]
    except KeyError:
        raise ValueError(f"unknown domain {name!r}; known domains: {', '.join(DOMAINS)}") from None


def domain_of_code(code: int) -> Domain:
    """The domain whose container byte is `code` (a `ValueError` for an unknown byte)."""
    for domain in DOMAINS.values():
        if domain.code == code:
            return domain
    raise ValueError(f"unknown domain code {code}")
