"""mbt2018: joint autoregressive and hierarchical priors — a mean-scale hyperprior plus a masked
5×5 context model over the already decoded latents.

Minnen, Ballé, Toderici, "Joint autoregressive and hierarchical priors for learned image
compression", NeurIPS 2018, sec. 3 and fig. 2 (CompressAI's `mbt2018`).

```
x ─► g_a ─► y ─► Q(around μ) ─► ŷ ─────────────────────────────────────► g_s ─► x̂
            │                   │ ▲ N(μ, σ²) per element
            │                   └► g_c (5×5 masked conv, 2M) ─┐
            └► h_a ─► z ─► Q ─► ẑ ─► h_s (2M) ────────────────┴► concat ─► e_p ─► (σ, μ)
                       ẑ coded with a deep factorized prior
g_c: mask "A" (rows above and positions to the left)
e_p: 1×1 convs 4M → 10M/3 → 8M/3 → 2M with leaky ReLUs
```
Training uses additive noise, and the context sees the noisy ỹ (all positions at once); the
rate term is computed on a second, independent noise sample y + u₂, as in CompressAI's mbt2018
(its Gaussian conditional adds its own noise to y).

Coding decodes the latent wavefront by wavefront in one jitted loop whose host callback codes
each wavefront (`nlq_jax.latent_codecs.AutoregressiveCodec`); the eval forward runs the same
loop, so its ŷ and bits are the codec's.

Streams: [z, y]; y holds one chunk per wavefront (regular symbols, then that chunk's escapes).
"""

from __future__ import annotations

import flax.linen as nn

from nlq_jax.entropy.context import MaskedConv, entropy_parameters
from nlq_jax.latent_codecs import AutoregressiveCodec
from nlq_jax.models import composed, mean_scale


def get_default_sizes(quality: int) -> dict[str, int]:
    """CompressAI's (N, M) for mbt2018 at quality 1–8."""
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    return {"N": 192, "M": 192} if quality <= 4 else {"N": 192, "M": 320}


class Model(mean_scale.Model):
    """Joint autoregressive + hyperprior model; see the module docstring for the data flow."""

    # The wavefront loop's padded ŷ grid, σ, μ and ψ, and the schedule's tap indexes.
    bytes_per_symbol = 128

    def setup(self):
        self.context_prediction = MaskedConv(self.M, 2 * self.M, 5)
        self.entropy_parameters = entropy_parameters(self.M)
        super().setup()

    @nn.nowrap
    def latent_codec(self) -> nn.Module:
        """The codec of y given ψ = h_s(ẑ): wavefronts of a masked 5×5 context."""
        return AutoregressiveCodec(
            self.context_prediction,
            self.entropy_parameters,
            scale_rule=self.scale_rule,
            table_precision=self.table_precision,
        )


(build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes) = (
    composed.functions()
)
