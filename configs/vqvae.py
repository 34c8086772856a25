"""Train NLQ with a single vector quantizer (VQ-VAE: one EMA codebook of 1024 codes).

    python -m nlq_jax.main --config=configs/vqvae.py --workdir=runs/vqvae \
        --config.data.train=folder:/path/to/training/images

van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning", NeurIPS 2017.
10 bits per position of the 16×-down-sampled latent: at most 0.039 bpp before entropy coding.
Variants after the colon: `runlocal` (a tiny model on the built-in sample images), `msssim`.
The quantizer's options are `nlq_jax.quantizers.VectorQuantizer`'s, e.g.
`--config.model.quantizer.distance=cosine`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "vqvae"  # a label for the run, part of the exported model's name
    c.model.num_res_blocks = 1  # residual blocks per resolution
    c.model.quantizer = dict(
        name="vq",  # one codebook (nlq_jax/quantizers/vq.py)
        codebook_size=1024,  # K: 10 bits per position before entropy coding
        beta=0.25,  # weight of the commitment loss β·‖z − sg(e)‖²
        ema=True,  # learn the codebook by EMA of the assigned vectors (else by a codebook loss)
        decay=0.99,  # γ of the EMA updates
        eps=1e-5,  # Laplace smoothing of the EMA cluster sizes
        distance="l2",  # "l2", or "cosine": z and codes l2-normalised (Yu et al., ICLR 2022)
        gradient="ste",  # "ste" (straight-through) or "rotation" (Fifty et al., ICLR 2025)
        kmeans_init=True,  # k-means++ and Lloyd on the first training batch
        kmeans_iters=3,  # Lloyd iterations after the k-means++ seeding
        restart_dead=True,  # restart codes whose EMA count falls below dead_threshold
        # EMA count (vectors per batch) below which a code is restarted (0: never); about a
        # quarter of the mean count, batch·(crop/16)² / K (16·16² / 1024 = 4 here).
        dead_threshold=1.0,
    )
    return discrete_variants(c, arg)
