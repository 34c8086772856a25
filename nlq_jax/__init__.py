"""nlq_jax: neural image compression in JAX/Flax.

Learned transforms, quantization (scalar and codebook), learned entropy models, real entropy
coding to exactly decodable bitstreams, rate-distortion training and evaluation.
"""

__version__ = "0.1.0"
