"""Networks of the paper as pure-functional Flax modules, built from a config."""

import jax.numpy as jnp

from faceinpaint_jax.models.discriminator import Discriminators
from faceinpaint_jax.models.generator import Generator, compose
from faceinpaint_jax.models.local_window import crop_local_window, local_window_offsets

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(config):
  name = config.model.dtype
  if name not in DTYPES:
    raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
  return DTYPES[name]


def build_generator(config) -> Generator:
  m = config.model
  return Generator(
      attention_steps=m.attention_steps, attention_features=m.attention_features,
      attention_resblocks=m.attention_resblocks, completion_width=m.completion_width,
      dilation_rates=tuple(m.dilation_rates), use_skips=m.use_skips, upsample=m.upsample,
      nonlocal_impl=m.nonlocal_impl, nonlocal_chunk=m.nonlocal_chunk,
      attention_kv_pool=m.attention_kv_pool, attention_downsample=m.get("attention_downsample", 1),
      attention_sampling=m.get("attention_sampling", "average"),
      attentive=m.get("attentive", True),
      attention_trained_by_completion=m.get("attention_trained_by_completion", True),
      use_non_local=m.get("non_local", True), norm=m.get("norm", "batch"), dtype=compute_dtype(config))


def build_discriminators(config) -> Discriminators:
  m = config.model
  return Discriminators(
      global_widths=tuple(m.disc_global_widths), global_non_local_after=m.disc_global_non_local_after,
      local_widths=tuple(m.disc_local_widths), local_non_local_after=m.disc_local_non_local_after,
      dense_features=m.disc_dense_features, spectral_norm=m.spectral_norm,
      use_batchnorm=m.disc_batchnorm, nonlocal_impl="einsum" if m.nonlocal_impl == "einsum" else "auto",
      dtype=compute_dtype(config))


def local_window_size(config) -> int:
  return int(round(config.data.image_size * config.data.local_window_fraction))


__all__ = ["Generator", "Discriminators", "compose", "crop_local_window", "local_window_offsets",
           "build_generator", "build_discriminators", "local_window_size", "compute_dtype"]
