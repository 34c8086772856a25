"""Train NLQ with a single vector quantizer (VQ-VAE: one EMA codebook of 1024 codes).

    python -m nlq_jax.main --config=configs/vqvae.py --workdir=runs/vqvae \
        --config.data.train=folder:/path/to/training/images

van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
10 bits per position of the 16×-down-sampled latent: at most 0.039 bpp before entropy coding.
Variants after the colon: `runlocal` (a tiny model on the built-in sample images), `msssim`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "vqvae"  # a label for the run, part of the exported model's name
    c.model.quantizer = "vq"  # one codebook
    c.model.codebook_size = 1024  # K: 10 bits per position before entropy coding
    return discrete_variants(c, arg)
