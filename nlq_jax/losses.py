"""Rate-distortion objective: loss = λ·255²·D(x, x̂) + bpp (CompressAI's convention).

Images are float in [0, 1]. `bits` is a dict of per-example bit counts (one entry per latent),
as returned by every model's forward; the rate divides their sum by what the model's domain
counts (`nlq_jax.domains`: H·W pixels for an image, so bits per pixel).

A model's `aux` dict may add to the objective and to the logged metrics (discrete latents):
`aux["loss"]` (a scalar, already weighted: codebook/commitment terms) is added to the loss;
`aux[...fixed_bits]` (per-example bits of a fixed-length code of the indices) is logged as
`...fixed_bpp`; every other entry (usage, perplexity, dead codes) is logged as its batch mean.

The trainer builds an `Objective` from the config and never looks inside it:

```
objective = make_objective(config, domain)       # distortion, λ, optional adversary
extra = objective.init(rng, sample)              # frozen variables, e.g. a feature network's
loss, metrics = objective(x, outputs, extra)     # inside the jitted step; extra is an argument
```

A distortion is a `Distortion` registered by name (`DISTORTIONS`; `register_distortion` adds
one); it may carry frozen parameters (a fixed feature network, as LPIPS does), which `init`
creates and the step receives as an argument, so they are neither trained nor baked into the
compiled step as constants. An `Adversary` (a discriminator, HiFiC: Mentzer et al. 2020,
"High-Fidelity Generative Image Compression", sec. 3) is a second network with its own
optimizer, updated by the same step after the codec.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from nlq_jax.domains import IMAGE, Domain

# "mse+ms-ssim" weighs 1 − MS-SSIM against 255²·MSE by the ratio of CompressAI's λ ladders at
# the same quality (MS-SSIM λ / MSE λ: 2.40 / 0.0018 = 1333 at quality 1 ... 220 / 0.18 = 1222
# at 8), so each term weighs what it weighs alone at that quality; their mean is the distortion.
MS_SSIM_TO_MSE = 1300.0


def bits_per_pixel(bits: dict[str, jax.Array], num_pixels: int) -> jax.Array:
    """Per-example rate: total bits over all latents, divided by `num_pixels` (the domain's
    rate units: H·W for an image)."""
    return sum(jnp.asarray(b, jnp.float32) for b in bits.values()) / num_pixels


def mse(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Per-example mean squared error over pixels and channels."""
    return jnp.mean(jnp.square(x - x_hat), axis=tuple(range(1, x.ndim)))


