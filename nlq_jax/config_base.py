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

    c.prior_fit_batches = 0  # discrete models: refit the priors to this many batches' codes
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
    runlocal_data(c)


def runlocal_data(c: ml_collections.ConfigDict) -> None:
    """`runlocal`'s data, schedule and logging: 20 steps on 64² crops of the sample images."""
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


# Discrete latents (nlq, vqvae2): the rate is fixed by the codebooks (log2 K bits per index
# before entropy coding; bpp only trains the categorical priors, which no other term touches),
# so λ weighs the distortion against the quantizers' own losses (commitment β·‖z − sg(e)‖²).
# CompressAI's quality-3 λ (λ·255² ≈ 436) lets the distortion dominate, as the reconstruction
# losses do in VQGAN and SoundStream; with λ·255² = 1 (plain VQ-VAE) the commitment term pulls
# the latent onto the first RVQ stage's codes and the later stages carry almost nothing.
DISCRETE_LAMBDA = MSE_LAMBDAS[2]


def discrete_base(model_name: str) -> ml_collections.ConfigDict:
    """Defaults of a discrete-latent model's config (configs/vqvae.py, rvq.py, ...), unlocked.

    `c.model` holds every field of `nlq.Model` (and `vqvae2.Model`); the config file overrides
    the quantizer's, then `discrete_variants` applies the variant and locks.
    """
    c = base_config()
    c.name = model_name
    m = c.model = ml_collections.ConfigDict()
    m.name = model_name  # module in nlq_jax/models/: "nlq" or "vqvae2"
    m.N = 128  # channels of the transforms
    m.latent_dim = 64  # D: channels of the quantized latent (size of a code vector)
    if model_name == "nlq":
        m.num_res_blocks = 1  # residual blocks per resolution
    else:
        m.bottom_stride = 8  # down-sampling of the bottom latent (4 or 8; the top's is 16)
    m.attention = True  # self-attention + attention module at the lowest resolution
    m.upsampling = "phase"  # "phase" (fast transposed conv), "transpose" or "subpixel"
    m.quantizer = "vq"  # "vq", "rvq", "pvq", "fsq", "scalar" or "gumbel"
    m.codebook_size = 1024  # K: codes per codebook (vq, rvq, pvq, gumbel)
    m.num_stages = 1  # residual stages (rvq)
    m.groups = 1  # sub-vectors, one codebook each (pvq)
    m.levels = (8, 5, 5, 5)  # quantization levels per channel (fsq, scalar)
    m.commitment_cost = 0.25  # β of the commitment loss (vq, rvq, pvq)
    m.ema_decay = 0.99  # decay of the EMA codebook updates (vq, rvq, pvq)
    # Restart codes whose EMA count (vectors per batch) falls below this (0: never); about a
    # quarter of the mean count, batch·(crop/16)² / K (16·16² / 1024 = 4 here).
    m.dead_code_threshold = 1.0
    m.kmeans_init = True  # initialise the codebooks by k-means on the first training batch
    m.stage_dropout = 1.0  # fraction of examples trained on a random RVQ stage prefix (0: off)
    m.temperature = 1.0  # Gumbel-softmax temperature (gumbel), the start of its schedule
    m.temperature_end = 1.0 / 16  # temperature after temperature_decay_steps steps (gumbel)
    m.temperature_decay_steps = 0  # exponential annealing over this many steps (0: constant)
    m.conditional_prior = False  # prior of index group g conditioned on the code of group g − 1
    c.prior_fit_batches = 200  # before export, fit the priors to the codes of 200 batches
    c.lmbda = DISCRETE_LAMBDA  # weight of λ·255²·MSE against the quantizer losses (see above)
    c.optimizer.learning_rate = 2e-4  # VQ autoencoders train with larger steps than CompressAI's
    return c


def discrete_variants(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies a discrete config's variant (`runlocal`, `msssim`) and locks it.

    `runlocal`: tiny transforms and codebooks, 64² crops of the sample images, 20 steps.
    `msssim`: the MS-SSIM distortion, loss = λ·(1 − MS-SSIM) + quantizer losses + prior bpp.
    """
    args = parse_arg(arg)
    unknown = set(args) - {"msssim", "runlocal"}
    if unknown:
        raise ValueError(f"unknown config variant(s) {sorted(unknown)}; use msssim, runlocal")
    if "msssim" in args:
        c.distortion, c.lmbda = "ms-ssim", MS_SSIM_LAMBDAS[2]
        c.name += "-msssim"
    if "runlocal" in args:
        runlocal_data(c)
        c.model.N, c.model.latent_dim, c.model.codebook_size = 32, 16, 64
        c.model.num_stages = min(c.model.num_stages, 3)
        c.model.dead_code_threshold = 0.25  # 4·(64/16)² = 64 vectors per batch, 64 codes
        c.optimizer.learning_rate = 5e-4
        c.prior_fit_batches = 5
    c.lock()
    return c
