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
latent's resolution (`nlq_jax.models.roi.pack_mask`): the positions the region touches have all
the file's stages, the others its first o (`compress(roi=MASK)`: the bits go where the region
is). Stage s's stream codes stage s's indices of the positions that have it, in raster order
(group s − 1, already decoded, conditions them as before); a position decodes to the sum of
the codes of its stages. A version-1 RVQ file (written before progressive files) is one stream,
a stage-count byte then all the stages in one coder; it still decodes.
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
from nlq_jax.entropy import coder as coder_lib
from nlq_jax.errors import FormatError
from nlq_jax.layers.blocks import AttentionBlock, ResidualBlock, SelfAttention
from nlq_jax.layers.conv import DownConv, UpConv
from nlq_jax.models import base
from nlq_jax.models import roi as roi_lib


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


class Model(nn.Module):
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
        if self.latent_quantizer.prefix_decodable:
            z_q = self.latent_quantizer.decode(indices, num_stages=indices.shape[-1])
        else:
            z_q = self.latent_quantizer.decode(indices)
        return self.g_s(z_q)

    def synthesis_stages(self, indices: jax.Array, stages: jax.Array) -> jax.Array:
        """RVQ indices [B, h, w, n] and int32 stages [B, h, w] in 1..n → x̂, each position
        decoded from the sum of its first `stages` codes (a region-of-interest file)."""
        n = indices.shape[-1]
        z_q = self.latent_quantizer.decode(indices, num_stages=n)
        for s in range(1, n):
            prefix = self.latent_quantizer.decode(indices, num_stages=s)
            z_q = jnp.where((stages == s)[..., None], prefix, z_q)
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


def progressive(model: Model) -> bool:
    """Whether the model writes progressive files (its quantizer is `prefix_decodable`, an
    RVQ: a stream per stage)."""
    return prefix_stages(model) > 0


def stream_specs(
    model: Model, height: int, width: int, progressive: bool = True
) -> list[base.StreamSpec]:
    """What the streams of a (padded) image size must be (see `base.check_streams`).

    [indices], all groups; an RVQ model's: [map, stage 1, stage 2 ... stage S], the stages
    after the first optional (see the module docstring), or with `progressive=False` the
    single stream of its version-1 files, a stage-count byte and at most S stages.
    """
    shape = latent_shapes(model, height, width)["indices"]
    num_stages = prefix_stages(model)
    if not num_stages:
        return [base.StreamSpec("indices", int(np.prod(shape)))]
    positions = int(np.prod(shape[:-1]))
    if not progressive:
        return [base.StreamSpec("indices", positions * num_stages, prefix=1)]
    stage_map = base.StreamSpec("stage map", 1 + roi_lib.packed_bytes_bound(positions), raw=True)
    stages = [
        base.StreamSpec(f"stage {s}", positions, optional=s > 1) for s in range(1, num_stages + 1)
    ]
    return [stage_map, *stages]


def file_stages(model: Model, streams: list[bytes], declared: int) -> tuple[int, int]:
    """(stages the file was written with, stages complete in it) of streams that passed
    `stream_specs`, of which `declared` the file declares (more when it was cut short); (1, 1)
    for a quantizer other than RVQ."""
    if not prefix_stages(model):
        return 1, 1
    if len(streams) == 1 and declared == 1:  # version 1: one stream, its stage count
        stages = _legacy_stage_count(model, streams[0])
        return stages, stages
    return declared - 1, len(streams) - 1


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


def encode_stages(
    coder: coder_lib.TableCoder, prior: nn.Module, indices: np.ndarray, stages: np.ndarray
) -> list[bytes]:
    """Range codes RVQ indices [1, h, w, G] one stream per stage s = 1 ... max(stages): group
    s − 1 at the positions whose `stages` [h, w] is at least s, in raster order."""
    indices = np.asarray(indices, np.int32)
    table_indexes = categorical.table_indexes(prior, indices)
    out = []
    for g in range(int(np.max(stages))):
        coded = stages >= g + 1
        encoder = coder_lib.new_encoder()
        coder.encode_chunk(encoder, indices[0, ..., g][coded], table_indexes[0, ..., g][coded])
        out.append(coder_lib.finish(encoder))
    return out


def decode_stages(
    coder: coder_lib.TableCoder,
    prior: nn.Module,
    streams: list[bytes],
    shape: tuple[int, ...],
    stages: np.ndarray,
) -> np.ndarray:
    """Inverse of `encode_stages` for its first len(streams) streams: int32 indices of `shape`
    [1, h, w, G], 0 where a position does not have the stage (or it is not decoded)."""
    indices = np.zeros(shape, np.int32)
    for g, data in enumerate(streams):
        coded = stages >= g + 1
        decoder = coder_lib.new_decoder(data)
        table_indexes = categorical.table_indexes(prior, indices)[0, ..., g][coded]
        indices[0, ..., g][coded] = coder.decode_chunk(decoder, table_indexes)
    return indices