class Distortion:
    """A per-example distortion d(x, x̂) ≥ 0, which the objective weighs by λ.

    Subclasses override `__call__`, and `init` when they carry frozen parameters (created once,
    passed to every call; the trainer hands them to the jitted step as an argument).

    Attributes:
      min_side: the smallest spatial size the distortion accepts (0: any).
      label: its name in messages ("MS-SSIM").
    """

    min_side: int = 0
    label: str = ""

    def init(self, rng: jax.Array, sample: jax.Array) -> Any:
        """The frozen parameters, from a key and an input of the training shape ({}: none)."""
        del rng, sample
        return {}

    def __call__(
        self, params: Any, x: jax.Array, x_hat: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """(d [B], metrics: batch means to log)."""
        raise NotImplementedError


class MSE(Distortion):
    """255²·MSE: CompressAI's scale, so its λ ladder (0.0018 ... 0.18) applies."""

    def __call__(self, params, x, x_hat):
        return 255.0**2 * mse(x, x_hat), {}


class MSSSIM(Distortion):
    """1 − MS-SSIM (Wang et al. 2003), as CompressAI scales it (its λ ladder 2.40 ... 220);
    with `with_mse`, ½·(255²·MSE + `MS_SSIM_TO_MSE`·(1 − MS-SSIM)) on the MSE ladder."""

    label = "MS-SSIM"

    def __init__(self, with_mse: bool = False):
        from nlq_jax.metrics import ms_ssim

        self.with_mse = with_mse
        self.min_side = ms_ssim.min_side()

    def __call__(self, params, x, x_hat):
        from nlq_jax.metrics import ms_ssim

        s = ms_ssim.ms_ssim(x, x_hat, max_val=1.0)
        d = 1.0 - s
        if self.with_mse:
            d = 0.5 * (255.0**2 * mse(x, x_hat) + MS_SSIM_TO_MSE * d)
        return d, {"ms_ssim": jnp.mean(s)}


# Distortions by the name `config.distortion` gives: name → a function returning a Distortion.
DISTORTIONS: dict[str, Callable[[], Distortion]] = {
    "mse": MSE,
    "ms-ssim": MSSSIM,
    "mse+ms-ssim": lambda: MSSSIM(with_mse=True),
}


def register_distortion(name: str, factory: Callable[[], Distortion]) -> None:
    """Makes `config.distortion = name` build `factory()`."""
    DISTORTIONS[name] = factory


def get_distortion(name: str) -> Distortion:
    """The distortion `name`; a one-line error names the known ones."""
    if name not in DISTORTIONS:
        raise ValueError(f"unknown distortion {name!r}; use one of {', '.join(DISTORTIONS)}")
    return DISTORTIONS[name]()


class PatchDiscriminator(nn.Module):
    """A PatchGAN discriminator (Isola et al. 2017, "Image-to-Image Translation with
    Conditional Adversarial Networks", sec. 3.2.2): strided 4×4 convolutions with leaky ReLUs,
    then one logit per patch, [B, h, w]."""

    features: tuple[int, ...] = (64, 128, 256)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for f in self.features:
            x = nn.leaky_relu(nn.Conv(f, (4, 4), strides=2)(x), 0.2)
        return nn.Conv(1, (3, 3))(x)[..., 0]


# Discriminator networks by the name `config.adversary.name` gives.
ADVERSARIES: dict[str, type[nn.Module]] = {"patch": PatchDiscriminator}
ADVERSARIAL_LOSSES = ("hinge", "nonsaturating")


@dataclasses.dataclass(frozen=True)
class Adversary:
    """A discriminator trained against the codec, with its own parameters and optimizer.

    The codec's loss gains `weight`·(the generator loss of x̂); the discriminator then takes
    one step of its own loss on x against the same x̂ (held fixed), in the same jitted step.

    Attributes:
      network: the discriminator, `network.apply({"params": p}, x)` → logits.
      optimizer: its optax optimizer.
      weight: λ_adv, the weight of the generator loss in the codec's loss.
      loss: "hinge" (Lim and Ye 2017) or "nonsaturating" (Goodfellow et al. 2014, sec. 3).
    """

    network: nn.Module
    optimizer: optax.GradientTransformation
    weight: float = 1.0
    loss: str = "hinge"

    def __post_init__(self):
        if self.loss not in ADVERSARIAL_LOSSES:
            raise ValueError(
                f"unknown adversarial loss {self.loss!r}; "
                f"use one of {', '.join(ADVERSARIAL_LOSSES)}"
            )

    def init(self, rng: jax.Array, sample: jax.Array) -> Any:
        """The discriminator's initial parameters."""
        return self.network.init(rng, sample)["params"]

    def generator_loss(self, params: Any, x_hat: jax.Array) -> jax.Array:
        """What the codec minimises to make x̂ look real to the discriminator."""
        logits = self.network.apply({"params": params}, x_hat)
        if self.loss == "hinge":
            return -jnp.mean(logits)
        return jnp.mean(jax.nn.softplus(-logits))

    def discriminator_loss(
        self, params: Any, x: jax.Array, x_hat: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The discriminator's loss (real x against reconstructed x̂) and its metrics."""
        real = self.network.apply({"params": params}, x)
        fake = self.network.apply({"params": params}, x_hat)
        if self.loss == "hinge":
            loss = jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))
        else:
            loss = jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))
        metrics = {"adversary/real": jnp.mean(real), "adversary/fake": jnp.mean(fake)}
        return loss, {"adversary/loss": loss, **metrics}


