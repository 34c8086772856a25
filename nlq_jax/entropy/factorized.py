"""The deep factorized prior: a learned, per-channel univariate density.

Ballé, Minnen, Singh, Hwang, Johnston, "Variational image compression with a scale hyperprior",
ICLR 2018, appendix 6.1. Each channel's cumulative c(x) = sigmoid(f(x)) with f a tiny monotone
network of K layers: f_k(x) = H_k x + b_k, followed (except on the last layer) by
x + tanh(a_k) ⊙ tanh(x). softplus(H_k) > 0 and tanh(a_k) > −1 keep every layer increasing,
so c is a valid CDF. The probability of a quantization bin is c(x + ½) − c(x − ½).

Quantization is centred on each channel's median (where f = 0), like CompressAI and
tensorflow-compression. The medians and the tails (where c = tail_mass/2 and 1 − tail_mass/2),
which bound the coding tables' support, are *found* from the parameters by bisection — no
auxiliary loss and no second optimizer, unlike CompressAI's learned `quantiles`. A model
imported from CompressAI keeps CompressAI's learned medians instead (`stored_medians=True`, a
`medians` parameter), because they define where its ẑ is rounded; its tails are still found by
bisection.

The depth of the density network is `filters`: (3, 3, 3) by default (the paper and
tensorflow-compression), (3, 3, 3, 3) for CompressAI's `EntropyBottleneck`.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy.tables import MAX_LENGTH, CodingTables, quantize_pmf
from nlq_jax.ops import lower_bound
from nlq_jax.quantizers.scalar import quantize

LIKELIHOOD_BOUND = 1e-9


class DeepFactorized(nn.Module):
    """Entropy model of a latent with a factorized prior: `(x_hat, bits) = m(x, training=...)`.

    Attributes:
      channels: channels of the latent (one density each).
      filters: hidden widths of the per-channel density network (the paper's (3, 3, 3);
        CompressAI's `EntropyBottleneck` has (3, 3, 3, 3)).
      init_scale: initial width of the density (the paper's 10).
      tail_mass: probability left outside the coding tables' support (escaped).
      stored_medians: the quantization offsets are a `medians` parameter [C] (CompressAI's
        learned medians, for imported models) instead of the density's medians found by
        bisection. Training does not change them (rounding has no gradient).
    """

    channels: int
    filters: Sequence[int] = (3, 3, 3)
    init_scale: float = 10.0
    tail_mass: float = 1e-9
    stored_medians: bool = False

    def setup(self):
        widths = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        layers = []
        for k in range(len(widths) - 1):
            init = float(np.log(np.expm1(1.0 / scale / widths[k + 1])))
            matrix = self.param(
                f"matrix{k}",
                nn.initializers.constant(init),
                (self.channels, widths[k + 1], widths[k]),
            )
            bias = self.param(
                f"bias{k}",
                lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -0.5, 0.5),
                (self.channels, widths[k + 1], 1),
            )
            factor = None
            if k < len(widths) - 2:
                factor = self.param(
                    f"factor{k}", nn.initializers.zeros, (self.channels, widths[k + 1], 1)
                )
            layers.append((matrix, bias, factor))
        self.layers = layers
        if self.stored_medians:
            self.stored = self.param("medians", nn.initializers.zeros, (self.channels,))

    def logits_cdf(self, x: jax.Array) -> jax.Array:
        """f(x): logits of each channel's CDF. x: [C, N] values → [C, N]."""
        return _logits_cdf(self.layers, x)

    def likelihood(self, v: jax.Array) -> jax.Array:
        """P(bin around v) per element; v: [C, N]. Computed with the sign trick of the paper's
        reference code so both CDF values stay away from 1 (no cancellation)."""
        lower = self.logits_cdf(v - 0.5)
        upper = self.logits_cdf(v + 0.5)
        sign = jax.lax.stop_gradient(-jnp.sign(lower + upper))
        return jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))

    def quantiles(self, levels: Sequence[float]) -> jax.Array:
        """x where each channel's CDF equals each of `levels`: float [C, len(levels)].

        Bisection on f (monotone): brackets double until they hold the target, then 60
        halvings — exact to float32 resolution for any parameters. The targets logit(level)
        are computed in float64 (in float32, 1 − 5e-10 is exactly 1 and its logit infinite).
        """
        levels64 = np.asarray(levels, np.float64)
        targets = jnp.asarray(np.log(levels64) - np.log1p(-levels64), jnp.float32)
        targets = jnp.broadcast_to(targets, (self.channels, len(levels)))
        layers = self.layers

        def f(x):
            return _logits_cdf(layers, x)

        def widen(carry):
            lo, hi, i = carry
            lo = jnp.where(f(lo) > targets, lo * 2.0, lo)
            hi = jnp.where(f(hi) < targets, hi * 2.0, hi)
            return lo, hi, i + 1

        def not_bracketed(carry):
            lo, hi, i = carry
            return ((f(lo) > targets).any() | (f(hi) < targets).any()) & (i < 40)

        lo = jnp.full(targets.shape, -1.0)
        hi = jnp.full(targets.shape, 1.0)
        lo, hi, _ = jax.lax.while_loop(not_bracketed, widen, (lo, hi, 0))

        def halve(_, carry):
            lo, hi = carry
            mid = 0.5 * (lo + hi)
            below = f(mid) < targets
            return jnp.where(below, mid, lo), jnp.where(below, hi, mid)

        lo, hi = jax.lax.fori_loop(0, 60, halve, (lo, hi))
        return 0.5 * (lo + hi)

    def medians(self) -> jax.Array:
        """Each channel's quantization offset, float [C]: its median (or the stored one)."""
        if self.stored_medians:
            return self.stored
        return self.quantiles((0.5,))[:, 0]

    def __call__(
        self, x: jax.Array, *, training: bool, medians: jax.Array | None = None
    ) -> tuple[jax.Array, jax.Array]:
        """Quantizes x ([B, ..., C]) and returns (x_hat, bits per example).

        Training: x + U(−½, ½) and its density under the prior (an upper bound on the rate).
        Eval: rounded around the medians, and its Shannon information. `medians` may be given
        (from the coding tables) to skip recomputing them.
        """
        channels = self.channels
        if x.shape[-1] != channels:
            raise ValueError(f"expected {channels} channels, got shape {x.shape}")
        if training:
            x_hat = quantize(x, "noise", rng=self.make_rng("noise"))
        else:
            if medians is None:
                medians = self.medians()
            x_hat = quantize(x, "round", offset=medians)
        values = jnp.moveaxis(x_hat, -1, 0).reshape(channels, -1)
        p = lower_bound(self.likelihood(values), LIKELIHOOD_BOUND)
        bits = -jnp.log2(p).reshape(channels, x.shape[0], -1).sum(axis=(0, 2))
        return x_hat, bits


