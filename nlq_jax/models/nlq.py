"""NLQ: a residual/attention autoencoder with a discrete latent (VQ, RVQ, PQ, FSQ, ...) whose
code indices are entropy coded with a learned categorical prior.

The transforms follow VQGAN's encoder/decoder (Esser, Rombach, Ommer, "Taming Transformers for
High-Resolution Image Synthesis", CVPR 2021, sec. 3.1: residual blocks, non-local attention at
the lowest resolution) with Cheng et al.'s attention module (Cheng, Sun, Takeuchi, Katto,
"Learned Image Compression with Discretized Gaussian Mixture Likelihoods and Attention
Modules", CVPR 2020, sec. 3) and the down/up-sampling convolutions of Ballé et al. The latent
is quantized by one of `nlq_jax.quantizers` (selected by name):

- "vq": van den Oord, Vinyals, Kavukcuoglu, "Neural Discrete Representation Learning",
  NeurIPS 2017 (VQ-VAE; EMA codebook updates, appendix A.1);
- "rvq": residual VQ, Zeghidour et al., "SoundStream: An End-to-End Neural Audio Codec",
  IEEE/ACM TASLP 2021, sec. III-C (algorithm 1); a prefix of the stages is a coarser code;
- "pvq": product quantization, Jégou, Douze, Schmid, "Product Quantization for Nearest Neighbor
  Search", TPAMI 2011 (the latent vector split into groups, one codebook each);
- "fsq": Mentzer, Minnen, Agustsson, Tschannen, "Finite Scalar Quantization: VQ-VAE Made
  Simple", ICLR 2024;
- "scalar": learned scalar quantization per channel; "gumbel": Gumbel-softmax relaxation
  (Jang, Gu, Poole, ICLR 2017) of VQ.

```
x ─► g_a ─► z ─► Q ─► z_q ───────────────────────────────────────────────────► g_s ─► x̂
                 │ (codebook(s), EMA state in "quantizer_state")
                 └► indices [B, H/16, W/16, G] ─► categorical prior (bits, range coded)

g_a: (DownConv5×5/2 → N, ResidualBlock × R) × 4,          g_s: conv3×3 D → N,
     [SelfAttention, AttentionBlock], conv1×1 → D              [SelfAttention, AttentionBlock],
                                                              (ResidualBlock × R, UpConv ×2 → N)
                                                              × 3, ResidualBlock × R, UpConv → 3
```
The rate in the loss is the categorical prior's −log2 p of the indices (it trains the prior by
cross-entropy; the indices themselves carry no gradient, so the rate is fixed by the codebook
sizes and only the prior's fit lowers it); `aux["fixed_bits"]` is the fixed-length cost
S·log2 K per position, which the range-coded stream must not exceed by more than its overhead.

Stream: [indices], one range-coded queue stream, one chunk per index group (group g's tables
may depend on the decoded group g − 1 when the prior is conditional). An RVQ stream starts with
one byte, the number of stages coded, so any prefix of the stages is a valid (coarser) file.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax import quantizers
from nlq_jax.entropy import categorical
from nlq_jax.entropy import coder as coder_lib
from nlq_jax.errors import FormatError
from nlq_jax.layers.blocks import AttentionBlock, ResidualBlock, SelfAttention
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import base


def get_default_sizes(quality: int) -> dict:
    """Model sizes for quality 1–8: more RVQ stages (and codes) for higher qualities.

    The rate of a fixed-rate discrete latent is set by the codebook: log2(K) bits per stage and
    position of the 16×-down-sampled latent, i.e. 3 × 13 / 256 ≈ 0.15 bpp for 3 × 8192 codes
    (before entropy coding).
    """
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    stages = (1, 2, 3, 4, 6, 8, 12, 16)[quality - 1]
    return {"N": 128 if quality <= 4 else 192, "num_stages": stages, "codebook_size": 8192}


def build_quantizer(model: nn.Module) -> nn.Module:
    """The quantizer a model's flat attributes describe (unbound), via `get_quantizer`."""
    name, d, k = model.quantizer, model.latent_dim, model.codebook_size
    levels = tuple(int(n) for n in model.levels)
    vq = {
        "dim": d,
        "codebook_size": k,
        "commitment_cost": model.commitment_cost,
        "ema_decay": model.ema_decay,
        "dead_code_threshold": model.dead_code_threshold,
        "restart_dead": model.dead_code_threshold > 0,
        "kmeans_init": model.kmeans_init,
    }
    if name == "vq":
        return quantizers.get_quantizer("vq", **vq)
    if name == "rvq":
        dropout = {"dropout": model.stage_dropout > 0, "dropout_rate": model.stage_dropout}
        # vqvae2.Model has no such field: its RVQs keep the per-stage commitment.
        dropout["commitment"] = getattr(model, "rvq_commitment", "stages")
        return quantizers.get_quantizer("rvq", num_stages=model.num_stages, **vq, **dropout)
    if name == "pvq":
        return quantizers.get_quantizer("pvq", groups=model.groups, **vq)
    if name == "fsq":
        return quantizers.get_quantizer("fsq", levels=levels, dim=d)
    if name == "scalar":
        # Levels per channel, or levels[0] for every channel when their count is not D.
        per_channel = levels if len(levels) == d else levels[0]
        return quantizers.get_quantizer("scalar", levels=per_channel, dim=d)
    if name == "gumbel":
        return quantizers.get_quantizer(
            "gumbel",
            codebook_size=k,
            dim=d,
            temperature=model.temperature,
            temperature_end=model.temperature_end,
            temperature_decay_steps=model.temperature_decay_steps,
        )
    raise ValueError(f"unknown quantizer {name!r}; known: {', '.join(quantizers.QUANTIZERS)}")


