"""Train joint (mbt2018: masked context model + mean-scale hyperprior) at a CompressAI quality
(λ ladder and (N, M) per quality).

    python -m nlq_jax.main --config=configs/joint.py:quality=3 --workdir=runs/joint-q3 \
        --config.data.train=folder:/path/to/training/images

Variants after the colon, comma-separated: `quality=1..8`, `msssim` (MS-SSIM distortion
with its λ ladder), `runlocal` (a tiny model on the built-in sample images).
"""

from nlq_jax.config_base import model_config


def get_config(arg=None):
    return model_config("joint", arg)
