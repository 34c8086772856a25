"""Classical codecs as rate-distortion baselines: JPEG, WebP, AVIF, JPEG XL, HEVC-intra.

`codecs` wraps each library as a quality-indexed round trip; `commands` is `nlq baselines`, which
sweeps qualities over an image folder and writes CompressAI-format results (cached per image).
"""
