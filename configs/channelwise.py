"""Train channelwise (Minnen & Singh 2020) at a CompressAI quality (λ ladder; N = 192, M = 320).

    python -m nlq_jax.main --config=configs/channelwise.py:quality=3 \
        --workdir=runs/channelwise-q3 --config.data.train=folder:/path/to/training/images

Variants after the colon, comma-separated: `quality=1..8`, `msssim` (MS-SSIM distortion
with its λ ladder), `runlocal` (a tiny model on the built-in sample images, 4 slices of M = 48).
"""

from nlq_jax.config_base import model_config, parse_arg


def get_config(arg=None):
    c = model_config("channelwise", arg)
    with c.unlocked():
        runlocal = "runlocal" in parse_arg(arg)
        c.model.num_slices = 4 if runlocal else 10  # slices coded in sequence (must divide M)
        c.model.max_support_slices = 5  # earlier slices each slice sees (−1: all of them)
    return c
