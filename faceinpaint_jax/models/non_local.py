"""Non-local (self-attention) block, embedded-Gaussian form (Wang et al. 2018; paper Fig. 3)."""

from typing import Any

import chex
import einops
import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

IMPLS = ("einsum", "chunked", "cudnn", "auto")


def attention_einsum(query, key, value):
  """softmax(q kᵀ) v over all positions; materialises the (L, L) affinity matrix.

  query, key: (B, L, D); value: (B, L, Dv). The reference every other path is tested against.
  """
  logits = jnp.einsum("bqd,bkd->bqk", query, key, preferred_element_type=jnp.float32)
  # Softmax with the normalisation deferred to the (L, D) output: one pass fewer over the (L, L)
  # matrix than normalising the weights. The max is a constant for the gradient (softmax ignores it).
  logits = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
  unnormalised = jnp.exp(logits)
  denominator = jnp.sum(unnormalised, axis=-1, keepdims=True)
  out = jnp.einsum("bqk,bkd->bqd", unnormalised.astype(value.dtype), value,
                   preferred_element_type=jnp.float32)
  return (out / denominator).astype(value.dtype)


def attention_chunked(query, key, value, chunk_size: int = 512):
  """Same result as `attention_einsum`, holding at most a (chunk, L) slice of affinities.

  Queries are processed `chunk_size` at a time under `lax.map`; each chunk is rematerialised in
  the backward pass, so neither direction ever stores the full (L, L) matrix.
  """
  batch, length, depth = query.shape
  chunk = min(chunk_size, length)
  num_chunks = -(-length // chunk)
  padded = num_chunks * chunk
  # Padded query rows are computed and then dropped; keys are never padded, so the softmax is exact.
  q = jnp.pad(query, ((0, 0), (0, padded - length), (0, 0)))
  q = einops.rearrange(q, "b (n c) d -> n b c d", c=chunk)

  @jax.checkpoint
  def one_chunk(q_chunk):
    return attention_einsum(q_chunk, key, value)

  out = jax.lax.map(one_chunk, q)
  out = einops.rearrange(out, "n b c d -> b (n c) d")
  return out[:, :length]


def attention_cudnn(query, key, value):
  """cuDNN's fused (flash) attention through `jax.nn.dot_product_attention`: GPU, bf16/fp16 only."""
  out = jax.nn.dot_product_attention(query[:, :, None], key[:, :, None], value[:, :, None], scale=1.0,
                                     implementation="cudnn")
  return out[:, :, 0]


def _cudnn_applies(query) -> bool:
  return (jax.default_backend() == "gpu" and query.dtype in (jnp.bfloat16, jnp.float16)
          and query.shape[-1] % 8 == 0 and query.shape[-1] <= 128)


def dot_product_attention(query, key, value, impl: str = "einsum", chunk_size: int = 512):
  """Unscaled single-head attention as used by the non-local block, by implementation name."""
  if impl == "auto":
    # cuDNN's fused kernel where it applies; otherwise the (L, L) matrix is cheap below ~4k positions,
    # and above that chunking bounds memory.
    if _cudnn_applies(query):
      impl = "cudnn"
    else:
      impl = "einsum" if query.shape[1] * key.shape[1] <= 4096 * 4096 // 4 else "chunked"
  if impl == "cudnn":
    return attention_cudnn(query, key, value)
  if impl == "einsum":
    return attention_einsum(query, key, value)
  if impl == "chunked":
    return attention_chunked(query, key, value, chunk_size)
  raise ValueError(f"unknown non-local impl {impl!r}; choose one of {IMPLS}")


class NonLocalBlock(nn.Module):
  """y = x + W_z · softmax(θ(x) φ(x)ᵀ) g(x), with W_z zero-initialised so the block starts as identity."""
  bottleneck: int | None = None  # default C/2 (16 for C=32, as in Fig. 3)
  impl: str = "einsum"
  chunk_size: int = 512
  # Wang et al. §3.3's subsampling trick: max-pool φ and g by this factor, so each query attends to
  # (H/p)(W/p) positions. 1 (the default, and Fig. 3) attends to every position.
  kv_pool: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    chex.assert_rank(x, 4)
    batch, height, width, channels = x.shape
    inner = self.bottleneck or max(channels // 2, 1)
    conv1x1 = lambda f, name, **kw: nn.Conv(f, (1, 1), dtype=self.dtype, name=name, **kw)
    theta = conv1x1(inner, "theta")(x)
    # φ's bias only adds θ_i·b to every logit of row i, which the softmax cancels: a parameter with an
    # exactly-zero gradient that Adam would nudge on rounding noise. Leave it out.
    phi = conv1x1(inner, "phi", use_bias=False)(x)
    g = conv1x1(inner, "g")(x)
    if self.kv_pool > 1:
      pool = lambda t: nn.max_pool(t, (self.kv_pool,) * 2, strides=(self.kv_pool,) * 2, padding="SAME")
      phi, g = pool(phi), pool(g)
    flat = lambda t: einops.rearrange(t, "b h w c -> b (h w) c")
    y = dot_product_attention(flat(theta), flat(phi), flat(g), self.impl, self.chunk_size)
    y = einops.rearrange(y, "b (h w) c -> b h w c", h=height, w=width)
    z = conv1x1(channels, "out", kernel_init=nn.initializers.zeros)(y)
    out = x + z
    chex.assert_shape(out, (batch, height, width, channels))
    return out