def build_tables(module: DeepFactorized, params: dict) -> tuple[CodingTables, np.ndarray]:
    """Coding tables and quantization offsets of a `DeepFactorized` prior (pure).

    Args:
      module: the (unbound) module, for its hyperparameters.
      params: its parameters.

    Returns:
      (tables, medians): one table per channel over symbols round(x − median), and the
      float32 medians [C] (the decoder adds them back).
    """
    t = module.tail_mass

    def quants(p):
        q = module.apply({"params": p}, (t / 2, 0.5, 1 - t / 2), method="quantiles")
        # One bisection for the tails and the median; a stored median replaces the found one.
        medians = (
            module.apply({"params": p}, method="medians") if module.stored_medians else q[:, 1]
        )
        return q, medians

    q, medians = jax.jit(quants)(params)
    q = np.asarray(q, np.float64)
    medians = np.asarray(medians, np.float32)
    lo = np.floor(q[:, 0] - medians).astype(np.int64)
    hi = np.ceil(q[:, 2] - medians).astype(np.int64)
    lo, hi = np.minimum(lo, -1), np.maximum(hi, 1)
    # A degenerate (very wide) density is truncated; the excess mass goes to the escape bin.
    half_max = (MAX_LENGTH - 2) // 2
    lo, hi = np.maximum(lo, -half_max), np.minimum(hi, half_max)
    lengths = hi - lo + 2
    grid = lo[:, None] + np.arange(int(lengths.max()) - 1)[None, :]
    values = jnp.asarray(grid + medians[:, None], jnp.float32)

    def pmf(p, v):
        return module.apply({"params": p}, v, method="likelihood")

    probs = np.asarray(jax.jit(pmf)(params, values), np.float64)
    tables = CodingTables(cdf=quantize_pmf(probs, lengths), length=lengths, offset=lo)
    return tables, medians


def _logits_cdf(layers, x: jax.Array) -> jax.Array:
    h = x[:, None, :]
    for matrix, bias, factor in layers:
        h = jnp.einsum("cij,cjn->cin", jax.nn.softplus(matrix), h) + bias
        if factor is not None:
            h = h + jnp.tanh(factor) * jnp.tanh(h)
    return h[:, 0, :]


def prior_of(model, channels: int) -> DeepFactorized:
    """The deep factorized prior of a model with `prior_filters` and `prior_medians` fields
    (the hyperprior family's z, the factorized model's y), for `setup` and `build_tables`."""
    if model.prior_medians not in ("bisection", "stored"):
        raise ValueError(
            f"prior_medians must be 'bisection' or 'stored', got {model.prior_medians!r}"
        )
    return DeepFactorized(
        channels,
        filters=tuple(model.prior_filters),
        stored_medians=model.prior_medians == "stored",
    )
