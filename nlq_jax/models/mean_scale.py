"""mbt2018-mean: a mean-and-scale hyperprior — ẑ predicts a Gaussian mean and scale for y.

Minnen, Ballé, Toderici, "Joint autoregressive and hierarchical priors for learned image
compression", NeurIPS 2018, sec. 3 (the hyperprior-only variant without the context model;
CompressAI's `mbt2018-mean`).

```
x ─► g_a ─► y ─► Q(around μ) ─► ŷ ───────────────────────► g_s ─► x̂
            │                    ▲ N(μ, σ²) per element (Gaussian conditional, scale table)
            └► h_a ─► z ─► Q(medians) ─► ẑ ─► h_s ─► (σ, μ)
                        ẑ coded with a deep factorized prior
h_a: conv3×3, LReLU, conv5×5/2, LReLU, conv5×5/2     h_s: deconv5×5×2 → M, LReLU,
                                                         deconv5×5×2 → 3M/2, LReLU, conv3×3 → 2M
```
Streams: [z, y]; y's symbols are round(y − μ), so the decoder adds the same μ back.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import hyperprior
from nlq_jax.models.hyperprior import _conv3x3, build_tables, compress, decompress, latent_shapes

__all__ = ["Model", "build_tables", "compress", "decompress", "get_default_sizes", "latent_shapes"]

# Its streams and its decoder's memory are the scale hyperprior's (h_s works at latent size).
decode_memory = hyperprior.decode_memory
stream_specs = hyperprior.stream_specs


def get_default_sizes(quality: int) -> dict[str, int]:
    """CompressAI's (N, M) for mbt2018-mean at quality 1–8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 128, "M": 192} if quality <= 4 else {"N": 192, "M": 320}


class Model(hyperprior.Model):
    """Mean-scale hyperprior model; see the module docstring for the data flow."""

    def hyper_transforms(self) -> tuple[nn.Module, nn.Module]:
        N, M, up = self.N, self.M, self.upsampling
        h_a = nn.Sequential(
            [_conv3x3(N), nn.leaky_relu, DownConv(N), nn.leaky_relu, DownConv(N)], name="h_a"
        )
        h_s = nn.Sequential(
            [
                UpConv(M, method=up),
                nn.leaky_relu,
                UpConv(M * 3 // 2, method=up),
                nn.leaky_relu,
                _conv3x3(2 * M),
            ],
            name="h_s",
        )
        return h_a, h_s

    def hyper_analysis_input(self, y: jax.Array) -> jax.Array:
        return y

    def gaussian_params(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(scales, means) of y from ẑ, split from h_s's 2M channels."""
        params = self.h_s(z_hat)
        return params[..., : self.M], params[..., self.M :]
