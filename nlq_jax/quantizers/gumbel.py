"""Gumbel-softmax quantization: a learned categorical choice of a codebook vector.

Jang, Gu, Poole, "Categorical Reparameterization with Gumbel-Softmax", ICLR 2017, and Maddison,
Mnih, Teh, "The Concrete Distribution", ICLR 2017: logits ℓ = Dense(z) over K codes; in
training y = softmax((ℓ + g)/τ), g ~ Gumbel(0, 1), and z_q = y·E. With `hard`, y is replaced
by the one-hot of its argmax forward while the gradient is the relaxed one (Jang et al.
sec. 2.2, "Straight-Through Gumbel-Softmax"). In eval the code is argmax ℓ. A KL term to the
uniform prior, KL(softmax(ℓ) ‖ U(K)), keeps the codes in use (as in DALL·E's dVAE, Ramesh et
al. 2021, sec. 2.1, and taming-transformers' GumbelQuantize).

Temperature. With `temperature_decay_steps` > 0, τ anneals from `temperature` to
`temperature_end` by `temperature_schedule`, driven by a counter of training calls kept in the
"quantizer_state" collection (advanced when that collection is mutable, i.e. in the trainer's
step; saved and resumed with the checkpoint), so a config sets the schedule and nothing else
has to pass the step in. Otherwise τ is `temperature`. A call may still pass `temperature=`
(a float or a traced scalar), which wins.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from nlq_jax.quantizers.codebook import STATE, code_statistics, histogram


def temperature_schedule(
    step: jax.Array | int,
    start: float = 1.0,
    end: float = 1.0 / 16,
    decay_steps: int = 100_000,
) -> jax.Array:
    """Exponential annealing from `start` to `end` over `decay_steps`, then constant:
    τ = start·(end/start)^min(step/decay_steps, 1) (float32 scalar; jit-friendly)."""
    start, end = jnp.asarray(start, jnp.float32), jnp.asarray(end, jnp.float32)
    frac = jnp.asarray(step, jnp.float32) / jnp.maximum(jnp.asarray(decay_steps, jnp.float32), 1.0)
    return start * (end / start) ** jnp.clip(frac, 0.0, 1.0)


class GumbelQuantizer(nn.Module):
    """`(z_q, indices, aux) = gq(z, training=..., rng=..., temperature=...)`.

    `z` float [..., D] → `z_q` float32 [..., D], `indices` int32 [..., 1], `aux` float32
    scalars: "loss" kl_weight·KL(softmax(ℓ) ‖ uniform), "usage", "perplexity", "dead_codes" 0
    (the codebook is learned by gradient; no EMA counts). In eval, z_q = `decode(indices)`.

    Attributes:
      codebook_size: K.
      dim: D (None: from the input).
      temperature: τ when the call gives none (the start of the schedule, if any).
      temperature_end: τ at the end of the schedule.
      temperature_decay_steps: training calls over which τ anneals (0: constant τ).
      hard: straight-through one-hot forward (else the soft mixture y·E, whose indices are
        the argmax of the sample).
      kl_weight: weight of the KL to the uniform prior.
    """

    codebook_size: int
    dim: int | None = None
    temperature: float = 1.0
    temperature_end: float = 1.0 / 16
    temperature_decay_steps: int = 0
    hard: bool = True
    kl_weight: float = 5e-4

    prefix_decodable = False  # every index group is needed

    @property
    def num_codes(self) -> tuple[int, ...]:
        return (self.codebook_size,)

    def decode(self, indices: jax.Array) -> jax.Array:
        """int [..., 1] → float32 [..., D] (out-of-range indices are clipped)."""
        codebook = self.get_variable("params", "codebook")
        return jnp.take(codebook, indices[..., 0], axis=0, mode="clip")

    @nn.compact
    def __call__(
        self,
        z: jax.Array,
        *,
        training: bool,
        rng: jax.Array | None = None,
        temperature: float | jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, dict]:
        """Quantizes z; `rng` (default `make_rng("quantizer")`) draws the Gumbel noise."""
        k = self.codebook_size
        dim = z.shape[-1] if self.dim is None else self.dim
        if z.shape[-1] != dim:
            raise ValueError(f"expected vectors of size {dim}, got shape {z.shape}")
        codebook = self.param("codebook", nn.initializers.normal(1.0), (k, dim), jnp.float32)
        logits = nn.Dense(k, name="logits")(z.astype(jnp.float32))

        if self.temperature_decay_steps > 0:
            calls = self.variable(STATE, "calls", lambda: jnp.zeros((), jnp.int32))
        if training:
            tau = temperature
            if tau is None and self.temperature_decay_steps > 0:
                tau = temperature_schedule(
                    calls.value,
                    self.temperature,
                    self.temperature_end,
                    self.temperature_decay_steps,
                )
                if self.is_mutable_collection(STATE) and not self.is_initializing():
                    calls.value = calls.value + 1
            elif tau is None:
                tau = self.temperature
            key = rng if rng is not None else self.make_rng("quantizer")
            # Drawn flat: XLA:CPU compiles threefry over a rank-4 shape ~10× slower.
            noise = jax.random.gumbel(key, (logits.size,)).reshape(logits.shape)
            y = jax.nn.softmax((logits + noise) / tau, axis=-1)
            idx = jnp.argmax(y, axis=-1).astype(jnp.int32)
            if self.hard:
                y = jax.nn.one_hot(idx, k, dtype=y.dtype) + (y - jax.lax.stop_gradient(y))
            z_q = jnp.dot(y, codebook, precision=jax.lax.Precision.HIGHEST)
        else:
            idx = jnp.argmax(logits, axis=-1).astype(jnp.int32)
            z_q = self.decode(idx[..., None])
        indices = idx[..., None]

        log_p = jax.nn.log_softmax(logits, axis=-1)
        kl = jnp.mean(jnp.sum(jnp.exp(log_p) * (log_p + jnp.log(float(k))), axis=-1))
        usage, perplexity = code_statistics(histogram(idx, k))
        aux = {
            "loss": (self.kl_weight * kl).astype(jnp.float32),
            "usage": usage,
            "perplexity": perplexity,
            "dead_codes": jnp.zeros((), jnp.float32),
        }
        return z_q, indices, aux
