"""Train NLQ with a product quantizer: the latent split into 4 groups of 1024 codes each.

    python -m nlq_jax.main --config=configs/pvq.py --workdir=runs/pvq \
        --config.data.train=folder:/path/to/training/images

Jégou, Douze, Schmid, "Product Quantization for Nearest Neighbor Search", TPAMI 2011.
4 × 10 bits per position of the 16×-down-sampled latent: at most 0.156 bpp before entropy
coding. Variants after the colon: `runlocal` (a tiny model on the sample images), `msssim`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "pvq"  # a label for the run, part of the exported model's name
    c.model.quantizer = "pvq"  # product VQ: one codebook per sub-vector
    c.model.codebook_size = 1024  # K per group: 10 bits per position and group
    c.model.groups = 4  # sub-vectors of latent_dim / 4 channels
    return discrete_variants(c, arg)
