"""NLQ: a residual/attention autoencoder with a discrete latent (VQ, RVQ, PQ, FSQ, ...) whose
code indices are entropy coded with a learned categorical prior.

The transforms follow VQGAN's encoder/decoder (Esser, Rombach, Ommer, "Taming Transformers for
High-Resolution Image Synthesis", CVPR 2021, sec. 3.1: residual blocks, non-local attention at
the lowest resolution) with Cheng et al.'s attention module (Cheng, Sun, Takeuchi, Katto,
"Learned Image Compression with Discretized Gaussian Mixture Likelihoods and Attention
Modules", CVPR 2020, sec. 3) and the down/up-sampling convolutions of Ballé et al. The latent
is quantized by one of `nlq_jax.quantizers`, configured by the sub-dict `quantizer`
(`dict(name="rvq", codebook_size=8192, num_stages=3, ...)`, the module's attributes):

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

Streams: [indices], one range-coded queue stream, one chunk per index group (group g's tables
may depend on the decoded group g − 1 when the prior is conditional), except for RVQ.

A model whose quantizer decodes from a prefix of its stages (`prefix_decodable`: RVQ) writes
progressive files (`progressive`; container version 2, a CRC per stream):
[map, stage 1, ..., stage n], n ≤ S the stages coded (`compress(num_stages=n)`), each stage its
own range coder, so the container's stream lengths are the stage boundaries. Any prefix of the
stages is a valid coarser file: a file cut short decodes its complete stages, and one cut
inside a stage decodes exactly as if cut at the end of the last complete one (inside the
header, the map or the first stage it is an error; `nlq_jax.codec.container.unpack_partial`);
`decompress(num_stages=m)` decodes only the first m. The map, raw and first so that no
truncation loses it, says which stages each latent position has: b"\\x00", all the file's; or
the stages outside a region of interest, one byte o in 1..S − 1, then the region's mask at the
latent's resolution (`nlq_jax.latent_codecs.roi.pack_mask`): the positions the region
touches have all the file's stages, the others its first o (`compress(roi=MASK)`: the bits go
where the region is). Stage s's stream codes stage s's indices of the positions that have
it, in raster order (group s − 1, already decoded, conditions them as before); a position
decodes to the sum of the codes of its stages. A version-1 RVQ file (written before
progressive files) is one stream, a stage-count byte then all the stages in one coder; it
still decodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.core import FrozenDict

from nlq_jax import quantizers
from nlq_jax.entropy import categorical
from nlq_jax.latent_codecs.categorical import (  # noqa: F401 (the coding of the indices)
    CategoricalIndicesCodec,
    decode_indices,
    decode_stages,
    encode_indices,
    encode_stages,
    fixed_bits,
)
from nlq_jax.layers.blocks import AttentionBlock, ResidualBlock, SelfAttention
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import composed


def get_default_sizes(quality: int) -> dict:
    """Model sizes for quality 1–8: more RVQ stages (and codes) for higher qualities.

    The rate of a fixed-rate discrete latent is set by the codebook: log2(K) bits per stage and
    position of the 16×-down-sampled latent, i.e. 3 × 13 / 256 ≈ 0.15 bpp for 3 × 8192 codes
    (before entropy coding).
    """
    if not 1 <= quality <= 8:
        raise ValueError(f"quality must be in 1..8, got {quality}")
    stages = (1, 2, 3, 4, 6, 8, 12, 16)[quality - 1]
    quantizer = {"name": "rvq", "codebook_size": 8192, "num_stages": stages}
    return {"N": 128 if quality <= 4 else 192, "quantizer": quantizer}


# The small model the tests build (tests/conftest.py).
SMALL_SIZES = {
    "N": 16,
    "latent_dim": 8,
    "quantizer": {"name": "rvq", "codebook_size": 32, "num_stages": 2},
}


def build_quantizer(model: nn.Module) -> nn.Module:
    """The quantizer of a model's `quantizer` sub-dict (unbound), of size `latent_dim`."""
    options = dict(model.quantizer)
    return quantizers.get_quantizer(options.pop("name"), dim=model.latent_dim, **options)


def prefix_stages(model: nn.Module) -> int:
    """S when the model's quantizer decodes from any prefix of its S stages (RVQ), else 0."""
    q = build_quantizer(model)
    return int(q.num_stages) if q.prefix_decodable else 0


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


