"""Quantizers of the latent, and a registry of the discrete ones by name.

`scalar.quantize` is the noise/rounding quantizer of the continuous-latent models. The discrete
quantizers share one contract (Flax Linen modules):

    z_q, indices, aux = q(z, train=..., rng=None)   # z [..., D] → z_q [..., D], indices int32
                                                     # [..., G], aux float32 scalars "loss",
                                                     # "usage", "perplexity", "dead_codes"
    z_q = q.decode(indices)                          # bit-equal to the eval call's z_q
    q.num_codes                                      # alphabet size of each of the G groups

Mutable state (EMA codebooks) lives in the "quantizer_state" collection; quantizers without
state (fsq, scalar, gumbel) create none.
"""

from __future__ import annotations

import flax.linen as nn

from nlq_jax.quantizers.fsq import FSQ
from nlq_jax.quantizers.gumbel import GumbelQuantizer, temperature_schedule
from nlq_jax.quantizers.learned_scalar import LearnedScalarQuantizer
from nlq_jax.quantizers.pq import ProductVQ
from nlq_jax.quantizers.rvq import ResidualVQ
from nlq_jax.quantizers.vq import VectorQuantizer

QUANTIZERS = {
    "vq": VectorQuantizer,
    "rvq": ResidualVQ,
    "pvq": ProductVQ,
    "fsq": FSQ,
    "scalar": LearnedScalarQuantizer,
    "gumbel": GumbelQuantizer,
}

# Config-style names accepted for the modules' attribute names.
ALIASES = {
    "commitment_cost": "beta",
    "ema_decay": "decay",
    "dead_code_threshold": "dead_threshold",
    "latent_dim": "dim",
}

__all__ = [
    "ALIASES",
    "FSQ",
    "QUANTIZERS",
    "GumbelQuantizer",
    "LearnedScalarQuantizer",
    "ProductVQ",
    "ResidualVQ",
    "VectorQuantizer",
    "get_quantizer",
    "temperature_schedule",
]


def get_quantizer(name: str, **kwargs) -> nn.Module:
    """Builds discrete quantizer `name` ("vq", "rvq", "pvq", "fsq", "scalar", "gumbel").

    Keyword arguments are the module's attributes; the config-style names of `ALIASES`
    (commitment_cost, ema_decay, dead_code_threshold, latent_dim) are accepted too.
    """
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; known: {', '.join(QUANTIZERS)}")
    renamed = {}
    for key, value in kwargs.items():
        target = ALIASES.get(key, key)
        if target in renamed:
            raise ValueError(f"{key!r} and {target!r} both given")
        renamed[target] = value
    return QUANTIZERS[name](**renamed)
