"""Install nlq_jax: `pip install -e .[test]`."""

from setuptools import find_packages, setup

setup(
    name="nlq_jax",
    version="0.1.0",
    description="Neural image compression in JAX/Flax with exact bitstreams",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # configs/ installs as nlq_jax.configs, so `--config=hyperprior:quality=3` works from a wheel.
    packages=[*find_packages(include=["nlq_jax", "nlq_jax.*"]), "nlq_jax.configs"],
    package_dir={"nlq_jax.configs": "configs"},
    # The shipped model's export (weights, coding tables, model card): see nlq_jax/pretrained.
    # The published Kodak curves (anchors/): see nlq_jax/evaluation/anchors.py.
    package_data={
        "nlq_jax.pretrained": ["default/*", "default/*/*", "default/*/*/*", "default/*/*/*/*"],
        "nlq_jax": ["anchors/README.md", "anchors/compressai_kodak/*.json"],
    },
    # Lower bounds are the oldest versions the tests were run against (2026-12-02: the codec,
    # entropy, training-resume, CLI and plot tests passed with every package at its bound).
    # With jax 0.10.0 the bit-exactness tests fail (decoder vs eval forward differ by ≈1e-7);
    # 0.10.1 was not tried.
    install_requires=[
        "jax>=0.10.2",
        "jaxlib>=0.10.2",
        "flax>=0.12.0",
        "optax>=0.2.5",
        "orbax-checkpoint>=0.12.0",
        "chex>=0.1.90",
        "ml-collections>=1.0.0",
        "absl-py>=2.3.1",
        "numpy>=2.0.2",
        "scipy>=1.14.1",
        "constriction>=0.4.0",
        "pillow>=11.2.1",
        "grain>=0.2.12",
        "tqdm>=4.66.1",
        "tensorboardX>=2.6.2.2",
        "matplotlib>=3.8.4",
        "scikit-image>=0.24.0",
        "scikit-learn>=1.5.0",
    ],
    extras_require={
        # Datasets: TFDS data sources (ArrayRecord; no TensorFlow needed to read them).
        "data": ["tensorflow-datasets>=4.9.6"],
        # Preparing TFDS datasets (`tfds build`) needs TensorFlow; reading them does not.
        "prepare": ["tensorflow-datasets>=4.9.6", "tensorflow-cpu>=2.16"],
        # JPEG XL and HEVC-intra anchors (JPEG, WebP and AVIF come with Pillow).
        "baselines": ["imagecodecs>=2024.1.1", "pillow-heif>=0.16"],
        # Everything the test suite exercises.
        "test": [
            "pytest>=8",
            # The suite runs in parallel worker processes (tests/pytest.ini: -n auto).
            "pytest-xdist>=3.5",
            "hypothesis>=6",
            "ruff>=0.5",
            "tensorflow-datasets>=4.9.6",
            "imagecodecs>=2024.1.1",
            "pillow-heif>=0.16",
            # tests/test_notebooks.py executes colab/*.ipynb in a kernel of this interpreter.
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
    entry_points={"console_scripts": ["nlq = nlq_jax.cli:main"]},
)
