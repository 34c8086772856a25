"""Rate-distortion objective: loss = λ·255²·D(x, x̂) + bpp (CompressAI's convention).

Images are float in [0, 1]. `bits` is a dict of per-example bit counts (one entry per latent),
as returned by every model's forward; bpp divides their sum by the number of pixels.

A model's `aux` dict may add to the objective and to the logged metrics (discrete latents):
`aux["loss"]` (a scalar, already weighted: codebook/commitment terms) is added to the loss;
`aux[...fixed_bits]` (per-example bits of a fixed-length code of the indices) is logged as
`...fixed_bpp`; every other entry (usage, perplexity, dead codes) is logged as its batch mean.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

DISTORTIONS = ("mse", "ms-ssim", "mse+ms-ssim")
# "mse+ms-ssim" weighs 1 − MS-SSIM against 255²·MSE by the ratio of CompressAI's λ ladders at
# the same quality (MS-SSIM λ / MSE λ: 2.40 / 0.0018 = 1333 at quality 1 ... 220 / 0.18 = 1222
# at 8), so each term weighs what it weighs alone at that quality; their mean is the distortion.
MS_SSIM_TO_MSE = 1300.0


def bits_per_pixel(bits: dict[str, jax.Array], num_pixels: int) -> jax.Array:
    """Per-example bpp: total bits over all latents, divided by H·W."""
    return sum(jnp.asarray(b, jnp.float32) for b in bits.values()) / num_pixels


def mse(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Per-example mean squared error over pixels and channels."""
    return jnp.mean(jnp.square(x - x_hat), axis=tuple(range(1, x.ndim)))


def rate_distortion_loss(
    x: jax.Array,
    outputs: dict,
    lmbda: float,
    distortion: str = "mse",
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The training objective, averaged over the batch.

    Args:
      x: images, float [B, H, W, C] in [0, 1].
      outputs: a model's forward output, with "x_hat", "bits" and optionally "aux".
      lmbda: the rate-distortion trade-off λ (CompressAI's ladder: 0.0018 ... 0.18).
      distortion: "mse" (λ·255²·MSE), "ms-ssim" (λ·(1 − MS-SSIM), as CompressAI scales it)
        or "mse+ms-ssim" (λ·½·(255²·MSE + `MS_SSIM_TO_MSE`·(1 − MS-SSIM)), λ of the MSE
        ladder).

    Returns:
      (loss, metrics) where metrics holds batch means of loss, bpp, mse, psnr (and ms_ssim,
      and the aux entries: aux_loss, fixed_bpp, usage, ...).
    """
    num_pixels = x.shape[1] * x.shape[2]
    bpp = bits_per_pixel(outputs["bits"], num_pixels)
    err = mse(x, outputs["x_hat"])
    metrics = {
        "bpp": jnp.mean(bpp),
        "mse": jnp.mean(err),
        "psnr": jnp.mean(-10.0 * jnp.log10(jnp.maximum(err, 1e-10))),
    }
    if distortion == "mse":
        d = 255.0**2 * err
    elif distortion in ("ms-ssim", "mse+ms-ssim"):
        from nlq_jax.metrics import ms_ssim

        s = ms_ssim.ms_ssim(x, outputs["x_hat"], max_val=1.0)
        metrics["ms_ssim"] = jnp.mean(s)
        d = 1.0 - s
        if distortion == "mse+ms-ssim":
            d = 0.5 * (255.0**2 * err + MS_SSIM_TO_MSE * d)
    else:
        raise ValueError(f"unknown distortion {distortion!r}; use one of {', '.join(DISTORTIONS)}")
    loss = jnp.mean(lmbda * d + bpp)
    for key, value in outputs.get("aux", {}).items():
        value = jnp.asarray(value, jnp.float32)
        if key == "loss":
            loss = loss + jnp.mean(value)
            metrics["aux_loss"] = jnp.mean(value)
        elif key.endswith("fixed_bits"):
            metrics[key[: -len("bits")] + "bpp"] = jnp.mean(value) / num_pixels
        else:
            metrics[key] = jnp.mean(value)
    metrics["loss"] = loss
    return loss, metrics