def encoder(N: int, D: int, R: int, attention: bool, name: str = "g_a") -> nn.Sequential:
    """g_a: four (DownConv 5×5 /2, R residual blocks) stages, attention, 1×1 conv to D."""
    layers: list = []
    for _ in range(4):
        layers += [DownConv(N), *[ResidualBlock(N) for _ in range(R)]]
    if attention:
        layers += [SelfAttention(N), AttentionBlock(N)]
    layers.append(nn.Conv(D, (1, 1)))
    return nn.Sequential(layers, name=name)


def decoder(N: int, R: int, attention: bool, upsampling: str, name: str = "g_s") -> nn.Sequential:
    """g_s: the mirror of `encoder` (3×3 conv from D, attention, residual blocks, UpConv ×2)."""
    layers: list = [nn.Conv(N, (3, 3), padding=1)]
    if attention:
        layers += [SelfAttention(N), AttentionBlock(N)]
    for i in range(4):
        layers += [ResidualBlock(N) for _ in range(R)]
        layers.append(UpConv(N if i < 3 else 3, method=upsampling))
    return nn.Sequential(layers, name=name)


class Model(nn.Module):
    """NLQ: discrete-latent image compression; see the module docstring for the data flow.

    Attributes:
      N: channels of the transforms.
      latent_dim: D, channels of the quantized latent (the codebook vectors' size).
      num_res_blocks: residual blocks per resolution.
      attention: self-attention and Cheng's attention module at the lowest resolution.
      upsampling: `UpConv` method of g_s.
      quantizer: "vq", "rvq", "pvq", "fsq", "scalar" or "gumbel".
      codebook_size: K, codes per codebook (vq, rvq, pvq, gumbel).
      num_stages: S, residual stages (rvq).
      groups: sub-vectors with their own codebook (pvq).
      levels: levels per channel (fsq: the latent is projected to len(levels) channels inside
        the quantizer; scalar: per channel if there are D of them, else levels[0] for all).
      commitment_cost: β of the commitment loss (vq, rvq, pvq).
      ema_decay: decay of the EMA codebook updates (vq, rvq, pvq).
      dead_code_threshold: codes whose EMA count (vectors per batch) falls below this are
        restarted from the batch's encoder outputs (vq, rvq, pvq; 0: never restart).
      kmeans_init: initialise the codebooks by k-means on the first training batch.
      stage_dropout: fraction of the training examples that use a random prefix of the RVQ
        stages (quantizer dropout; trains the coarser prefix codes too; 0: off).
      temperature: Gumbel-softmax temperature (gumbel), the start of its schedule.
      temperature_end: the temperature after `temperature_decay_steps` training steps.
      temperature_decay_steps: steps of exponential annealing (0: constant temperature).
      conditional_prior: the prior of index group g is conditioned on the code of group g − 1
        (e.g. RVQ stage s on stage s − 1).
      rvq_commitment: "stages" (β on every RVQ stage's residual) or "total" (β on the latent's
        distance to the sum of the stages used); see `nlq_jax.quantizers.rvq`.
    """

    N: int = 128
    latent_dim: int = 64
    num_res_blocks: int = 1
    attention: bool = True
    upsampling: str = "phase"
    quantizer: str = "rvq"
    codebook_size: int = 8192
    num_stages: int = 3
    groups: int = 1
    levels: tuple[int, ...] = (8, 5, 5, 5)
    commitment_cost: float = 0.25
    ema_decay: float = 0.99
    dead_code_threshold: float = 1.0
    kmeans_init: bool = True
    stage_dropout: float = 1.0
    temperature: float = 1.0
    temperature_end: float = 1.0 / 16
    temperature_decay_steps: int = 0
    conditional_prior: bool = False
    rvq_commitment: str = "stages"

    stride = 16  # input sizes must be multiples of this (the codec pads)
    # Memory: the self-attention holds (H·W/256)² weights, ~4 GB for a 3840×2160 image; use
    # attention=False (or tiles) for images that large.

    def setup(self):
        self.g_a = encoder(self.N, self.latent_dim, self.num_res_blocks, self.attention)
        self.g_s = decoder(self.N, self.num_res_blocks, self.attention, self.upsampling)
        self.latent_quantizer = build_quantizer(self)
        self.prior = index_prior(self)

    def __call__(self, x: jax.Array, *, training: bool) -> dict:
        """x: float [B, H, W, 3] in [0, 1] → {"x_hat", "bits": {"indices"}, "aux"}.

        aux: the quantizer's "loss" (to add to the objective), "usage", "perplexity",
        "dead_codes", and "fixed_bits" [B] (the fixed-length code of the indices).
        """
        z = self.g_a(x)
        z_q, indices, q_aux = self.latent_quantizer(z, train=training)
        _, bits = self.prior(indices, training=training)
        aux = dict(q_aux)
        aux["fixed_bits"] = fixed_bits(self.latent_quantizer.num_codes, indices)
        return {"x_hat": self.g_s(z_q), "bits": {"indices": bits}, "aux": aux}

    # The bitstream path's pieces (see `compress`/`decompress`).
    def analysis(self, x: jax.Array) -> jax.Array:
        """x → code indices int32 [B, h, w, G] (eval mode)."""
        return self.latent_quantizer(self.g_a(x), train=False)[1]

    def synthesis(self, indices: jax.Array) -> jax.Array:
        """indices [B, h, w, G'] → x̂; an RVQ decodes the first G' ≤ S stages."""
        if self.quantizer == "rvq":
            z_q = self.latent_quantizer.decode(indices, num_stages=indices.shape[-1])
        else:
            z_q = self.latent_quantizer.decode(indices)
        return self.g_s(z_q)

    def index_counts(self, x: jax.Array) -> dict[str, list[jax.Array]]:
        """How often each code occurs in the eval-mode indices of x, per prior (see
        `fit_priors`)."""
        counts = code_counts(
            self.latent_quantizer.num_codes, self.conditional_prior, self.analysis(x)
        )
        return {"prior": counts}


