"""The paper's configuration: CelebA at 128×128, N=3 attentive steps, K=3 ResNet blocks, Fig. 4 widths.

  python launch.py --config configs/celeba128.py --workdir runs/celeba128 \
      --config.data.source=tfds:celeb_a
"""

from faceinpaint_jax.config import base_config


def get_config():
  config = base_config()
  config.data.source = "tfds:celeb_a"
  config.data.image_size = 128
  # The (HW)² matrix of the full-resolution attentive non-local block is 1 GiB per image at 128²:
  # "auto": cuDNN flash attention on GPUs in bf16; chunked wherever it is the faster (or the only
  # feasible) form, einsum where the (HW)² matrix is small and that is faster.
  config.model.nonlocal_impl = "auto"
  config.train.batch_size = 8
  config.train.steps = 1_200_000  # ≈ 60 epochs of CelebA train at batch 8 (§4.2)
  config.train.stage1_steps = 100_000
  config.train.checkpoint_every = 5000
  config.train.log_every = 100
  config.train.sample_every = 2000
  return config
