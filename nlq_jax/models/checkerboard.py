"""Checkerboard context: a mean-scale hyperprior with a two-step spatial context model.

He, Zheng, Sun, Wang, Qin, "Checkerboard Context Model for Efficient Learned Image Compression",
CVPR 2021, sec. 3 (fig. 3 and 4): the latent grid is split into anchors (i + j even) and
non-anchors (i + j odd). Anchors are coded with the hyperprior alone (their context is zero);
non-anchors with a 5×5 convolution masked to the checkerboard, which only sees anchors. Both
steps share the entropy-parameters network of Minnen, Ballé, Toderici, "Joint autoregressive
and hierarchical priors for learned image compression", NeurIPS 2018, sec. 3 (1×1 convs), so
decoding takes two parallel steps instead of one per latent position.

```
x ─► g_a ─► y ─► Q(around μ) ─► ŷ ──────────────────────────────────────────────► g_s ─► x̂
            │                    │ anchors only                 ▲ N(μ, σ²) per element
            │                    └► ctx: 5×5 checkerboard conv ─┤ (anchors: ctx = 0)
            └► h_a ─► z ─► Q(medians) ─► ẑ ─► h_s ─► ψ ─────────┴► entropy parameters ─► (σ, μ)
                           ẑ coded with a deep factorized prior      [ψ, ctx] 4M → 10M/3 →
                                                                      8M/3 → 2M (1×1, LReLU)
h_a, h_s: mbt2018's (as `mean_scale`); g_a, g_s: bmshj2018's GDN transforms.
```

Training, eval and coding are `nlq_jax.latent_codecs.CheckerboardCodec`'s: the hyperprior's
codec tree with a checkerboard codec of y given ψ = h_s(ẑ). Streams: [z, y]; y is one stream
of two chunks, the anchors and then the non-anchors.
"""

from __future__ import annotations

import flax.linen as nn

from nlq_jax.entropy.context import entropy_parameters
from nlq_jax.latent_codecs import CheckerboardCodec, CheckerboardConv
from nlq_jax.models import composed, joint, mean_scale

# mbt2018's (N, M) per quality, the paper's base.
get_default_sizes = joint.get_default_sizes


class Model(mean_scale.Model):
    """Checkerboard-context model; see the module docstring for the data flow.

    Attributes:
      N: channels of the hidden layers and of z.
      M: channels of the latent y.
      upsampling: `UpConv` method of g_s and h_s.
    """

    N: int = 192
    M: int = 192
    upsampling: str = "phase"

    stride = 64  # input sizes must be multiples of this (the codec pads)

    def setup(self):
        self.context_prediction = CheckerboardConv(2 * self.M)
        self.entropy_parameters = entropy_parameters(self.M)
        super().setup()

    @nn.nowrap
    def latent_codec(self) -> nn.Module:
        """The codec of y given ψ = h_s(ẑ): anchors, then non-anchors from a 5×5 checkerboard
        context."""
        return CheckerboardCodec(
            self.context_prediction,
            self.entropy_parameters,
            scale_rule=self.scale_rule,
            table_precision=self.table_precision,
        )


(build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes) = (
    composed.functions()
)
