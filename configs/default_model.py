"""The model that ships inside the package (`nlq compress IN OUT` with no `--checkpoint`).

A mean-scale hyperprior (mbt2018-mean) at a small size (N=64, M=96), trained at a low rate
(λ = 0.0035, CompressAI's quality 2) on a folder of photographs. The shipped export was trained
on BSDS500 train+val (300 photographs) on 2 CPU cores; its model card is
`nlq_jax/pretrained/default/MODEL_CARD.md`.

    python -m nlq_jax.main --config=configs/default_model.py \
        --config.data.train=folder:/data/bsds500_trainval --workdir=runs/default_model

The schedule is a cosine decay from 1e-3 over `num_steps`, sized to what 2 CPU cores train in
about two hours; resuming from the workdir continues it. Variants: `finetune` (start from
the shipped weights, `init_from="default"`, at 1e-4 — e.g. on your own photographs with
`--config.data.train=folder:PATH --config.num_steps=2000`), `runlocal` (20 steps on the sample
photographs, for the tests; with `finetune`, at the shipped model's size).

    nlq train --config=configs/default_model.py:finetune --workdir=runs/my_default \
        --config.data.train=folder:/data/my_photos --config.num_steps=2000
"""

from nlq_jax.config_base import base_config, parse_arg, runlocal_data


def get_config(arg=None):
    args = parse_arg(arg)
    unknown = set(args) - {"finetune", "runlocal"}
    if unknown:
        raise ValueError(f"unknown config variant(s) {sorted(unknown)}; use finetune, runlocal")
    c = base_config()
    c.name = "default"
    c.model.name = "mean_scale"  # Minnen et al. 2018: mean-scale hyperprior
    c.model.N, c.model.M = 64, 96  # channels of the transforms and of z; of the latent y
    c.model.upsampling = "phase"  # UpConv: "phase" (fast), "transpose" or "subpixel"
    c.lmbda = 0.0035  # CompressAI's quality 2
    c.num_steps = 16_000
    c.data.train = "samples"  # set to folder:PATH (the shipped model: BSDS500 train+val)
    c.data.crop_size, c.data.batch_size = 128, 8
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 200
    c.optimizer.final_lr_fraction = 0.02
    c.log_every, c.image_every, c.checkpoint_every = 100, 0, 500
    c.keep_checkpoints = 2
    c.eval_every = 0
    if "finetune" in args:
        c.init_from = "default"  # the shipped export's weights
        c.optimizer.learning_rate = 1e-4
        c.optimizer.warmup_steps = 0
        c.num_steps = 2000
    if "runlocal" in args:
        runlocal_data(c)
        if "finetune" not in args:
            c.model.N, c.model.M = 32, 48
    c.lock()
    return c