def index_prior(model: nn.Module, num_codes: tuple[int, ...] | None = None, name="prior"):
    """The categorical prior of a model's index groups (unbound unless called in setup)."""
    if num_codes is None:
        num_codes = build_quantizer(model).num_codes
    return categorical.CategoricalPrior(
        num_codes=tuple(num_codes), conditional=model.conditional_prior, name=name
    )


def fixed_bits(num_codes: tuple[int, ...], indices: jax.Array) -> jax.Array:
    """Per-example bits of a fixed-length code of `indices` [B, h, w, G] (Σ_g log2 K_g per
    position), as float32 [B]."""
    positions = int(np.prod(indices.shape[1:-1]))
    bits = categorical.fixed_length_bits(tuple(num_codes), positions)
    return jnp.full((indices.shape[0],), bits, jnp.float32)


def code_counts(
    num_codes: tuple[int, ...], conditional: bool, indices: jax.Array
) -> list[jax.Array]:
    """Counts of the codes of each index group of `indices` [..., G], float32 [K_g], or
    [K_{g−1}, K_g] (pairs with the previous group's code) when the prior is conditional."""
    counts = []
    for g, k in enumerate(num_codes):
        i = jnp.clip(indices[..., g].reshape(-1), 0, k - 1)
        if conditional and g:
            prev = jnp.clip(indices[..., g - 1].reshape(-1), 0, num_codes[g - 1] - 1)
            counts.append(jnp.zeros((num_codes[g - 1], k), jnp.float32).at[prev, i].add(1.0))
        else:
            counts.append(jnp.zeros((k,), jnp.float32).at[i].add(1.0))
    return counts


