"""Train cheng2020-anchor (residual transforms, sub-pixel up-sampling, mbt2018's joint
entropy model) at a quality (λ ladder and sizes per quality).

    python -m nlq_jax.main --config=configs/cheng2020_anchor.py:quality=3 \
        --workdir=runs/cheng2020_anchor-q3 \
        --config.data.train=folder:/path/to/training/images

Variants after the colon, comma-separated: `quality=1..8`, `msssim` (MS-SSIM distortion
with its λ ladder), `compressai` (CompressAI's training recipe), `runlocal` (a tiny model on
the built-in sample images).
"""

from nlq_jax.config_base import base_config, scalar_variants


def get_config(arg=None):
    c = base_config()
    c.model.name = "cheng2020_anchor"  # Cheng et al. 2020 without attention
    # Sizes at quality 3; `quality=Q` sets CompressAI's (N, M) for Q.
    c.model.N = 128  # channels of the transforms and of z
    c.model.M = 128  # channels of the latent y
    c.model.upsampling = "phase"  # UpConv: "phase" (fast), "transpose" or "subpixel"
    c.model.prior_filters = (3, 3, 3)  # factorized prior's hidden widths (CompressAI: 3, 3, 3, 3)
    # The factorized prior's quantization offsets: "bisection" (its medians) or "stored"
    # (CompressAI's learned medians, as `nlq import compressai` writes them).
    c.model.prior_medians = "bisection"
    c.model.scale_rule = "nearest"  # σ → Gaussian table: "nearest" or "next_larger" (CompressAI)
    c.model.table_precision = 24  # bits of the Gaussian tables' probabilities (CompressAI: 16)
    return scalar_variants(c, arg)