class Objective:
    """What the trainer minimises: λ·d(x, x̂) + rate + the model's aux loss (+ adversarial).

    `extra` holds the variables the objective needs besides the model's output: "distortion"
    (its frozen parameters, from `init`) and, in the train step, "adversary" (the
    discriminator's current parameters; without it the adversarial term is left out, as in the
    held-out loss).
    """

    def __init__(
        self,
        lmbda: float,
        distortion: Distortion | str = "mse",
        domain: Domain = IMAGE,
        adversary: Adversary | None = None,
    ):
        self.lmbda = lmbda
        self.distortion = get_distortion(distortion) if isinstance(distortion, str) else distortion
        self.domain = domain
        self.adversary = adversary

    def init(self, rng: jax.Array, sample: jax.Array) -> dict[str, Any]:
        """The frozen variables (`extra` without the adversary) for an input like `sample`."""
        return {"distortion": self.distortion.init(rng, sample)}

    def __call__(
        self, x: jax.Array, outputs: dict, extra: dict[str, Any] | None = None
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """The loss, averaged over the batch, and its metrics.

        Args:
          x: the batch, float [B, ...] in [0, 1].
          outputs: a model's forward output, with "x_hat", "bits" and optionally "aux".
          extra: see the class docstring (None: no frozen parameters, no adversary).

        Returns:
          (loss, metrics) where metrics holds batch means of loss, the rate (named by the
          domain's unit: bpp), mse, psnr, the distortion's own (ms_ssim), the aux entries
          (aux_loss, fixed_bpp, usage, ...) and the adversarial loss (adversary/generator).
        """
        extra = extra or {}
        unit = self.domain.rate_unit
        num_units = self.domain.rate_units(x.shape)
        rate = bits_per_pixel(outputs["bits"], num_units)
        x_hat = outputs["x_hat"]
        err = mse(x, x_hat)
        metrics = {
            unit: jnp.mean(rate),
            "mse": jnp.mean(err),
            "psnr": jnp.mean(-10.0 * jnp.log10(jnp.maximum(err, 1e-10))),
        }
        d, own = self.distortion(extra.get("distortion", {}), x, x_hat)
        metrics.update(own)
        loss = jnp.mean(self.lmbda * d + rate)
        for key, value in outputs.get("aux", {}).items():
            value = jnp.asarray(value, jnp.float32)
            if key == "loss":
                loss = loss + jnp.mean(value)
                metrics["aux_loss"] = jnp.mean(value)
            elif key.endswith("fixed_bits"):
                metrics[key[: -len("bits")] + unit] = jnp.mean(value) / num_units
            else:
                metrics[key] = jnp.mean(value)
        if self.adversary is not None and "adversary" in extra:
            g = self.adversary.generator_loss(extra["adversary"], x_hat)
            metrics["adversary/generator"] = g
            loss = loss + self.adversary.weight * g
        metrics["loss"] = loss
        return loss, metrics


def make_adversary(config) -> Adversary | None:
    """The adversary of `config.adversary` (None when its name is empty or it is absent)."""
    ac = config.get("adversary")
    if not ac or not ac.get("name"):
        return None
    if ac.name not in ADVERSARIES:
        raise ValueError(f"unknown adversary {ac.name!r}; use one of {', '.join(ADVERSARIES)}")
    network = ADVERSARIES[ac.name](features=tuple(ac.features))
    optimizer = optax.adam(ac.learning_rate, b1=ac.b1, b2=ac.b2)
    return Adversary(network, optimizer, weight=ac.weight, loss=ac.loss)


def make_objective(config, domain: Domain = IMAGE) -> Objective:
    """The objective of a training config: `config.lmbda`, `config.distortion` (a name in
    `DISTORTIONS`) and `config.adversary` (optional), the rate counted in `domain`'s units."""
    return Objective(config.lmbda, config.get("distortion", "mse"), domain, make_adversary(config))


def rate_distortion_loss(
    x: jax.Array,
    outputs: dict,
    lmbda: float,
    distortion: str = "mse",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The image objective without frozen parameters or adversary, averaged over the batch.

    Args:
      x: images, float [B, H, W, C] in [0, 1].
      outputs: a model's forward output, with "x_hat", "bits" and optionally "aux".
      lmbda: the rate-distortion trade-off λ (CompressAI's ladder: 0.0018 ... 0.18).
      distortion: "mse" (λ·255²·MSE), "ms-ssim" (λ·(1 − MS-SSIM), as CompressAI scales it)
        or "mse+ms-ssim" (λ·½·(255²·MSE + `MS_SSIM_TO_MSE`·(1 − MS-SSIM)), λ of the MSE
        ladder); any name in `DISTORTIONS` whose distortion has no frozen parameters.

    Returns:
      (loss, metrics) where metrics holds batch means of loss, bpp, mse, psnr (and ms_ssim,
      and the aux entries: aux_loss, fixed_bpp, usage, ...).
    """
    return Objective(lmbda, distortion)(x, outputs)
