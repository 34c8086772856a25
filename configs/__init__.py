"""Training configs, one module per model (installed as `nlq_jax.configs`).

Each module's `get_config(arg)` returns a locked ConfigDict; `arg` selects a variant. Name one
by path (`--config=configs/hyperprior.py:quality=3`) or, from anywhere, by name
(`--config=hyperprior:quality=3`); see `nlq_jax.config_base.config_path`.
"""
