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
    install_requires=[
        "jax>=0.4.35",
        "flax>=0.10",
        "optax>=0.2.3",
        "orbax-checkpoint>=0.9",
        "chex>=0.1.87",
        "ml-collections>=0.1.1",
        "absl-py>=2.0",
        "numpy>=1.26",
        "scipy>=1.11",
        "constriction>=0.4",
        "pillow>=11.2",
        "grain>=0.2.6",
        "tqdm>=4.66",
        "tensorboardX>=2.6",
        "matplotlib>=3.8",
        "scikit-image>=0.22",
        "scikit-learn>=1.3",
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
