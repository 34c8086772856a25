"""The fields every training config has, with their defaults; configs/*.py start from here.

Every field carries a one-line comment. Configs are locked (`ConfigDict.lock()`), so a typo in
an override (`--config.lmda=...`) is an error, not a silently ignored field.
"""

from __future__ import annotations

import ml_collections

# CompressAI's λ ladder for qualities 1–8: loss = λ·255²·MSE + bpp ...
MSE_LAMBDAS = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)
# ... and for the MS-SSIM distortion: loss = λ·(1 − MS-SSIM) + bpp.
MS_SSIM_LAMBDAS = (2.40, 4.58, 8.73, 16.64, 31.73, 60.50, 115.37, 220.00)


def parse_arg(arg: str | None) -> dict[str, str]:
    """'quality=3,runlocal' → {'quality': '3', 'runlocal': ''} (the config variant string)."""
    out = {}
    for part in (arg or "").split(","):
        part = part.strip()
        if part:
            key, _, value = part.partition("=")
            out[key.strip()] = value.strip()
    return out


def base_config() -> ml_collections.ConfigDict:
    """Defaults shared by all model configs (unlocked; the caller locks it)."""
    c = ml_collections.ConfigDict()
    c.name = ""  # a label for the run, part of the exported model's name
    c.seed = 0  # initialization, data order and quantization noise
    c.num_steps = 1_000_000  # optimizer steps

    c.model = ml_collections.ConfigDict()
    c.model.name = "hyperprior"  # module in nlq_jax/models/
    c.model.N = 128  # hidden channels (CompressAI's N for the quality)
    c.model.M = 192  # latent channels (CompressAI's M for the quality)
    c.model.upsampling = "phase"  # "phase" (fast transposed conv), "transpose" or "subpixel"

    c.lmbda = MSE_LAMBDAS[2]  # rate–distortion trade-off λ
    c.distortion = "mse"  # "mse" (λ·255²·MSE) or "ms-ssim" (λ·(1 − MS-SSIM))

    c.data = ml_collections.ConfigDict()
    c.data.train = "tfds:imagenet2012:train"  # "samples", "folder:PATH" or "tfds:NAME[:SPLIT]"
    c.data.train_exclude = ""  # comma-separated sample names kept out of training
    c.data.crop_size = 256  # random square crops (a multiple of the model's stride)
    c.data.batch_size = 16  # global batch (divided across processes and devices)
    c.data.small = "pad"  # images smaller than the crop: "pad" (reflect) or "skip"
    c.data.worker_count = 0  # grain worker processes (0: decode in the main process)

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 1e-4  # peak learning rate (Adam)
    c.optimizer.schedule = "cosine"  # "constant" or "cosine" (decay to final_lr_fraction)
    c.optimizer.warmup_steps = 1000  # linear warm-up
    c.optimizer.final_lr_fraction = 0.01  # end of the cosine decay, as a fraction of the peak
    c.optimizer.b1 = 0.9  # Adam β1
    c.optimizer.b2 = 0.999  # Adam β2
    c.optimizer.grad_clip = 1.0  # global-norm clipping (0: off)

    c.sharding = ml_collections.ConfigDict()
    c.sharding.fsdp = False  # shard parameters and optimizer state over the data axis

    c.log_every = 100  # steps between scalar logs (TensorBoard and metrics.jsonl)
    c.image_every = 5000  # steps between logged reconstructions (0: never)
    c.checkpoint_every = 5000  # steps between checkpoints
    c.keep_checkpoints = 3  # checkpoints kept
    c.async_checkpoints = True  # save in the background

    c.eval = ml_collections.ConfigDict()
    c.eval.source = ""  # held-out images, evaluated with real bitstreams ("" : none)
    c.eval.names = ""  # comma-separated sample names when eval.source is "samples"
    c.eval.max_images = 0  # evaluate at most this many (0: all)
    c.eval_every = 50_000  # steps between evaluations with real bitstreams (0: only at the end)
    c.report = False  # at the end, write an RD plot against JPEG/WebP and a side-by-side PNG
    c.report_baselines = "jpeg,webp"  # codecs on the report's RD plot

    c.debug_inject_nan_at = -1  # testing hook: the loss becomes NaN at this step (-1: never)
    return c


def apply_quality(c: ml_collections.ConfigDict, module, quality: int) -> None:
    """Sets (N, M) and λ for a CompressAI quality level."""
    c.model.update(module.get_default_sizes(quality))
    ladder = MS_SSIM_LAMBDAS if c.distortion == "ms-ssim" else MSE_LAMBDAS
    c.lmbda = ladder[quality - 1]
    c.name = f"q{quality}" + ("-msssim" if c.distortion == "ms-ssim" else "")


def runlocal(c: ml_collections.ConfigDict) -> None:
    """A tiny debug size that runs in a minute on a laptop CPU."""
    c.model.N, c.model.M = 32, 48
    c.data.train = "samples"
    c.data.crop_size, c.data.batch_size = 64, 4
    c.num_steps = 20
    c.log_every, c.checkpoint_every, c.image_every, c.eval_every = 5, 10, 0, 0
    c.optimizer.warmup_steps = 0
    c.eval.source, c.eval.max_images = "samples", 1


def model_config(model_name: str, arg: str | None) -> ml_collections.ConfigDict:
    """The config of configs/<model_name>.py: base + quality (default 3) + variants, locked.

    Variants: `quality=Q`, `msssim` (MS-SSIM distortion and its λ ladder), `runlocal`.
    """
    from nlq_jax import models

    args = parse_arg(arg)
    unknown = set(args) - {"quality", "msssim", "runlocal"}
    if unknown:
        raise ValueError(
            f"unknown config variant(s) {sorted(unknown)}; use quality=Q, msssim, runlocal"
        )
    c = base_config()
    c.model.name = model_name
    if "msssim" in args:
        c.distortion = "ms-ssim"
    apply_quality(c, models.get_module(model_name), int(args.get("quality") or 3))
    if "runlocal" in args:
        runlocal(c)
    c.lock()
    return c
