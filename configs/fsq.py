"""Train NLQ with finite scalar quantization: levels (8, 8, 8, 5, 5, 5), 64000 implicit codes.

    python -m nlq_jax.main --config=configs/fsq.py --workdir=runs/fsq \
        --config.data.train=folder:/path/to/training/images

Mentzer, Minnen, Agustsson, Tschannen, "Finite Scalar Quantization: VQ-VAE Made Simple",
ICLR 2024 (table 1's levels for a 2^16 codebook). No codebook to collapse, no auxiliary loss.
Variants after the colon: `runlocal` (a tiny model on the sample images), `msssim`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "fsq"  # a label for the run, part of the exported model's name
    c.model.quantizer = "fsq"  # bounded rounding of a few channels, one index per position
    c.model.levels = (8, 8, 8, 5, 5, 5)  # levels per channel: 64000 codes, ~15.97 bits
    return discrete_variants(c, arg)
