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
Streams: [z, y]; y's symbols are round(y − μ), so the decoder adds the same μ back (the scale
hyperprior's codec tree with a mean-scale `GaussianConditionalCodec`).
"""

from __future__ import annotations

import flax.linen as nn

from nlq_jax.latent_codecs import GaussianConditionalCodec
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import composed, hyperprior
from nlq_jax.models.hyperprior import _conv3x3


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

    hyper_analysis_input = "identity"

    @nn.nowrap
    def latent_codec(self) -> nn.Module:
        """The codec of y given ψ = h_s(ẑ) = [σ | μ]."""
        return GaussianConditionalCodec(
            param_form="mean_scale",
            scale_rule=self.scale_rule,
            table_precision=self.table_precision,
            roi=True,
        )


(build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes) = (
    composed.functions()
)
