"""BiSeNet face parser (the architecture of face-parsing.PyTorch's `79999_iter.pth`) in Flax, NHWC.

ResNet-18 context path with attention refinement modules at 1/16 and 1/32, a global-average context,
a feature fusion module at 1/8 (the 1/8 ResNet features stand in for the spatial path), an output head,
two auxiliary heads, and bilinear (align_corners) up-sampling to the input size. Module names mirror the
PyTorch state dict (`cp.resnet.layer1.0.conv1` ↔ `cp/resnet/layer1_0/conv1`), so weights load by rule.
Convolutions pad explicitly as PyTorch does (symmetric), which differs from "SAME" at stride 2.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

NUM_CLASSES = 19
CLASS_NAMES = ("background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear",
               "ear_r", "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat")
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
TRAINING_SIZE = 512


def normalize(images_01):
  """[0, 1] RGB → the ImageNet normalisation the parser was trained with."""
  return (images_01 - IMAGENET_MEAN) / IMAGENET_STD


def _conv(features, kernel, stride=1, name=None):
  pad = kernel // 2
  return nn.Conv(features, (kernel, kernel), strides=stride, padding=((pad, pad), (pad, pad)),
                 use_bias=False, name=name)


def _bn(train, name=None):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, name=name)


def _global_mean(x):
  return jnp.mean(x, axis=(1, 2), keepdims=True)


def resize_nearest(x, height, width):
  """PyTorch's `interpolate(mode='nearest')`: source index floor(i · in / out)."""
  rows = jnp.floor(jnp.arange(height) * (x.shape[1] / height)).astype(jnp.int32)
  cols = jnp.floor(jnp.arange(width) * (x.shape[2] / width)).astype(jnp.int32)
  return x[:, rows][:, :, cols]


def _align_corners_matrix(out_size, in_size):
  if in_size == 1 or out_size == 1:
    m = np.zeros((out_size, in_size), np.float32)
    m[:, 0] = 1.0
    return m
  src = np.arange(out_size, dtype=np.float64) * (in_size - 1) / (out_size - 1)
  lo = np.clip(np.floor(src).astype(np.int64), 0, in_size - 2)
  frac = src - lo
  m = np.zeros((out_size, in_size), np.float64)
  m[np.arange(out_size), lo] = 1 - frac
  m[np.arange(out_size), lo + 1] += frac
  return m.astype(np.float32)


def resize_bilinear_align_corners(x, height, width):
  """PyTorch's `interpolate(mode='bilinear', align_corners=True)`, as two small matrix products."""
  rows = jnp.asarray(_align_corners_matrix(height, x.shape[1]))
  cols = jnp.asarray(_align_corners_matrix(width, x.shape[2]))
  x = jnp.einsum("oh,bhwc->bowc", rows, x, precision=jax.lax.Precision.HIGHEST)
  return jnp.einsum("pw,bowc->bopc", cols, x, precision=jax.lax.Precision.HIGHEST)


class ConvBNReLU(nn.Module):
  features: int
  kernel: int = 3
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    x = _conv(self.features, self.kernel, self.stride, name="conv")(x)
    return nn.relu(_bn(train, name="bn")(x))


class BasicBlock(nn.Module):
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, train: bool):
    residual = nn.relu(_bn(train, "bn1")(_conv(self.features, 3, self.stride, "conv1")(x)))
    residual = _bn(train, "bn2")(_conv(self.features, 3, 1, "conv2")(residual))
    shortcut = x
    if x.shape[-1] != self.features or self.stride != 1:
      shortcut = _bn(train, "downsample_1")(_conv(self.features, 1, self.stride, "downsample_0")(x))
    return nn.relu(shortcut + residual)


