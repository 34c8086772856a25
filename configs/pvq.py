"""Train NLQ with a product quantizer: the latent split into 4 groups of 1024 codes each.

    python -m nlq_jax.main --config=configs/pvq.py --workdir=runs/pvq \
        --config.data.train=folder:/path/to/training/images

Jégou, Douze, Schmid, "Product Quantization for Nearest Neighbor Search", TPAMI 2011.
4 × 10 bits per position of the 16×-down-sampled latent: at most 0.156 bpp before entropy
coding. Variants after the colon: `runlocal` (a tiny model on the sample images), `msssim`.
The quantizer's options are `nlq_jax.quantizers.ProductVQ`'s, e.g.
`--config.model.quantizer.groups=8`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "pvq"  # a label for the run, part of the exported model's name
    c.model.num_res_blocks = 1  # residual blocks per resolution
    c.model.quantizer = dict(
        name="pvq",  # product VQ: one codebook per sub-vector
        groups=4,  # sub-vectors of latent_dim / 4 channels
        codebook_size=1024,  # K per group: 10 bits per position and group
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
