"""Small building blocks shared by the generator and the discriminators."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

Dtype = Any

LEAKY_SLOPE = 0.2


def leaky_relu(x):
  return nn.leaky_relu(x, negative_slope=LEAKY_SLOPE)


def batch_norm(train: bool, dtype: Dtype, name: str | None = None) -> nn.BatchNorm:
  # momentum 0.9 / eps 1e-5 match the TF-1 defaults the paper's code base used.
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, name=name)


class ConvBNAct(nn.Module):
  """conv → BatchNorm → LeakyReLU(0.2): the unit of every encoder/decoder stage."""
  features: int
  kernel_size: Sequence[int] = (3, 3)
  strides: int = 1
  dilation: int = 1
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(self.features, tuple(self.kernel_size), strides=self.strides,
                kernel_dilation=self.dilation, padding="SAME", use_bias=False,
                dtype=self.dtype)(x)
    x = batch_norm(train, self.dtype)(x)
    return leaky_relu(x)


class ResNetBlock(nn.Module):
  """Fig. 2: conv–BN–LeakyReLU–conv–BN plus identity skip."""
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)(x)
    y = leaky_relu(batch_norm(train, self.dtype)(y))
    y = nn.Conv(self.features, (3, 3), padding="SAME", use_bias=False, dtype=self.dtype)(y)
    y = batch_norm(train, self.dtype)(y)
    return x + y
