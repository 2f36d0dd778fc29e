"""Non-local (self-attention) block, embedded-Gaussian form (Wang et al. 2018; paper Fig. 3)."""

import functools
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


def _split_queries(x, chunk: int):
  """(B, L, ...) → (L/chunk, B, chunk, ...), zero-padding L up to a multiple of `chunk`."""
  num_chunks = -(-x.shape[1] // chunk)
  pad = [(0, 0)] * x.ndim
  pad[1] = (0, num_chunks * chunk - x.shape[1])
  return einops.rearrange(jnp.pad(x, pad), "b (n c) ... -> n b c ...", c=chunk)


def _merge_queries(x, length: int):
  return einops.rearrange(x, "n b c ... -> b (n c) ...")[:, :length]


def attention_chunked(query, key, value, chunk_size: int = 128):
  """Same result as `attention_einsum`, holding at most a (chunk, L) slice of affinities.

  Queries are processed `chunk_size` at a time; neither direction ever stores the (L, L) matrix.
  The backward pass is written out (flash-attention style: it recomputes each chunk's probabilities
  from the saved log-sum-exp) rather than differentiating the forward loop, which would replay the
  max/exp/sum passes and their transposes over every (chunk, L) slice.
  """
  if jax.default_backend() == "cpu" and query.shape[0] > 1:
    # One image at a time on CPU: a (chunk, L) slice of one image stays in cache (8 MiB at chunk
    # 128, L = 128²), the batch's would not, and the attention is bound by those slices' traffic.
    # Measured at 128² on 2 cores: 0.60 s per image for fwd+bwd vs 0.91 s batched (chunk 64).
    return jax.lax.map(lambda qkv: _attention_chunked(*(x[None] for x in qkv), chunk_size)[0],
                       (query, key, value))
  return _attention_chunked(query, key, value, chunk_size)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _attention_chunked(query, key, value, chunk_size):
  return _chunked_forward(query, key, value, chunk_size)[0]


@jax.named_scope("non_local_attention")
def _chunked_forward(query, key, value, chunk_size):
  chunk = min(chunk_size, query.shape[1])

  def one_chunk(q_chunk):
    logits = jnp.einsum("bqd,bkd->bqk", q_chunk, key, preferred_element_type=jnp.float32)
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    unnormalised = jnp.exp(logits - row_max)
    denominator = jnp.sum(unnormalised, axis=-1, keepdims=True)
    out = jnp.einsum("bqk,bkd->bqd", unnormalised.astype(value.dtype), value,
                     preferred_element_type=jnp.float32)
    return (out / denominator).astype(value.dtype), (row_max + jnp.log(denominator))[..., 0]

  # Padded query rows are computed and dropped (their cotangent is zero); keys are never padded,
  # so every real row's softmax is exact.
  out, log_sum_exp = jax.lax.map(one_chunk, _split_queries(query, chunk))
  out = _merge_queries(out, query.shape[1])
  log_sum_exp = _merge_queries(log_sum_exp, query.shape[1])
  return out, (query, key, value, out, log_sum_exp)


# A custom VJP's backward carries no name stack of its own; the scope puts it in profiles.
@jax.named_scope("non_local_attention_backward")
def _chunked_backward(chunk_size, residuals, d_out):
  query, key, value, out, log_sum_exp = residuals
  dtypes = query.dtype, key.dtype, value.dtype
  length = query.shape[1]
  chunk = min(chunk_size, length)
  f32 = jnp.float32
  if jax.default_backend() == "cpu":
    # XLA:CPU has no bf16 × bf16 → f32 kernel for some of the products below; bf16 is for GPUs.
    query, key, value, d_out = (x.astype(f32) for x in (query, key, value, d_out))
  # dS = P ∘ (dP − δ) with δ_i = Σ_d dO_id O_id (the softmax Jacobian's row term).
  delta = jnp.sum(d_out.astype(f32) * out.astype(f32), axis=-1)
  chunks = (_split_queries(query, chunk), _split_queries(d_out, chunk),
            _split_queries(log_sum_exp, chunk), _split_queries(delta, chunk))
  # Each chunk's affinities are laid out (keys, queries): every product below then contracts a
  # minor dimension with a major one, the layout XLA:CPU's fast matmul paths take (the (queries,
  # keys) layout turns the dK and dV products into transposed ones that run ~5x slower there).
  key_t = jnp.swapaxes(key, 1, 2)

  def body(carry, xs):
    d_key, d_value = carry
    q_chunk, d_out_chunk, lse_chunk, delta_chunk = xs
    logits_t = jnp.einsum("bkd,bqd->bkq", key, q_chunk, preferred_element_type=f32)
    probs_t = jnp.exp(logits_t - lse_chunk[:, None, :])
    d_value = d_value + jnp.einsum("bkq,bqd->bkd", probs_t.astype(d_out.dtype), d_out_chunk,
                                   preferred_element_type=f32)
    d_probs_t = jnp.einsum("bkd,bqd->bkq", value, d_out_chunk, preferred_element_type=f32)
    d_logits_t = probs_t * (d_probs_t - delta_chunk[:, None, :])
    d_key = d_key + jnp.einsum("bkq,bqd->bkd", d_logits_t.astype(query.dtype), q_chunk,
                               preferred_element_type=f32)
    d_query_t = jnp.einsum("bdk,bkq->bdq", key_t, d_logits_t.astype(key.dtype),
                           preferred_element_type=f32)
    return (d_key, d_value), jnp.swapaxes(d_query_t, 1, 2).astype(query.dtype)

  zeros = lambda x: jnp.zeros(x.shape, f32)
  (d_key, d_value), d_query = jax.lax.scan(body, (zeros(key), zeros(value)), chunks)
  return (_merge_queries(d_query, length).astype(dtypes[0]), d_key.astype(dtypes[1]),
          d_value.astype(dtypes[2]))


_attention_chunked.defvjp(_chunked_forward, _chunked_backward)


def attention_cudnn(query, key, value):
  """cuDNN's fused (flash) attention through `jax.nn.dot_product_attention`: GPU, bf16/fp16 only."""
  out = jax.nn.dot_product_attention(query[:, :, None], key[:, :, None], value[:, :, None], scale=1.0,
                                     implementation="cudnn")
  return out[:, :, 0]


def _cudnn_applies(query) -> bool:
  return (jax.default_backend() == "gpu" and query.dtype in (jnp.bfloat16, jnp.float16)
          and query.shape[-1] % 8 == 0 and query.shape[-1] <= 128)


def dot_product_attention(query, key, value, impl: str = "einsum", chunk_size: int = 128):
  """Unscaled single-head attention as used by the non-local block, by implementation name."""
  if impl == "auto":
    if _cudnn_applies(query):
      impl = "cudnn"
    elif jax.default_backend() == "cpu":
      # On CPU the chunked path is the faster one as soon as there is more than one chunk (fwd+bwd,
      # batch 8: 1,024² positions 0.05 s vs 0.12 s, 4,096² 0.26 s vs 1.23 s); below that, a tie.
      impl = "chunked" if query.shape[1] > chunk_size else "einsum"
    else:
      # Elsewhere the (L, L) matrix is the faster form while it is small (below ~4k positions);
      # above that chunking bounds memory.
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
  chunk_size: int = 128
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
