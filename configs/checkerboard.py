"""Train checkerboard (He et al. 2021) at a CompressAI quality (λ ladder and mbt2018's (N, M)).

    python -m nlq_jax.main --config=configs/checkerboard.py:quality=3 \
        --workdir=runs/checkerboard-q3 --config.data.train=folder:/path/to/training/images

Variants after the colon, comma-separated: `quality=1..8`, `msssim` (MS-SSIM distortion
with its λ ladder), `runlocal` (a tiny model on the built-in sample images).
"""

from nlq_jax.config_base import model_config


def get_config(arg=None):
    return model_config("checkerboard", arg)
