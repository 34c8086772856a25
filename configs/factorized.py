"""Train factorized at a CompressAI quality (λ ladder and (N, M) per quality).

    python -m nlq_jax.main --config=configs/factorized.py:quality=3 --workdir=runs/factorized-q3 \
        --config.data.train=folder:/path/to/training/images

Variants after the colon, comma-separated: `quality=1..8`, `msssim` (MS-SSIM distortion
with its λ ladder), `runlocal` (a tiny model on the built-in sample images).
"""

from nlq_jax.config_base import base_config, scalar_variants


def get_config(arg=None):
    c = base_config()
    c.model.name = "factorized"  # Ballé et al. 2017: a factorized prior of y
    # Sizes at quality 3; `quality=Q` sets CompressAI's (N, M) for Q.
    c.model.N = 128  # channels of the transforms and of z
    c.model.M = 192  # channels of the latent y
    c.model.upsampling = "phase"  # UpConv: "phase" (fast), "transpose" or "subpixel"
    c.model.prior_filters = (3, 3, 3)  # factorized prior's hidden widths (CompressAI: 3, 3, 3, 3)
    # The factorized prior's quantization offsets: "bisection" (its medians) or "stored"
    # (CompressAI's learned medians, as `nlq import compressai` writes them).
    c.model.prior_medians = "bisection"
    return scalar_variants(c, arg)
