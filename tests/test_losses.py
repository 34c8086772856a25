"""The rate–distortion objective: CompressAI's λ·255²·MSE + bpp, and its MS-SSIM variant."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nlq_jax import config_base, losses


def _outputs(x, noise):
    return {
        "x_hat": x + noise,
        "bits": {"y": jnp.array([1000.0, 2000.0]), "z": jnp.array([10.0, 20.0])},
    }


def test_mse_loss_is_lambda_255_squared_mse_plus_bpp():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(2, 16, 32, 3)), jnp.float32)
    noise = jnp.asarray(rng.normal(0, 0.05, x.shape), jnp.float32)
    loss, m = losses.rate_distortion_loss(x, _outputs(x, noise), lmbda=0.0067)
    mse = np.mean(np.asarray(noise, np.float64) ** 2, axis=(1, 2, 3))
    bpp = np.array([1010.0, 2020.0]) / (16 * 32)
    np.testing.assert_allclose(loss, np.mean(0.0067 * 255**2 * mse + bpp), rtol=1e-5)
    np.testing.assert_allclose(m["bpp"], bpp.mean(), rtol=1e-6)
    np.testing.assert_allclose(m["psnr"], np.mean(-10 * np.log10(mse)), rtol=1e-5)


def test_ms_ssim_distortion_is_differentiable():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(size=(2, 176, 176, 3)), jnp.float32)
    noise = jnp.asarray(rng.normal(0, 0.05, x.shape), jnp.float32)

    def loss(n):
        return losses.rate_distortion_loss(x, _outputs(x, n), 8.73, "ms-ssim")[0]

    value, grad = jax.value_and_grad(loss)(noise)
    assert np.isfinite(value) and np.isfinite(grad).all() and np.abs(grad).sum() > 0
    _, m = losses.rate_distortion_loss(x, _outputs(x, noise), 8.73, "ms-ssim")
    assert 0 < float(m["ms_ssim"]) < 1


def test_aux_loss_is_added_and_aux_metrics_are_logged():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.uniform(size=(2, 16, 32, 3)), jnp.float32)
    noise = jnp.asarray(rng.normal(0, 0.05, x.shape), jnp.float32)
    plain = _outputs(x, noise)
    aux = {"loss": jnp.float32(0.3), "usage": jnp.float32(0.75), "fixed_bits": jnp.array([64, 64])}
    base, _ = losses.rate_distortion_loss(x, plain, lmbda=0.0067)
    loss, m = losses.rate_distortion_loss(x, plain | {"aux": aux}, lmbda=0.0067)
    np.testing.assert_allclose(loss, base + 0.3, rtol=1e-6)
    assert float(m["aux_loss"]) == pytest.approx(0.3) and float(m["usage"]) == 0.75
    np.testing.assert_allclose(m["fixed_bpp"], 64 / (16 * 32), rtol=1e-6)


def test_mse_plus_ms_ssim_is_the_mean_of_the_two_distortions_at_one_quality():
    """λ·½·(255²·MSE + 1300·(1 − MS-SSIM)) + bpp, from the two single-term losses."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.uniform(size=(2, 176, 176, 3)), jnp.float32)
    out = _outputs(x, jnp.asarray(rng.normal(0, 0.05, x.shape), jnp.float32))
    lmbda = 0.0067
    both, m = losses.rate_distortion_loss(x, out, lmbda, "mse+ms-ssim")
    bpp = float(m["bpp"])
    mse_term = float(losses.rate_distortion_loss(x, out, lmbda, "mse")[0]) - bpp
    ssim_term = float(losses.rate_distortion_loss(x, out, lmbda, "ms-ssim")[0]) - bpp
    expected = 0.5 * (mse_term + losses.MS_SSIM_TO_MSE * ssim_term) + bpp
    np.testing.assert_allclose(float(both), expected, rtol=1e-5)
    ratios = [b / a for a, b in zip(config_base.MSE_LAMBDAS, config_base.MS_SSIM_LAMBDAS)]
    assert min(ratios) <= losses.MS_SSIM_TO_MSE <= max(ratios)
    with pytest.raises(ValueError, match="mse, ms-ssim, mse\\+ms-ssim"):
        losses.rate_distortion_loss(x, out, lmbda, "ssim")