class Model(composed.LatentCodecModel):
    """NLQ: discrete-latent image compression; see the module docstring for the data flow.

    Attributes:
      N: channels of the transforms.
      latent_dim: D, channels of the quantized latent (the codebook vectors' size).
      num_res_blocks: residual blocks per resolution.
      attention: self-attention and Cheng's attention module at the lowest resolution.
      upsampling: `UpConv` method of g_s.
      quantizer: the quantizer's sub-dict, `name` (a key of `nlq_jax.quantizers.QUANTIZERS`)
        and the module's attributes but `dim` (the model's `latent_dim`), e.g.
        `dict(name="rvq", codebook_size=8192, num_stages=3, commitment="total")`; kept as a
        FrozenDict (flat arguments of older exports: `quantizers.from_legacy_kwargs`).
      conditional_prior: the prior of index group g is conditioned on the code of group g − 1
        (e.g. RVQ stage s on stage s − 1).
    """

    N: int = 128
    latent_dim: int = 64
    num_res_blocks: int = 1
    attention: bool = True
    upsampling: str = "phase"
    quantizer: Mapping[str, Any] = FrozenDict(name="rvq", codebook_size=8192, num_stages=3)
    conditional_prior: bool = False

    stride = 16  # input sizes must be multiples of this (the codec pads)
    # Memory: the self-attention holds (H·W/256)² weights, ~4 GB for a 3840×2160 image; use
    # attention=False (or tiles) for images that large.

    def __post_init__(self):
        # Hashable (Flax hashes modules), whatever mapping a config or model.json gave.
        object.__setattr__(self, "quantizer", quantizers.freeze(self.quantizer))
        super().__post_init__()

    def setup(self):
        self.g_a = encoder(self.N, self.latent_dim, self.num_res_blocks, self.attention)
        self.g_s = decoder(self.N, self.num_res_blocks, self.attention, self.upsampling)
        self.latent_quantizer = build_quantizer(self)
        self.prior = index_prior(self)
        # The forward (x̂, bits {"indices"}, aux: the quantizer's "loss", "usage", "perplexity",
        # "dead_codes", and "fixed_bits" [B], the fixed-length code of the indices) and the
        # coding are the codec's.
        self.entropy = CategoricalIndicesCodec(self.latent_quantizer, self.prior, key="indices")

    # Conveniences on the indices (the codec's own pieces, from an image).
    def indices(self, x: jax.Array) -> jax.Array:
        """x → code indices int32 [B, h, w, G] (eval mode)."""
        return self.entropy.indices(self.g_a(x))

    def synthesis_indices(self, indices: jax.Array) -> jax.Array:
        """indices [B, h, w, G'] → x̂; an RVQ decodes the first G' ≤ S stages."""
        return self.g_s(self.entropy.dequantize(indices))

    def synthesis_stages(self, indices: jax.Array, stages: jax.Array) -> jax.Array:
        """RVQ indices [B, h, w, n] and int32 stages [B, h, w] in 1..n → x̂, each position
        decoded from the sum of its first `stages` codes (a region-of-interest file)."""
        return self.g_s(self.entropy.dequantize_stages(indices, stages))

    def index_counts(self, x: jax.Array) -> dict[str, list[jax.Array]]:
        """How often each code occurs in the eval-mode indices of x, per prior (see
        `fit_priors`)."""
        counts = code_counts(
            self.latent_quantizer.num_codes, self.conditional_prior, self.indices(x)
        )
        return {"prior": counts}

    def synthesis_bytes_per_pixel(self) -> float:
        return synthesis_bytes_per_pixel(self.N)

    def extra_decode_bytes(self, height: int, width: int) -> int:
        """The self-attention's (h·w)² weights at the latent's h × w, with attention
        (quadratic: ≈4 GB for 2048², the term that dominates beyond ≈1 MP)."""
        return attention_bytes((height // 16) * (width // 16)) if self.attention else 0


def index_prior(model: nn.Module, num_codes: tuple[int, ...] | None = None, name="prior"):
    """The categorical prior of a model's index groups (unbound unless called in setup)."""
    if num_codes is None:
        num_codes = build_quantizer(model).num_codes
    return categorical.CategoricalPrior(
        num_codes=tuple(num_codes), conditional=model.conditional_prior, name=name
    )


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


(build_tables, compress, decompress, stream_specs, decode_memory, latent_shapes) = (
    composed.functions()
)
progressive, file_stages = composed.progressive, composed.file_stages
