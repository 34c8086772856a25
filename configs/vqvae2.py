"""Train VQ-VAE-2: a top (stride 16) and a bottom (stride 8) latent, 512 codes each.

    python -m nlq_jax.main --config=configs/vqvae2.py --workdir=runs/vqvae2 \
        --config.data.train=folder:/path/to/training/images

Razavi, van den Oord, Vinyals, "Generating Diverse High-Fidelity Images with VQ-VAE-2",
NeurIPS 2019. 9 bits per top position and 9 per bottom position: at most 0.176 bpp before
entropy coding. Variants after the colon: `runlocal` (a tiny model on the sample images),
`msssim`. The quantizer's options (one quantizer per level) are
`nlq_jax.quantizers.VectorQuantizer`'s, e.g. `--config.model.quantizer.codebook_size=1024`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("vqvae2")
    c.name = "vqvae2"  # a label for the run, part of the exported model's name
    c.model.bottom_stride = 8  # down-sampling of the bottom latent (4 or 8; the top's is 16)
    c.model.quantizer = dict(
        name="vq",  # one codebook per level (nlq_jax/quantizers/vq.py)
        codebook_size=512,  # K per level: 9 bits per position
        beta=0.25,  # weight of the commitment loss β·‖z − sg(e)‖²
        ema=True,  # learn the codebooks by EMA of the assigned vectors (else by a codebook loss)
        decay=0.99,  # γ of the EMA updates
        eps=1e-5,  # Laplace smoothing of the EMA cluster sizes
        distance="l2",  # "l2", or "cosine": z and codes l2-normalised (Yu et al., ICLR 2022)
        gradient="ste",  # "ste" (straight-through) or "rotation" (Fifty et al., ICLR 2025)
        kmeans_init=True,  # k-means++ and Lloyd on the first training batch
        kmeans_iters=3,  # Lloyd iterations after the k-means++ seeding
        restart_dead=True,  # restart codes whose EMA count falls below dead_threshold
        dead_threshold=1.0,  # EMA count (vectors per batch) below which a code restarts
    )
    return discrete_variants(c, arg)
