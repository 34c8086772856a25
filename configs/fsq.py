"""Train NLQ with finite scalar quantization: levels (8, 8, 8, 5, 5, 5), 64000 implicit codes.

    python -m nlq_jax.main --config=configs/fsq.py --workdir=runs/fsq \
        --config.data.train=folder:/path/to/training/images

Mentzer, Minnen, Agustsson, Tschannen, "Finite Scalar Quantization: VQ-VAE Made Simple",
ICLR 2024 (table 1's levels for a 2^16 codebook). No codebook to collapse, no auxiliary loss.
Variants after the colon: `runlocal` (a tiny model on the sample images), `msssim`.
The quantizer's options are `nlq_jax.quantizers.FSQ`'s.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "fsq"  # a label for the run, part of the exported model's name
    c.model.num_res_blocks = 1  # residual blocks per resolution
    c.model.quantizer = dict(
        name="fsq",  # bounded rounding of a few channels, one index per position
        levels=(8, 8, 8, 5, 5, 5),  # levels per channel: 64000 codes, ~15.97 bits
        eps=1e-3,  # margin of the tanh bounding inside the outermost bins
    )
    return discrete_variants(c, arg)
