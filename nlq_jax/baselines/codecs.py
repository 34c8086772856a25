"""The codecs people actually use, through maintained libraries, as quality-indexed round trips.

| key  | codec                             | library       | quality parameter          |
| ---- | --------------------------------- | ------------- | -------------------------- |
| jpeg | JPEG (libjpeg-turbo, 4:2:0)       | Pillow        | `quality` 0–100            |
| webp | WebP (libwebp, lossy)             | Pillow        | `quality` 0–100            |
| avif | AVIF (libavif, 4:4:4)             | Pillow ≥ 11.2 | `quality` 0–100, `speed` 6 |
| jxl  | JPEG XL (libjxl, VarDCT)          | imagecodecs   | `level` 0–100 (→ distance) |
| hevc | HEVC-intra in HEIF (x265, 4:4:4)  | pillow-heif   | `quality` 0–100            |

JPEG and WebP are called exactly as CompressAI calls them (`Image.save(format, quality=q)` with
Pillow's defaults), so our curves can be checked against their published jpeg.json and
webp.json. HEVC-intra with 4:4:4 chroma and x265 is the BPG-like anchor (BPG is HEVC-intra in
its own small container; HEIF's container adds a few hundred bytes, which are counted). AVIF is
encoded in 4:4:4 like CompressAI's AV1 anchor, at speed 6 (libaom's slower speeds cost 3-20+ s
per Kodak image for 4-6 % BD-rate). AVIF and HEVC are tuned for PSNR, the metric the anchors
are compared in (see their `settings`). Encoders that take a thread count run on one thread, so that
times compare across machines.
"""

from __future__ import annotations

import abc
import hashlib
import io
import json
from collections.abc import Sequence

import numpy as np

from nlq_jax.errors import NLQError

_INSTALL_HINT = "install the baselines extra: pip install 'nlq_jax[baselines]'"


class Baseline(abc.ABC):
    """A codec with a quality knob: 8-bit RGB pixels -> complete file bytes -> pixels."""

    key: str = ""  # command-line name
    name: str = ""  # curve name in results files and legends
    qualities: tuple[int, ...] = ()  # the default sweep
    quality_range: tuple[int, int] = (0, 100)

    def settings(self) -> dict:
        """Encoder settings other than quality (recorded in results and in the cache key)."""
        return {}

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """The versions of the libraries doing the work."""

    def check_available(self) -> None:
        """Raises NLQError if the library or its encoder is missing."""
        self.versions()

    @abc.abstractmethod
    def encode(self, pixels: np.ndarray, quality: int) -> bytes:
        """Compresses uint8 HxWx3 pixels at `quality`; returns the whole file."""

    @abc.abstractmethod
    def decode(self, data: bytes) -> np.ndarray:
        """Decompresses a file to uint8 HxWx3 pixels."""

    def description(self) -> str:
        """Library versions and settings, for the results file."""
        versions = ", ".join(f"{k} {v}" for k, v in self.versions().items())
        settings = ", ".join(f"{k}={v}" for k, v in self.settings().items())
        return f"{self.name}. {versions}" + (f"; {settings}" if settings else "")

    def fingerprint(self) -> str:
        """A short hash of everything but quality and image that decides the output bytes."""
        blob = json.dumps([self.key, self.versions(), self.settings()], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def check_quality(self, quality: int) -> int:
        """Validates a quality value against the codec's range."""
        lo, hi = self.quality_range
        if int(quality) != quality or not lo <= quality <= hi:
            raise NLQError(f"{self.key}: quality must be an integer in {lo}..{hi}, got {quality}")
        return int(quality)


def _pillow_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


class _PillowBaseline(Baseline):
    fmt = ""
    feature = ""  # PIL.features name of the underlying library

    def versions(self) -> dict[str, str]:
        import PIL
        from PIL import features

        if not features.check(self.feature):
            raise NLQError(f"this Pillow ({PIL.__version__}) was built without {self.name}")
        lib = f"lib{self.feature}"
        version = features.version(self.feature)
        if self.feature == "jpg" and features.check_feature("libjpeg_turbo"):
            lib, version = "libjpeg-turbo", features.version_feature("libjpeg_turbo")
        return {"Pillow": PIL.__version__, lib: str(version)}

    def encode(self, pixels: np.ndarray, quality: int) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(
            buf, format=self.fmt, quality=int(quality), **self.settings()
        )
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)


class JPEG(_PillowBaseline):
    """JPEG through Pillow's libjpeg(-turbo), Pillow's defaults (4:2:0, standard tables)."""

    key, name, fmt, feature = "jpeg", "JPEG", "JPEG", "jpg"
    qualities = tuple(range(5, 100, 5))  # CompressAI's published sweep: 5, 10, ..., 95


class WebP(_PillowBaseline):
    """Lossy WebP through Pillow's libwebp, Pillow's defaults (method 4)."""

    key, name, fmt, feature = "webp", "WebP", "WEBP", "webp"
    qualities = tuple(range(5, 100, 5))  # CompressAI's published sweep: 5, 10, ..., 95


