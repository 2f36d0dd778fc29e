"""Face completion with self-attention GANs (Liu, Li & Li, NPL 2019) in JAX/Flax."""

from faceinpaint_jax import xla_flags as _xla_flags

# Before anything imports jax and starts its backend (XLA reads XLA_FLAGS once, then).
_xla_flags.apply_cpu_defaults()

__version__ = "0.1.0"
