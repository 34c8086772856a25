"""Train NLQ with a residual vector quantizer: 3 stages × 8192 codes (the seed's NLQ).

    python -m nlq_jax.main --config=configs/rvq.py --workdir=runs/rvq \
        --config.data.train=folder:/path/to/training/images

Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", TASLP 2021, sec. III-C.
3 × 13 bits per position of the 16×-down-sampled latent: at most 0.152 bpp before entropy
coding; a file may code only the first stages (`Codec.compress(..., num_stages=n)`).
Variants after the colon: `runlocal` (a tiny model on the built-in sample images), `msssim`.
The quantizer's options are `nlq_jax.quantizers.ResidualVQ`'s, e.g.
`--config.model.quantizer.num_stages=4`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "rvq"  # a label for the run, part of the exported model's name
    c.model.num_res_blocks = 1  # residual blocks per resolution
    c.model.quantizer = dict(
        name="rvq",  # residual VQ: each stage quantizes the previous stages' error
        num_stages=3,  # S stages
        codebook_size=8192,  # K per stage: 13 bits per position and stage
        dropout=True,  # quantizer dropout: trains every prefix of the stages
        dropout_rate=1.0,  # fraction of the examples trained on a random prefix of the stages
        # β on the latent's distance to the whole code it uses, not on every stage's residual
        # (which pulls the latent onto the first stage's codes; see nlq_jax/quantizers/rvq.py).
        commitment="total",
        beta=0.25,  # weight of the commitment loss β·‖z − sg(e)‖²
        ema=True,  # learn the codebooks by EMA of the assigned vectors (else by a codebook loss)
        decay=0.99,  # γ of the EMA updates
        eps=1e-5,  # Laplace smoothing of the EMA cluster sizes
        distance="l2",  # "l2", or "cosine": z and codes l2-normalised (Yu et al., ICLR 2022)
        gradient="ste",  # "ste" (straight-through) or "rotation" (Fifty et al., ICLR 2025)
        kmeans_init=True,  # k-means++ and Lloyd on the first training batch
        kmeans_iters=3,  # Lloyd iterations after the k-means++ seeding
        restart_dead=True,  # restart codes whose EMA count falls below dead_threshold
        dead_threshold=0.1,  # 16·16² = 4096 vectors per batch: 0.5 per code
    )
    return discrete_variants(c, arg)
