"""Evaluation: the same measurement for every codec, results files, plots and grids.

- `results`: the round-trip measurement (bpp from real bytes, RGB PSNR, MS-SSIM, times) and
  CompressAI's results format.
- `commands`: `nlq eval` over exported checkpoints.
- `baseline_commands`: `nlq baselines`, the same sweep over the classical codecs of
  `nlq_jax.baselines`.
- `plot`, `plot_commands`: RD plots and BD-rate tables (`nlq plot`).
- `grid`: reconstruction grids with zoomed crops (`nlq plot --grid`).
"""
