"""Train VQ-VAE-2: a top (stride 16) and a bottom (stride 8) latent, 512 codes each.

    python -m nlq_jax.main --config=configs/vqvae2.py --workdir=runs/vqvae2 \
        --config.data.train=folder:/path/to/training/images

Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2",
NeurIPS 2019. 9 bits per top position and 9 per bottom position: at most 0.176 bpp before
entropy coding. Variants after the colon: `runlocal` (a tiny model on the sample images),
`msssim`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("vqvae2")
    c.name = "vqvae2"  # a label for the run, part of the exported model's name
    c.model.quantizer = "vq"  # one codebook per level
    c.model.codebook_size = 512  # K per level: 9 bits per position
    return discrete_variants(c, arg)
