"""Latent codecs: the parts a model's entropy model is built from (see `base` for the contract).

| codec | codes | conditioned on |
|---|---|---|
| `EntropyBottleneckCodec` | a latent, one deep factorized table per channel | nothing |
| `GaussianConditionalCodec` | N(μ, σ²) per element, scale table | (σ[, μ]) |
| `HyperpriorCodec` | side information z, then y through another codec | — (it makes ψ) |
| `CheckerboardCodec` | anchors, then non-anchors from a masked conv | ψ |
| `AutoregressiveCodec` | wavefront by wavefront from a causal conv | ψ |
| `ChannelGroupsCodec` | channel groups in sequence (uneven sizes, LRP) | ψ |
| `CategoricalIndicesCodec` | a discrete quantizer's code indices, categorical prior | — |
| `TwoLevelCodec` | a top latent, then a bottom one analysed with its help | — |
"""

from nlq_jax.latent_codecs.autoregressive import AutoregressiveCodec
from nlq_jax.latent_codecs.base import Context, LatentCodec, StreamCodec
from nlq_jax.latent_codecs.categorical import CategoricalIndicesCodec
from nlq_jax.latent_codecs.channel_groups import ChannelGroupsCodec
from nlq_jax.latent_codecs.checkerboard import CheckerboardCodec, CheckerboardConv
from nlq_jax.latent_codecs.entropy_bottleneck import EntropyBottleneckCodec
from nlq_jax.latent_codecs.gaussian import GaussianConditionalCodec
from nlq_jax.latent_codecs.hyperprior import HyperpriorCodec
from nlq_jax.latent_codecs.two_level import TwoLevelCodec

__all__ = [
    "AutoregressiveCodec",
    "CategoricalIndicesCodec",
    "ChannelGroupsCodec",
    "CheckerboardCodec",
    "CheckerboardConv",
    "Context",
    "EntropyBottleneckCodec",
    "GaussianConditionalCodec",
    "HyperpriorCodec",
    "LatentCodec",
    "StreamCodec",
    "TwoLevelCodec",
]
