"""Layers of the analysis and synthesis transforms: GDN, down/up-sampling convs, blocks (NHWC)."""

from nlq_jax.layers.blocks import (
    AttentionBlock,
    ResidualBlock,
    ResidualUnit,
    SelfAttention,
)
from nlq_jax.layers.conv import DownConv, UpConv, upsampling_methods
from nlq_jax.layers.conv_ops import depth_to_space
from nlq_jax.layers.gdn import GDN

__all__ = [
    "GDN",
    "AttentionBlock",
    "DownConv",
    "ResidualBlock",
    "ResidualUnit",
    "SelfAttention",
    "UpConv",
    "depth_to_space",
    "upsampling_methods",
]
