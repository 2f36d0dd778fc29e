"""Face completion with self-attention GANs (Liu, Li & Li, NPL 2019) in JAX/Flax."""

__version__ = "0.1.0"