def fit_priors(model: nn.Module, params: dict, counts: dict, alpha: float = 0.5) -> dict:
    """`params` with each categorical prior refit to code counts (from `index_counts`).

    The fit is the add-α smoothed maximum-likelihood estimate p ∝ count + α, in closed form.
    The priors are trained by SGD with everything else, but they chase a moving target (codes
    change meaning as the codebooks learn and dead codes restart); VQ-VAE-2 (Razavi et al.
    2019, sec. 3.2) fits its priors after the autoencoder for the same reason. The trainer
    calls this before exporting (`config.prior_fit_batches`).
    """
    del model
    params = dict(params)
    for name, groups in counts.items():
        prior = dict(params[name])
        for g, c in enumerate(groups):
            logits = np.log(np.asarray(c, np.float64) + alpha)
            logits = (logits - logits.max(axis=-1, keepdims=True)).astype(np.float32)
            old = np.shape(prior[f"logits_{g}"])
            if logits.shape != old:
                raise ValueError(f"{name}/logits_{g}: counts {logits.shape}, parameter {old}")
            prior[f"logits_{g}"] = logits
        params[name] = prior
    return params


def build_tables(model: Model, params: dict) -> dict:
    """Coding tables of the indices (a pure function of the prior's parameters)."""
    return {"indices": categorical.build_tables(index_prior(model), params["prior"])}


