"""What the layers above the models need to know about a kind of signal: a domain adapter.

Quantizers, priors, latent codecs and the range coder handle arrays of any shape; what is
particular to images (or audio, or video) is small and lives here: the batch key of the data
pipeline, the sample the trainer initializes a model with, what the rate is divided by (pixels
for bits per pixel, seconds for bits per second), and the byte that names the domain in a
container. The codec, the trainer's loss and the evaluation ask the model's domain instead of
assuming an RGB image.

```
domain = get_domain("image")
domain.sample(crop=256)               # float32 [1, 256, 256, 3]: the trainer's init input
domain.rate_units(x.shape)            # H·W: bits / this is bits per pixel
domain.rate_unit                      # "bpp"
```
"""

from __future__ import annotations

import dataclasses

import numpy as np


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
      channels: the channel counts (last axis) a codec accepts.
    """

    name: str
    code: int
    batch_key: str
    rate_unit: str
    spatial_axes: tuple[int, ...]
    channels: tuple[int, ...]

    def sample(self, crop: int, channels: int | None = None) -> np.ndarray:
        """A zero input of batch 1, `crop` along each spatial axis (the trainer's init input)."""
        shape = [1] + [crop] * len(self.spatial_axes) + [channels or self.channels[-1]]
        return np.zeros(shape, np.float32)

    def rate_units(self, shape: tuple[int, ...]) -> int:
        """What bits are divided by for the rate of one example of a batch of `shape`: the
        product of the spatial sizes (H·W for an image: bits per pixel)."""
        return int(np.prod([shape[a] for a in self.spatial_axes]))


IMAGE = Domain(
    name="image", code=0, batch_key="image", rate_unit="bpp", spatial_axes=(1, 2), channels=(1, 3)
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
