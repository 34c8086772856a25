"""Quickstart: a small scale-hyperprior trained on the sample photographs that ship inside
scikit-image, scikit-learn and matplotlib (no download), in under 10 minutes on 2 CPU cores;
then evaluated with real bitstreams on two photographs it never saw, beside JPEG and WebP.

    python -m nlq_jax.main --config=configs/quickstart.py --workdir=runs/quickstart

Writes into the workdir: checkpoints/, export/ (for `nlq compress`), metrics.json,
rd.png (its point beside JPEG and WebP on the held-out images), reconstruction.png, tb/.
"""

from nlq_jax.config_base import base_config

HELD_OUT = "chelsea,china"


def get_config(arg=None):
    c = base_config()
    c.name = "quickstart"
    c.model.name = "hyperprior"  # Ballé et al. 2018: scale hyperprior
    c.model.N, c.model.M = 64, 96  # channels of the transforms and of z; of the latent y
    c.model.upsampling = "phase"  # UpConv: "phase" (fast), "transpose" or "subpixel"
    c.lmbda = 0.0035  # a low rate, where a briefly trained model can already beat JPEG
    c.num_steps = 1200
    c.data.train = "samples"
    c.data.train_exclude = HELD_OUT
    c.data.crop_size, c.data.batch_size = 128, 8
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 50
    c.optimizer.final_lr_fraction = 0.05
    c.log_every, c.image_every, c.checkpoint_every = 25, 300, 300
    c.eval.source, c.eval.names = "samples", HELD_OUT
    c.eval_every = 0
    c.report = True
    if arg == "runlocal":
        c.num_steps, c.log_every, c.checkpoint_every, c.image_every = 20, 5, 10, 0
        c.model.N, c.model.M = 32, 48
        c.data.crop_size, c.data.batch_size = 64, 4
    c.lock()
    return c