def latent_shapes(model: Model, height: int, width: int) -> dict[str, tuple[int, ...]]:
    """Shapes of the coded index arrays for a (padded) image size (all RVQ stages)."""
    groups = len(build_quantizer(model).num_codes)
    return {"indices": (1, height // 16, width // 16, groups)}


def stream_specs(model: Model, height: int, width: int) -> list[base.StreamSpec]:
    """What the stream of a (padded) image size must be (see `base.check_streams`): [indices],
    all groups at most (an RVQ file may code fewer stages), after the RVQ's stage-count byte."""
    shape = latent_shapes(model, height, width)["indices"]
    prefix = 1 if model.quantizer == "rvq" else 0
    return [base.StreamSpec("indices", int(np.prod(shape)), prefix)]


def synthesis_bytes_per_pixel(N: int) -> float:
    """Peak bytes per output pixel of `decoder` (g_s), an upper bound: like the GDN models',
    its largest maps are N-channel float32 maps at half resolution (N bytes per output pixel
    each), a few of them live at once in a residual block. Measured with `attention_bytes`
    (see `decode_memory`); the GDN models' bound, 4 N + 64, holds for it.
    """
    return 4.0 * N + 64


def attention_bytes(tokens: int) -> int:
    """Memory of `SelfAttention` over `tokens` positions (one head): its float32 logits and
    softmax weights, tokens² each."""
    return 8 * tokens**2


def decode_memory(model: Model, height: int, width: int) -> int:
    """Upper bound on the bytes `decompress` allocates for a (padded) image size: g_s at full
    resolution, plus the self-attention's (h·w)² weights at the latent's h × w when the model
    has attention (quadratic: ≈4 GB for 2048², the term that dominates beyond ≈1 MP)."""
    specs = stream_specs(model, height, width)
    tokens = (height // 16) * (width // 16)
    return base.synthesis_memory(
        height,
        width,
        synthesis_bytes_per_pixel(model.N),
        base.coding_bytes(specs) + (attention_bytes(tokens) if model.attention else 0),
    )


def encode_indices(
    coder: coder_lib.TableCoder, prior: nn.Module, indices: np.ndarray, groups: int | None = None
) -> bytes:
    """Range codes the first `groups` (default: all) index groups of int indices [1, h, w, G]
    with the prior's tables, one chunk per group."""
    indices = np.asarray(indices, np.int32)
    groups = indices.shape[-1] if groups is None else groups
    table_indexes = categorical.table_indexes(prior, indices)
    encoder = coder_lib.new_encoder()
    for g in range(groups):
        coder.encode_chunk(encoder, indices[..., g], table_indexes[..., g])
    return coder_lib.finish(encoder)


def decode_indices(
    coder: coder_lib.TableCoder,
    prior: nn.Module,
    data: bytes,
    shape: tuple[int, ...],
    groups: int | None = None,
) -> np.ndarray:
    """Inverse of `encode_indices`: int32 indices of `shape` [1, h, w, G] whose first `groups`
    groups are decoded (the others stay 0). Group g's table indexes are computed from the
    groups decoded before it (those after it are still 0 and do not enter)."""
    indices = np.zeros(shape, np.int32)
    groups = shape[-1] if groups is None else groups
    decoder = coder_lib.new_decoder(data)
    for g in range(groups):
        table_indexes = categorical.table_indexes(prior, indices)
        indices[..., g] = coder.decode_chunk(decoder, table_indexes[..., g])
    return indices


def compress(runner: base.Runner, x: np.ndarray, num_stages: int | None = None) -> list[list]:
    """Padded images [B, H, W, 3] → each image's streams [indices].

    Args:
      runner: the model bound to its variables and tables.
      x: the padded images.
      num_stages: an RVQ model codes only its first `num_stages` stages (default: all); the
        stream's first byte says how many.
    """
    model = runner.model
    prior = index_prior(model)
    stages = _coded_stages(model, num_stages)
    out = []
    for idx in runner.call("analysis", x):
        data = encode_indices(runner.coder("indices"), prior, idx[None], stages)
        out.append([data if stages is None else bytes([stages]) + data])
    return out


def decompress(runner: base.Runner, streams: list[bytes], height: int, width: int) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped)."""
    model = runner.model
    shape = latent_shapes(model, height, width)["indices"]
    data, groups = streams[0], None
    if model.quantizer == "rvq":
        if not data or not 1 <= data[0] <= model.num_stages:
            raise FormatError(f"corrupted stream (stage count not in 1..{model.num_stages})")
        groups, data = data[0], data[1:]
    indices = decode_indices(runner.coder("indices"), index_prior(model), data, shape, groups)
    return runner.call("synthesis", indices[..., :groups])


def _coded_stages(model: Model, num_stages: int | None) -> int | None:
    """How many RVQ stages to code (None for other quantizers, which code every group)."""
    if model.quantizer != "rvq":
        if num_stages is not None:
            raise ValueError(f"num_stages applies to an 'rvq' model, not {model.quantizer!r}")
        return None
    stages = model.num_stages if num_stages is None else int(num_stages)
    if not 1 <= stages <= model.num_stages:
        raise ValueError(f"num_stages must be in 1..{model.num_stages}, got {num_stages}")
    return stages