def compress(
    runner: base.Runner,
    x: np.ndarray,
    num_stages: int | None = None,
    roi: np.ndarray | None = None,
    roi_stages_outside: int = 1,
) -> list[list[bytes]]:
    """Padded images [B, H, W, 3] → each image's streams: [indices], or an RVQ model's
    [map, stage 1, ..., stage n] (see the module docstring).

    Args:
      runner: the model bound to its variables and tables.
      x: the padded images.
      num_stages: an RVQ model codes only its first `num_stages` stages (default: all).
      roi: a region of interest (RVQ), a mask [H, W] or one per image [B, H, W], padded like
        the images, nonzero in the region: the latent positions it touches get every coded
        stage, the others only the first `roi_stages_outside`.
      roi_stages_outside: the stages outside the region, 1..num_stages.
    """
    model = runner.model
    stages = _coded_stages(model, num_stages)
    if stages is None:
        if roi is not None:
            raise ValueError(f"roi applies to an 'rvq' model, not {model.quantizer['name']!r}")
        prior = index_prior(model)
        return [
            [encode_indices(runner.coder("indices"), prior, i[None])]
            for i in runner.call("analysis", x)
        ]
    if roi is not None:
        roi = np.broadcast_to(np.asarray(roi), (len(x), *x.shape[1:3]))
        outside = int(roi_stages_outside)
        if not 1 <= outside <= stages:
            raise ValueError(f"roi_stages_outside must be in 1..{stages}, got {roi_stages_outside}")
    prior = index_prior(model)
    out = []
    for i, idx in enumerate(runner.call("analysis", x)):
        per_position = np.full(idx.shape[:2], stages)
        stage_map = b"\x00"
        if roi is not None:
            mask = roi_lib.latent_mask(roi[i], model.stride)
            per_position = np.where(mask, stages, outside)
            if per_position.min() < per_position.max():
                stage_map = bytes([outside]) + roi_lib.pack_mask(mask)
        streams = encode_stages(runner.coder("indices"), prior, idx[None], per_position)
        out.append([stage_map, *streams])
    return out


def decompress(
    runner: base.Runner,
    streams: list[bytes],
    height: int,
    width: int,
    num_stages: int | None = None,
) -> np.ndarray:
    """Inverse of `compress`: the reconstruction [1, H, W, 3] (float, unclipped).

    Args:
      runner: the model bound to its variables and tables.
      streams: the file's streams (of a progressive file, the complete ones).
      height, width: the padded image size.
      num_stages: an RVQ model decodes at most the first `num_stages` stages (default: all
        those present).
    """
    model = runner.model
    shape = latent_shapes(model, height, width)["indices"]
    limit = _coded_stages(model, num_stages)
    coder, prior = runner.coder("indices"), index_prior(model)
    if not prefix_stages(model):
        return runner.call("synthesis", decode_indices(coder, prior, streams[0], shape))
    if len(streams) == 1:  # version 1: a stage-count byte, then every stage in one coder
        groups = min(_legacy_stage_count(model, streams[0]), limit)
        indices = decode_indices(coder, prior, streams[0][1:], shape, groups)
        return runner.call("synthesis", indices[..., :groups])
    present = min(len(streams) - 1, limit)
    per_position = _stage_map(model, streams[0], shape[1:3], present)
    indices = decode_stages(coder, prior, streams[1 : present + 1], shape, per_position)
    if per_position.min() == present:
        return runner.call("synthesis", indices[..., :present])
    return runner.call("synthesis_stages", indices[..., :present], per_position[None])


def _stage_map(model: Model, data: bytes, shape: tuple[int, int], present: int) -> np.ndarray:
    """The map stream → int32 stages [h, w] of each position, at most `present`."""
    if data == b"\x00":
        return np.full(shape, present, np.int32)
    outside, num_stages = data[0], prefix_stages(model)
    if not 1 <= outside < num_stages:
        raise FormatError(
            f"corrupted stage map (stages outside the region {outside}, not in 1..{num_stages - 1})"
        )
    mask = roi_lib.unpack_mask(data[1:], shape)
    if mask.all() or not mask.any():
        raise FormatError("corrupted stage map (a region of interest that is all or nothing)")
    return np.where(mask, present, min(outside, present)).astype(np.int32)


def _legacy_stage_count(model: Model, data: bytes) -> int:
    """The stage count that starts a version-1 RVQ stream."""
    num_stages = prefix_stages(model)
    if not data or not 1 <= data[0] <= num_stages:
        raise FormatError(f"corrupted stream (stage count not in 1..{num_stages})")
    return data[0]


def _coded_stages(model: Model, num_stages: int | None) -> int | None:
    """How many RVQ stages to code (None for other quantizers, which code every group)."""
    total = prefix_stages(model)
    if not total:
        if num_stages is not None:
            name = model.quantizer["name"]
            raise ValueError(f"num_stages applies to an 'rvq' model, not {name!r}")
        return None
    stages = total if num_stages is None else int(num_stages)
    if not 1 <= stages <= total:
        raise ValueError(f"num_stages must be in 1..{total}, got {num_stages}")
    return stages
