"""Install nlq_jax: `pip install -e .[test]`."""

from setuptools import find_packages, setup

setup(
    name="nlq_jax",
    version="0.1.0",
    description="Neural image compression in JAX/Flax with exact bitstreams",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(include=["nlq_jax", "nlq_jax.*"]),
    install_requires=[
        "jax>=0.4.30",
        "flax>=0.10",
        "optax>=0.2",
        "orbax-checkpoint>=0.6",
        "chex>=0.1.86",
        "ml-collections>=0.1.1",
        "numpy>=1.26",
        "constriction>=0.4",
        "pillow>=10.1",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "hypothesis>=6",
            "scikit-image>=0.22",
            "ruff>=0.5",
        ],
        "data": [
            "grain>=0.2",
            "tensorflow-datasets>=4.9",
            "scikit-image>=0.22",
            "scikit-learn>=1.3",
            "matplotlib>=3.8",
            "tensorboardX>=2.6",
            "absl-py>=2",
        ],
        "baselines": [
            "imagecodecs>=2024.1",
            "pillow-heif>=0.16",
            "matplotlib>=3.8",
        ],
    },
    entry_points={"console_scripts": ["nlq = nlq_jax.cli:main"]},
)