class Resnet18(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.relu(_bn(train, "bn1")(_conv(64, 7, 2, "conv1")(x)))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    features = []
    for layer, (width, stride) in enumerate([(64, 1), (128, 2), (256, 2), (512, 2)], start=1):
      for block in range(2):
        x = BasicBlock(width, stride if block == 0 else 1, name=f"layer{layer}_{block}")(x, train)
      features.append(x)
    return features[1], features[2], features[3]  # 1/8, 1/16, 1/32


class AttentionRefinementModule(nn.Module):
  features: int

  @nn.compact
  def __call__(self, x, train: bool):
    feat = ConvBNReLU(self.features, name="conv")(x, train)
    attention = nn.Conv(self.features, (1, 1), use_bias=False, name="conv_atten")(_global_mean(feat))
    attention = nn.sigmoid(_bn(train, "bn_atten")(attention))
    return feat * attention


class ContextPath(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    feat8, feat16, feat32 = Resnet18(name="resnet")(x, train)
    context = ConvBNReLU(128, kernel=1, name="conv_avg")(_global_mean(feat32), train)
    feat32_sum = AttentionRefinementModule(128, name="arm32")(feat32, train) + context
    feat32_up = resize_nearest(feat32_sum, feat16.shape[1], feat16.shape[2])
    feat32_up = ConvBNReLU(128, name="conv_head32")(feat32_up, train)
    feat16_sum = AttentionRefinementModule(128, name="arm16")(feat16, train) + feat32_up
    feat16_up = resize_nearest(feat16_sum, feat8.shape[1], feat8.shape[2])
    feat16_up = ConvBNReLU(128, name="conv_head16")(feat16_up, train)
    return feat8, feat16_up, feat32_up


class FeatureFusionModule(nn.Module):
  features: int = 256

  @nn.compact
  def __call__(self, spatial, context, train: bool):
    feat = ConvBNReLU(self.features, kernel=1, name="convblk")(
        jnp.concatenate([spatial, context], axis=-1), train)
    attention = nn.relu(nn.Conv(self.features // 4, (1, 1), use_bias=False, name="conv1")(_global_mean(feat)))
    attention = nn.sigmoid(nn.Conv(self.features, (1, 1), use_bias=False, name="conv2")(attention))
    return feat * attention + feat


class BiSeNetOutput(nn.Module):
  mid_features: int
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, x, train: bool):
    x = ConvBNReLU(self.mid_features, name="conv")(x, train)
    return nn.Conv(self.num_classes, (1, 1), use_bias=False, name="conv_out")(x)


class BiSeNet(nn.Module):
  """(B, H, W, 3) ImageNet-normalised RGB → (B, H, W, num_classes) logits (and two auxiliary heads)."""
  num_classes: int = NUM_CLASSES

  @nn.compact
  def __call__(self, images, train: bool = False, return_aux: bool = False):
    height, width = images.shape[1:3]
    feat8, feat_cp8, feat_cp16 = ContextPath(name="cp")(images, train)
    fused = FeatureFusionModule(256, name="ffm")(feat8, feat_cp8, train)
    logits = BiSeNetOutput(256, self.num_classes, name="conv_out")(fused, train)
    logits = resize_bilinear_align_corners(logits, height, width)
    if not return_aux:
      return logits
    aux16 = BiSeNetOutput(64, self.num_classes, name="conv_out16")(feat_cp8, train)
    aux32 = BiSeNetOutput(64, self.num_classes, name="conv_out32")(feat_cp16, train)
    return (logits, resize_bilinear_align_corners(aux16, height, width),
            resize_bilinear_align_corners(aux32, height, width))


def torch_to_flax(state_dict: dict) -> dict:
  """face-parsing.PyTorch state dict → {"params": …, "batch_stats": …} for `BiSeNet`."""
  params, stats = {}, {}

  def put(tree, path, value):
    for part in path[:-1]:
      tree = tree.setdefault(part, {})
    if path[-1] in tree:
      raise ValueError(f"duplicate parameter {'/'.join(path)}")
    tree[path[-1]] = value

  for key, value in state_dict.items():
    parts = key.split(".")
    path = []
    for part in parts[:-1]:
      if part.isdigit() and path:
        path[-1] = f"{path[-1]}_{part}"
      else:
        path.append(part)
    leaf = parts[-1]
    value = np.asarray(value)
    if leaf == "num_batches_tracked":
      continue
    if leaf == "weight" and value.ndim == 4:
      put(params, path + ["kernel"], np.transpose(value, (2, 3, 1, 0)).astype(np.float32))  # OIHW→HWIO
    elif leaf == "weight":
      put(params, path + ["scale"], value.astype(np.float32))
    elif leaf == "bias":
      put(params, path + ["bias"], value.astype(np.float32))
    elif leaf == "running_mean":
      put(stats, path + ["mean"], value.astype(np.float32))
    elif leaf == "running_var":
      put(stats, path + ["var"], value.astype(np.float32))
    else:
      raise ValueError(f"unexpected parameter {key}")
  return {"params": params, "batch_stats": stats}
