"""The fields every training config has, with their defaults; configs/*.py start from here.

Every field carries a one-line comment. Configs are locked (`ConfigDict.lock()`), so a typo in
an override (`--config.lmda=...`) is an error, not a silently ignored field.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

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

    # The model: its module's name (nlq_jax/models/) and constructor arguments. Each config
    # writes out its model's fields, commented (configs/hyperprior.py, configs/rvq.py, ...).
    c.model = ml_collections.ConfigDict()

    c.lmbda = MSE_LAMBDAS[2]  # rate–distortion trade-off λ
    c.distortion = "mse"  # "mse" (λ·255²·MSE) or "ms-ssim" (λ·(1 − MS-SSIM)): losses.DISTORTIONS

    # A discriminator trained against the codec (HiFiC), with its own Adam; "": none.
    c.adversary = ml_collections.ConfigDict()
    c.adversary.name = ""  # a network of losses.ADVERSARIES ("patch": PatchGAN), "": none
    c.adversary.features = (64, 128, 256)  # its strided convolutions' widths (patch)
    c.adversary.weight = 0.0  # λ_adv: weight of the generator loss in the codec's loss
    c.adversary.loss = "hinge"  # "hinge" or "nonsaturating"
    c.adversary.learning_rate = 1e-4  # its Adam's learning rate (constant)
    c.adversary.b1 = 0.5  # its Adam's β1 (GANs' usual 0.5)
    c.adversary.b2 = 0.999  # its Adam's β2

    c.data = ml_collections.ConfigDict()
    c.data.train = "tfds:imagenet2012:train"  # "samples", "folder:PATH" or "tfds:NAME[:SPLIT]"
    c.data.train_exclude = ""  # comma-separated sample names kept out of training
    c.data.crop_size = 256  # random square crops (a multiple of the model's stride)
    c.data.batch_size = 16  # global batch (divided across processes and devices)
    c.data.small = "pad"  # images smaller than the crop: "pad" (reflect) or "skip"
    c.data.worker_count = 0  # grain worker processes (0: decode in the main process)

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.learning_rate = 1e-4  # peak learning rate (Adam)
    c.optimizer.schedule = "cosine"  # "constant", "cosine" (decay to final_lr_fraction), "plateau"
    c.optimizer.warmup_steps = 1000  # linear warm-up
    c.optimizer.final_lr_fraction = 0.01  # end of the cosine decay, as a fraction of the peak
    # "plateau" (CompressAI's recipe: PyTorch's ReduceLROnPlateau on the held-out loss). Its
    # values here are CompressAI's model-zoo training: "the learning rate is divided by 2 when
    # the evaluation loss reaches a plateau (we use a patience of 20 epochs)".
    c.optimizer.plateau_factor = 0.5  # plateau: the learning rate is multiplied by this ...
    # ... at the 20th held-out evaluation in a row without improvement (PyTorch's patience=20,
    # CompressAI's, waits for a 21st: one evaluation apart).
    c.optimizer.plateau_patience = 20
    # Steps between held-out evaluations (the plateau's "epoch"): about one epoch of the
    # 91,701 × 7 frames of Vimeo-90K's septuplets at batch 16. Keep it fixed to resume a run.
    c.optimizer.plateau_every = 40_000
    c.optimizer.plateau_rtol = 1e-4  # plateau: an improvement is a relative decrease of this
    c.optimizer.plateau_min_lr = 0.0  # plateau: the reductions stop at this learning rate
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
    c.eval.source = ""  # held-out images: real-bitstream evaluation, plateau's loss ("": none)
    c.eval.names = ""  # comma-separated sample names when eval.source is "samples"
    c.eval.max_images = 0  # evaluate at most this many (0: all)
    c.eval_every = 50_000  # steps between evaluations with real bitstreams (0: only at the end)
    # Evaluators run on the held-out images (train.EVALUATORS): "heldout_loss" (the eval-mode
    # loss the plateau schedule watches), "codec" (real bitstreams, every eval_every steps).
    c.evaluators = ("heldout_loss", "codec")
    c.report = False  # at the end, write an RD plot against JPEG/WebP and a side-by-side PNG
    c.report_writer = "baselines"  # the report's writer (nlq_jax.evaluation.report.WRITERS)
    c.report_baselines = "jpeg,webp"  # codecs on the report's RD plot

    # Fine-tuning: an export directory, or "default" (the model shipped with nlq_jax), whose
    # weights start a new run (its model name and sizes must be the config's; "": from scratch).
    c.init_from = ""
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
    """`runlocal`'s data, schedule and logging: 20 steps on 64² crops of the sample images
    (192² with the MS-SSIM distortion, whose 5 scales need a short side of at least 161)."""
    c.data.train = "samples"
    c.data.crop_size, c.data.batch_size = 64, 4
    if c.get("distortion") == "ms-ssim":
        c.data.crop_size, c.data.batch_size = 192, 2
    c.num_steps = 20
    c.log_every, c.checkpoint_every, c.image_every, c.eval_every = 5, 10, 0, 0
    c.optimizer.warmup_steps = 0
    c.optimizer.plateau_every, c.optimizer.plateau_patience = 5, 2
    c.eval.source, c.eval.max_images = "samples", 1


def compressai(c: ml_collections.ConfigDict) -> None:
    """CompressAI's training recipe (its examples/train.py and model-zoo training notes).

    256² random crops, batch 16, Adam at 1e-4 without warm-up, gradients clipped at global
    norm 1, the learning rate halved when the held-out loss stops improving, 5 M steps. The
    training folder has no default: set `--config.data.train=folder:PATH` (CompressAI: the
    Vimeo-90K frames, folder:/data/vimeo_septuplet/sequences); the trainer stops at once with
    a one-line error if it is left empty. The plateau watches the eval-mode loss on centre
    crops of `eval.source` (CompressAI: its test split), else the mean training loss.
    """
    c.name += "-compressai"
    c.num_steps = 5_000_000  # CompressAI's zoo models: 4–5 M steps (lr 1e-4 for the first 1–2 M)
    c.data.train = ""  # required: --config.data.train=folder:PATH (checked before training)
    c.data.crop_size, c.data.batch_size = 256, 16  # 256² random crops, batch 16
    c.optimizer.learning_rate = 1e-4  # Adam, constant until the plateau halves it
    c.optimizer.schedule = "plateau"  # ReduceLROnPlateau on the held-out loss
    c.optimizer.warmup_steps = 0  # CompressAI has no warm-up
    c.optimizer.grad_clip = 1.0  # CompressAI's --clip_max_norm 1.0
    c.optimizer.plateau_factor, c.optimizer.plateau_patience = 0.5, 20  # halved; 20 "epochs"
    c.optimizer.plateau_every = 40_000  # one "epoch": ~641,907 Vimeo-90K frames / 16


def scalar_variants(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies a scalar-latent config's variant (configs/hyperprior.py, elic.py, ...) and locks it.

    Variants: `quality=Q` (default 3: the model module's `get_default_sizes(Q)`, CompressAI's
    (N, M), and λ from the ladder), `msssim` (MS-SSIM distortion and its λ ladder),
    `compressai` (CompressAI's training recipe, see `compressai`), `runlocal` (applied last: a
    tiny model on the sample images, so `compressai,runlocal` is a quick run of the recipe's
    schedule).
    """
    from nlq_jax import models

    args = parse_arg(arg)
    unknown = set(args) - {"quality", "msssim", "compressai", "runlocal"}
    if unknown:
        raise ValueError(
            f"unknown config variant(s) {sorted(unknown)}; "
            "use quality=Q, msssim, compressai, runlocal"
        )
    if "msssim" in args:
        c.distortion = "ms-ssim"
    apply_quality(c, models.get_module(c.model.name), int(args.get("quality") or 3))
    if "compressai" in args:
        compressai(c)
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

    `c.model` holds the fields every discrete model has; the config file adds its model's own
    (`num_res_blocks` of nlq, `bottom_stride` of vqvae2) and its quantizer's sub-dict,
    `c.model.quantizer = dict(name=..., ...)`, then `discrete_variants` applies the variant
    and locks.
    """
    c = base_config()
    c.name = model_name
    m = c.model = ml_collections.ConfigDict()
    m.name = model_name  # module in nlq_jax/models/: "nlq" or "vqvae2"
    m.N = 128  # channels of the transforms
    m.latent_dim = 64  # D: channels of the quantized latent (size of a code vector)
    m.attention = True  # self-attention + attention module at the lowest resolution
    m.upsampling = "phase"  # "phase" (fast transposed conv), "transpose" or "subpixel"
    m.conditional_prior = False  # prior of index group g conditioned on the code of group g − 1
    c.prior_fit_batches = 200  # before export, fit the priors to the codes of 200 batches
    c.lmbda = DISCRETE_LAMBDA  # weight of λ·255²·MSE against the quantizer losses (see above)
    c.optimizer.learning_rate = 2e-4  # VQ autoencoders train with larger steps than CompressAI's
    return c


def discrete_variants(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies a discrete config's variant (`runlocal`, `msssim`) and locks it.

    `runlocal`: tiny transforms and codebooks (the quantizer's `codebook_size` 64, at most 3
    `num_stages`, `dead_threshold` 0.25, where it has them), 64² crops of the sample images,
    20 steps.
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
        c.model.N, c.model.latent_dim = 32, 16
        q = c.model.get("quantizer", {})
        if "codebook_size" in q:
            q.codebook_size = 64
        if "num_stages" in q:
            q.num_stages = min(q.num_stages, 3)
        if "dead_threshold" in q:
            q.dead_threshold = 0.25  # 4·(64/16)² = 64 vectors per batch, 64 codes
        c.optimizer.learning_rate = 5e-4
        c.prior_fit_batches = 5
    c.lock()
    return c


# Finding configs by name. The repository's configs/ is installed as the package
# `nlq_jax.configs` (setup.py), so `hyperprior:quality=3` names a config on an installed wheel
# as `configs/hyperprior.py:quality=3` does in a checkout.
def config_dir() -> Path:
    """The folder of the configs that ship with nlq_jax."""
    spec = importlib.util.find_spec("nlq_jax.configs")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parents[1] / "configs"  # a checkout that is not installed


def config_names() -> list[str]:
    """The names of the shipped configs (`hyperprior`, `quickstart`, ...)."""
    return sorted(p.stem for p in config_dir().glob("*.py") if not p.stem.startswith("_"))


def config_path(spec: str) -> str:
    """`PATH[:variant]` or `NAME[:variant]` → the file (and variant) to load, as `PATH[:variant]`.

    An existing file wins; otherwise the shipped config of that name, where the name may be
    written `hyperprior`, `hyperprior.py` or `configs/hyperprior.py` (the form the README uses,
    which thus also works where configs/ is not in the working directory).

    Raises:
      NLQError: neither a file nor a shipped config (one line, listing the names).
    """
    from nlq_jax.errors import NLQError

    path, sep, variant = spec.partition(":")
    if Path(path).is_file():
        return spec
    name = Path(path).name.removesuffix(".py")
    shipped = config_dir() / f"{name}.py"
    if name in config_names() and (
        path in (name, f"{name}.py") or Path(path).parent.name == "configs"
    ):
        return f"{shipped}{sep}{variant}"
    raise NLQError(
        f"--config: no file {path!r} and no shipped config of that name "
        f"(shipped: {', '.join(config_names())})"
    )


def load_config(spec: str) -> ml_collections.ConfigDict:
    """The config that `--config=spec` gives, e.g. `load_config("quickstart:runlocal")`."""
    path, _, variant = config_path(spec).partition(":")
    module_spec = importlib.util.spec_from_file_location(f"nlq_config_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant or None)
