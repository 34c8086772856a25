"""Code indices of a discrete quantizer under a learned categorical prior (VQ-VAE, RVQ, PQ,
FSQ, learned scalar, Gumbel-softmax: `nlq_jax.quantizers`).

The latent z is quantized to code indices [B, h, w, G] (one per index group: an RVQ stage, a
product-VQ sub-vector, ...); their rate is the prior's −log2 p (`CategoricalPrior`, optionally
conditioning group g on group g − 1), and the stream codes them with the prior's integer tables,
one chunk per group. The forward's ŷ is the quantizer's z_q; the decoder's is
`quantizer.decode(indices)`, bit-equal to it (the quantizers' contract).

A quantizer whose prefixes of index groups are coarser codes (`prefix_decodable`: RVQ) writes
progressive streams: [map, stage 1, ..., stage n], n ≤ S the stages coded (`num_stages`), each
stage its own range coder; the map, raw and first, says which stages each position has: b"\\x00",
all the file's; or, with a region of interest, the stages outside it, one byte o in 1..S − 1,
then the region's mask at the latent's resolution (`nlq_jax.latent_codecs.roi.pack_mask`). Stage s's
stream codes stage s's indices of the positions that have it, in raster order. A version-1 file
of such a model (one stream: a stage-count byte, then every stage in one coder) still decodes.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nlq_jax.entropy import categorical
from nlq_jax.entropy import coder as coder_lib
from nlq_jax.errors import FormatError
from nlq_jax.latent_codecs import bitstream
from nlq_jax.latent_codecs import roi as roi_lib
from nlq_jax.latent_codecs.base import Context, LatentCodec


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


def fixed_bits(num_codes: tuple[int, ...], indices: jax.Array) -> jax.Array:
    """Per-example bits of a fixed-length code of `indices` [B, h, w, G] (Σ_g log2 K_g per
    position), as float32 [B]."""
    positions = int(np.prod(indices.shape[1:-1]))
    bits = categorical.fixed_length_bits(tuple(num_codes), positions)
    return jnp.full((indices.shape[0],), bits, jnp.float32)


def prefix_stages(quantizer: nn.Module) -> int:
    """S, the index groups of a quantizer whose prefixes are coarser codes (an RVQ's stages);
    0 for the others."""
    return int(quantizer.num_stages) if getattr(quantizer, "prefix_decodable", False) else 0


class CategoricalIndicesCodec(LatentCodec):
    """z quantized by `quantizer` to code indices coded under `prior` (see the module
    docstring).

    Attributes:
      quantizer: a discrete quantizer (`nlq_jax.quantizers`), shared with the model.
      prior: the `CategoricalPrior` of its index groups, shared with the model.
      key: the indices' (and their tables') name.
      progressive: whether a prefix-decodable quantizer's stages become progressive streams
        (False: one stream of every group, as for any quantizer; VQ-VAE-2's levels).
    """

    quantizer: nn.Module
    prior: nn.Module
    key: str = "indices"
    progressive: bool = True

    @nn.nowrap
    def _stages(self) -> int:
        """S if the stages are coded as progressive streams, else 0."""
        return prefix_stages(self.quantizer) if self.progressive else 0

    def __call__(self, z: jax.Array, cond: Any = None, *, training: bool):
        """z → (z_q, {key: bits}, aux): the quantizer's aux ("loss", "usage", ...) and
        "fixed_bits" [B], the fixed-length code of the indices."""
        z_q, indices, aux = self.quantizer(z, training=training)
        _, bits = self.prior(indices, training=training)
        aux = dict(aux)
        aux["fixed_bits"] = fixed_bits(self.quantizer.num_codes, indices)
        return z_q, {self.key: bits}, aux

    def latents(self, z: jax.Array) -> dict[str, jax.Array]:
        groups = len(self.quantizer.num_codes)
        return {self.key: jnp.zeros((*z.shape[:-1], groups), jnp.int32)}

    # The bitstream path's jitted pieces.
    def indices(self, z: jax.Array) -> jax.Array:
        """z → code indices int32 [B, h, w, G] (eval mode)."""
        return self.quantizer(z, training=False)[1]

    def dequantize(self, indices: jax.Array) -> jax.Array:
        """indices [B, h, w, G'] → z_q; a prefix-decodable quantizer decodes G' ≤ S groups."""
        if self._stages():
            return self.quantizer.decode(indices, num_stages=indices.shape[-1])
        return self.quantizer.decode(indices)

    def dequantize_stages(self, indices: jax.Array, stages: jax.Array) -> jax.Array:
        """RVQ indices [B, h, w, n] and int32 stages [B, h, w] in 1..n → z_q, each position
        the sum of its first `stages` codes (a region-of-interest file)."""
        n = indices.shape[-1]
        z_q = self.quantizer.decode(indices, num_stages=n)
        for s in range(1, n):
            prefix = self.quantizer.decode(indices, num_stages=s)
            z_q = jnp.where((stages == s)[..., None], prefix, z_q)
        return z_q

    @nn.nowrap
    def tables(self) -> dict:
        prior = self.prior.clone(parent=None)
        return {self.key: categorical.build_tables(prior, self.prior.variables["params"])}

    @nn.nowrap
    def writes_progressive(self) -> bool:
        """Whether its files are progressive (any prefix of the stage streams decodes)."""
        return self._stages() > 0

    @nn.nowrap
    def supports(self, option: str) -> bool:
        return self._stages() > 0 and option in ("num_stages", "roi", "roi_stages_outside")

    @nn.nowrap
    def stream_specs(self, shapes, progressive: bool = True):
        shape = shapes[self.key]
        stages = self._stages()
        if not stages:
            return [bitstream.StreamSpec(self.key, int(np.prod(shape)))]
        positions = int(np.prod(shape[:-1]))
        if not progressive:
            return [bitstream.StreamSpec(self.key, positions * stages, prefix=1)]
        stage_map = bitstream.StreamSpec(
            "stage map", 1 + roi_lib.packed_bytes_bound(positions), raw=True
        )
        return [
            stage_map,
            *(
                bitstream.StreamSpec(f"stage {s}", positions, optional=s > 1)
                for s in range(1, stages + 1)
            ),
        ]

    @nn.nowrap
    def coded_stages(self, num_stages: int | None) -> int | None:
        """How many stages to code (None for a quantizer without stages)."""
        total = self._stages()
        if not total:
            if num_stages is not None:
                raise ValueError("num_stages applies to a quantizer with stages (rvq)")
            return None
        stages = total if num_stages is None else int(num_stages)
        if not 1 <= stages <= total:
            raise ValueError(f"num_stages must be in 1..{total}, got {num_stages}")
        return stages

    @nn.nowrap
    def compress(
        self,
        ctx: Context,
        z: np.ndarray,
        cond: Any = None,
        *,
        num_stages: int | None = None,
        roi: np.ndarray | None = None,
        roi_stages_outside: int = 1,
    ):
        """One image's z [1, h, w, D] → ([indices] or [map, stage 1, ..., stage n], z_q).

        `roi` is the region at the latent's resolution [h, w]: its positions get every coded
        stage, the others the first `roi_stages_outside`."""
        stages = self.coded_stages(num_stages)
        indices = ctx.call("indices", z)
        coder = ctx.coder(self.key)
        prior = self.prior.clone(parent=None)
        if stages is None:
            if roi is not None:
                raise ValueError("roi applies to a quantizer with stages (rvq)")
            return [encode_indices(coder, prior, indices)], ctx.call("dequantize", indices)
        per_position = np.full(indices.shape[1:3], stages)
        stage_map = b"\x00"
        if roi is not None:
            outside = int(roi_stages_outside)
            if not 1 <= outside <= stages:
                raise ValueError(
                    f"roi_stages_outside must be in 1..{stages}, got {roi_stages_outside}"
                )
            per_position = np.where(roi, stages, outside)
            if per_position.min() < per_position.max():
                stage_map = bytes([outside]) + roi_lib.pack_mask(roi)
        streams = encode_stages(coder, prior, indices, per_position)
        z_q = ctx.call("dequantize_stages", indices[..., :stages], per_position[None])
        return [stage_map, *streams], z_q

    @nn.nowrap
    def decompress(self, ctx: Context, streams, shapes, cond=None, *, num_stages=None):
        shape = shapes[self.key]
        limit = self.coded_stages(num_stages)
        coder, prior = ctx.coder(self.key), self.prior.clone(parent=None)
        total = self._stages()
        if not total:
            return ctx.call("dequantize", decode_indices(coder, prior, streams[0], shape))
        if len(streams) == 1:  # version 1: a stage-count byte, then every stage in one coder
            data = streams[0]
            if not data or not 1 <= data[0] <= total:
                raise FormatError(f"corrupted stream (stage count not in 1..{total})")
            groups = min(data[0], limit)
            indices = decode_indices(coder, prior, data[1:], shape, groups)
            return ctx.call("dequantize", indices[..., :groups])
        present = min(len(streams) - 1, limit)
        per_position = self._stage_map(streams[0], shape[1:3], present)
        indices = decode_stages(coder, prior, streams[1 : present + 1], shape, per_position)
        if per_position.min() == present:
            return ctx.call("dequantize", indices[..., :present])
        return ctx.call("dequantize_stages", indices[..., :present], per_position[None])

    @nn.nowrap
    def file_stages(self, streams: list[bytes], declared: int) -> tuple[int, int]:
        """(stages the file was written with, stages complete in it) of streams that passed
        `stream_specs`, of which `declared` the file declares; (1, 1) without stages."""
        total = self._stages()
        if not total:
            return 1, 1
        if len(streams) == 1 and declared == 1:  # version 1: one stream, its stage count
            data = streams[0]
            if not data or not 1 <= data[0] <= total:
                raise FormatError(f"corrupted stream (stage count not in 1..{total})")
            return data[0], data[0]
        return declared - 1, len(streams) - 1

    @nn.nowrap
    def _stage_map(self, data: bytes, shape: tuple[int, int], present: int) -> np.ndarray:
        """The map stream → int32 stages [h, w] of each position, at most `present`."""
        if data == b"\x00":
            return np.full(shape, present, np.int32)
        total = self._stages()
        outside = data[0]
        if not 1 <= outside < total:
            raise FormatError(
                f"corrupted stage map (stages outside the region {outside}, not in 1..{total - 1})"
            )
        mask = roi_lib.unpack_mask(data[1:], shape)
        if mask.all() or not mask.any():
            raise FormatError("corrupted stage map (a region of interest that is all or nothing)")
        return np.where(mask, present, min(outside, present)).astype(np.int32)
