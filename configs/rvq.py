"""Train NLQ with a residual vector quantizer: 3 stages × 8192 codes (the seed's NLQ).

    python -m nlq_jax.main --config=configs/rvq.py --workdir=runs/rvq \
        --config.data.train=folder:/path/to/training/images

Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec", TASLP 2021, sec. III-C.
3 × 13 bits per position of the 16×-down-sampled latent: at most 0.152 bpp before entropy
coding; a file may code only the first stages (`Codec.compress(..., num_stages=n)`).
Variants after the colon: `runlocal` (a tiny model on the built-in sample images), `msssim`.
"""

from nlq_jax.config_base import discrete_base, discrete_variants


def get_config(arg=None):
    c = discrete_base("nlq")
    c.name = "rvq"  # a label for the run, part of the exported model's name
    c.model.quantizer = "rvq"  # residual VQ: each stage quantizes the previous stages' error
    c.model.codebook_size = 8192  # K per stage: 13 bits per position and stage
    c.model.num_stages = 3  # S stages
    c.model.dead_code_threshold = 0.1  # 16·16² = 4096 vectors per batch: 0.5 per code
    # β on the latent's distance to the whole code it uses, not on every stage's residual
    # (which pulls the latent onto the first stage's codes; see nlq_jax/quantizers/rvq.py).
    c.model.rvq_commitment = "total"
    return discrete_variants(c, arg)
