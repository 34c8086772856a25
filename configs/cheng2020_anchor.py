"""Train cheng2020-anchor (residual transforms, sub-pixel up-sampling, mbt2018's joint
entropy model) at a quality (λ ladder and sizes per quality).

    python -m nlq_jax.main --config=configs/cheng2020_anchor.py:quality=3 \
        --workdir=runs/cheng2020_anchor-q3 \
        --config.data.train=folder:/path/to/training/images

Variants after the colon, comma-separated: `quality=1..8`, `msssim` (MS-SSIM distortion
with its λ ladder), `compressai` (CompressAI's training recipe), `runlocal` (a tiny model on
the built-in sample images).
"""

from nlq_jax.config_base import model_config


def get_config(arg=None):
    return model_config("cheng2020_anchor", arg)
