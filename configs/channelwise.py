"""Train channelwise (Minnen & Singh 2020) at a CompressAI quality (λ ladder; N = 192, M = 320).

    python -m nlq_jax.main --config=configs/channelwise.py:quality=3 \
        --workdir=runs/channelwise-q3 --config.data.train=folder:/path/to/training/images

Variants after the colon, comma-separated: `quality=1..8`, `msssim` (MS-SSIM distortion
with its λ ladder), `runlocal` (a tiny model on the built-in sample images, 4 slices of M = 48).
"""

from nlq_jax.config_base import base_config, parse_arg, scalar_variants


def get_config(arg=None):
    c = base_config()
    c.model.name = "channelwise"  # Minnen & Singh 2020: channel-conditional slices
    # Sizes at quality 3; `quality=Q` sets CompressAI's (N, M) for Q.
    c.model.N = 192  # channels of the transforms and of z
    c.model.M = 320  # channels of the latent y
    c.model.num_slices = 10  # slices of y coded in sequence (must divide M)
    c.model.max_support_slices = 5  # earlier slices each slice sees (−1: all)
    c.model.upsampling = "phase"  # UpConv: "phase" (fast), "transpose" or "subpixel"
    c.model.prior_filters = (3, 3, 3)  # factorized prior's hidden widths (CompressAI: 3, 3, 3, 3)
    # The factorized prior's quantization offsets: "bisection" (its medians) or "stored"
    # (CompressAI's learned medians, as `nlq import compressai` writes them).
    c.model.prior_medians = "bisection"
    c.model.table_precision = 24  # bits of the Gaussian tables' probabilities (CompressAI: 16)
    c = scalar_variants(c, arg)
    if "runlocal" in parse_arg(arg):
        c.model.num_slices = 4  # of the tiny model's M = 48
    return c
