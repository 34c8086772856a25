"""Classical codecs as rate-distortion baselines: JPEG, WebP, AVIF, JPEG XL, HEVC-intra.

`codecs` wraps each library as a quality-indexed round trip; nothing here measures or writes
results. `nlq baselines` (`nlq_jax.evaluation.baseline_commands`) sweeps their qualities over an
image folder and writes CompressAI-format results (cached per image).
"""