class AVIF(_PillowBaseline):
    """AVIF (AV1 intra) through Pillow's libavif, 4:4:4, speed 6, one thread."""

    key, name, fmt, feature = "avif", "AVIF", "AVIF", "avif"
    qualities = (10, 20, 30, 40, 50, 60, 70, 80, 90)

    def settings(self) -> dict:
        # libavif's aom tunes for SSIM by default; the anchors are compared in PSNR
        # (tune=psnr: -7 % BD-rate on Kodak at speed 6).
        return {"subsampling": "4:4:4", "speed": 6, "max_threads": 1, "advanced": {"tune": "psnr"}}


class JPEGXL(Baseline):
    """JPEG XL through imagecodecs' libjxl: quality `level` maps to a Butteraugli distance."""

    key, name = "jxl", "JPEG XL"
    qualities = (10, 20, 30, 40, 50, 60, 70, 80, 90, 95)

    def settings(self) -> dict:
        return {"effort": 7, "numthreads": 1}

    def versions(self) -> dict[str, str]:
        try:
            import imagecodecs
        except ImportError as e:
            raise NLQError(f"JPEG XL needs imagecodecs ({_INSTALL_HINT})") from e
        if not imagecodecs.JPEGXL.available:
            raise NLQError(f"this imagecodecs ({imagecodecs.__version__}) lacks JPEG XL")
        libjxl = str(imagecodecs.jpegxl_version()).removeprefix("libjxl").strip()
        return {"imagecodecs": imagecodecs.__version__, "libjxl": libjxl}

    def encode(self, pixels: np.ndarray, quality: int) -> bytes:
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(pixels, level=int(quality), **self.settings()))

    def decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        out = np.asarray(imagecodecs.jpegxl_decode(data, numthreads=1))
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=-1)
        return out[..., :3].astype(np.uint8, copy=False)


class HEVC(Baseline):
    """HEVC-intra (x265) in a HEIF file through pillow-heif, 4:4:4, BT.601 full range like BPG."""

    key, name = "hevc", "HEVC 4:4:4 (x265)"
    qualities = (5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55, 60)

    def settings(self) -> dict:
        # tile_size=0: one coded picture, not a grid of 512² tiles (tiles cost bits at edges).
        # libheif drives x265 in CRF mode with adaptive quantization and psycho-visual RD, which
        # trade PSNR for perceived sharpness; BPG codes at constant QP without them. Turning
        # them off is worth -11 % BD-rate (PSNR) on Kodak.
        x265 = {"x265:aq-mode": 0, "x265:psy-rd": 0, "x265:psy-rdoq": 0}
        return {"chroma": 444, "tile_size": 0, "enc_params": x265}

    def versions(self) -> dict[str, str]:
        try:
            import pillow_heif
        except ImportError as e:
            raise NLQError(f"HEVC needs pillow-heif ({_INSTALL_HINT})") from e
        info = pillow_heif.libheif_info()
        encoder = info.get("HEIF") or ""
        if "x265" not in encoder:
            raise NLQError(f"this pillow-heif ({pillow_heif.__version__}) has no x265 HEVC encoder")
        return {
            "pillow-heif": pillow_heif.__version__,
            "libheif": str(info.get("libheif")),
            "encoder": encoder,
        }

    def encode(self, pixels: np.ndarray, quality: int) -> bytes:
        import pillow_heif

        heif = pillow_heif.from_bytes("RGB", (pixels.shape[1], pixels.shape[0]), pixels.tobytes())
        buf = io.BytesIO()
        heif.save(buf, format="HEIF", quality=int(quality), **self.settings())
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        out = np.asarray(heif[0])
        if out.shape[-1] != 3:
            out = out[..., :3]
        return out.astype(np.uint8, copy=False)


CODECS: dict[str, type[Baseline]] = {c.key: c for c in (JPEG, WebP, AVIF, JPEGXL, HEVC)}


def get_codec(key: str) -> Baseline:
    """The baseline codec named `key` (jpeg, webp, avif, jxl, hevc), checked to be usable.

    Raises:
      NLQError: unknown name, or its library is missing.
    """
    cls = CODECS.get(key.strip().lower())
    if cls is None:
        raise NLQError(f"unknown codec {key!r}; choose from {', '.join(CODECS)}")
    codec = cls()
    codec.check_available()
    return codec


def parse_codecs(spec: str | Sequence[str]) -> list[Baseline]:
    """Codecs from "jpeg,webp" (or a list of such strings), in order, without duplicates."""
    parts = [spec] if isinstance(spec, str) else list(spec)
    keys: list[str] = []
    for part in parts:
        for key in part.split(","):
            key = key.strip().lower()
            if key and key not in keys:
                keys.append(key)
    if not keys:
        raise NLQError(f"no codec given; choose from {', '.join(CODECS)}")
    return [get_codec(k) for k in keys]
