"""`nlq baselines`: rate-distortion sweeps of JPEG, WebP, AVIF, JPEG XL and HEVC on a folder.

    nlq baselines --codec jpeg,webp,avif,jxl,hevc --data FOLDER --out DIR

writes DIR/<codec>.json in CompressAI's results format (one point per quality, each the mean
over images of per-image bpp, PSNR, MS-SSIM and times; see `nlq_jax.evaluation.results`).
Every (codec settings, quality, image content) measurement is cached in DIR/.cache/<codec>.json,
so a repeated or extended sweep only encodes what is new; `--force` measures everything again.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

from nlq_jax.baselines.codecs import CODECS, Baseline, parse_codecs
from nlq_jax.errors import NLQError
from nlq_jax.evaluation import results as results_lib

CACHE_VERSION = 1


class Cache:
    """Measurements keyed by codec fingerprint, quality and image content hash, in one JSON file."""

    def __init__(self, path: Path, reuse: bool = True):
        """Opens the cache at `path`; with reuse=False lookups miss but new results are stored."""
        self.path = path
        self.reuse = reuse
        self.entries: dict[str, dict] = {}
        self.dirty = False
        if path.exists():
            try:
                obj = results_lib.read_json(path)
            except NLQError:
                obj = None  # A damaged cache is only a lost speed-up: start again.
            if isinstance(obj, dict) and obj.get("version") == CACHE_VERSION:
                self.entries = dict(obj.get("entries", {}))

    @staticmethod
    def key(codec: Baseline, quality: int, image_hash: str) -> str:
        return f"{codec.key}/{codec.fingerprint()}/q{quality}/{image_hash}"

    def get(self, key: str) -> dict | None:
        return self.entries.get(key) if self.reuse else None

    def put(self, key: str, measurement: dict) -> None:
        self.entries[key] = measurement
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            results_lib.write_json(self.path, {"version": CACHE_VERSION, "entries": self.entries})
            self.dirty = False


def sweep(
    codec: Baseline,
    image_paths: Sequence[Path],
    qualities: Sequence[int],
    cache: Cache,
    progress: bool = True,
) -> dict:
    """Measures `codec` at each quality on each image; returns a results dict (CompressAI format).

    Args:
      codec: the baseline.
      image_paths: the images.
      qualities: the quality values, one curve point each.
      cache: where measurements are looked up and stored (saved after every image).
      progress: show a tqdm progress bar over images.
    """
    from tqdm import tqdm

    qualities = [codec.check_quality(q) for q in qualities]
    per_point: list[list[dict]] = [[] for _ in qualities]
    names = []
    bar = tqdm(image_paths, desc=codec.key, unit="img", disable=not progress, dynamic_ncols=True)
    for path in bar:
        pixels = results_lib.read_image(path)
        digest = results_lib.image_hash(pixels)
        names.append(path.name)
        for i, quality in enumerate(qualities):
            key = Cache.key(codec, quality, digest)
            m = cache.get(key)
            if m is None:
                m, _ = results_lib.measure(
                    pixels, lambda x, q=quality: codec.encode(x, q), codec.decode
                )
                cache.put(key, m)
            per_point[i].append(m)
        cache.save()
    return results_lib.make_results(
        codec.name,
        codec.description(),
        [{"quality": q} for q in qualities],
        names,
        per_point,
    )


def _parse_quality_overrides(items: Sequence[str] | None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for item in items or []:
        key, sep, values = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in CODECS:
            raise NLQError(
                f"--quality takes CODEC=Q1,Q2,... with CODEC in {', '.join(CODECS)}, got {item!r}"
            )
        try:
            out[key] = [int(v) for v in values.split(",") if v.strip()]
        except ValueError as e:
            raise NLQError(f"--quality {item!r}: qualities must be integers") from e
        if not out[key]:
            raise NLQError(f"--quality {item!r}: no quality values")
    return out


def add_arguments(parser: argparse.ArgumentParser, command: str) -> None:
    """Arguments of `nlq baselines`."""
    del command
    parser.add_argument(
        "--codec",
        default="jpeg,webp",
        help=f"comma-separated codecs among {','.join(CODECS)} (default: %(default)s)",
    )
    parser.add_argument("--data", required=True, help="folder of images (PNG, ...)")
    parser.add_argument("--out", required=True, help="output folder for <codec>.json")
    parser.add_argument(
        "--quality",
        action="append",
        metavar="CODEC=Q1,Q2,...",
        help="override a codec's quality ladder (repeatable); defaults: "
        + "; ".join(f"{k}: {','.join(map(str, c.qualities))}" for k, c in CODECS.items()),
    )
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images")
    parser.add_argument("--force", action="store_true", help="ignore cached measurements")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Runs the sweeps; writes one results file per codec."""
    codecs = parse_codecs(args.codec)
    overrides = _parse_quality_overrides(args.quality)
    unknown = set(overrides) - {c.key for c in codecs}
    if unknown:
        raise NLQError(
            f"--quality given for {', '.join(sorted(unknown))}, which --codec does not run"
        )
    paths = results_lib.list_images(args.data)
    if args.limit is not None:
        if args.limit < 1:
            raise NLQError("--limit must be at least 1")
        paths = paths[: args.limit]
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NLQError(f"cannot create output folder {os.fspath(out)!r}: {e.strerror or e}") from e
    for codec in codecs:
        cache = Cache(out / ".cache" / f"{codec.key}.json", reuse=not args.force)
        start = time.perf_counter()
        res = sweep(
            codec, paths, overrides.get(codec.key, codec.qualities), cache, not args.no_progress
        )
        target = out / f"{codec.key}.json"
        results_lib.write_json(target, res)
        seconds = time.perf_counter() - start
        size = f"{len(paths)} images x {len(res['points'])} qualities"
        print(f"{codec.name}: {size} in {seconds:.1f} s -> {target}")
    return 0
