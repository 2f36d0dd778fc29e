"""A tiny configuration for tests: 32×32 images, a few channels; seconds per step on one CPU core."""

from faceinpaint_jax.config import base_config


def get_config():
  config = base_config()
  config.data.source = "sample"
  config.data.image_size = 32
  config.data.num_workers = 2
  config.model.attention_steps = 2
  config.model.attention_features = 4
  config.model.attention_resblocks = 1
  config.model.completion_width = 4
  config.model.dilation_rates = (2,)
  config.model.disc_global_widths = (4, 8, 8)
  config.model.disc_local_widths = (4, 8)
  config.model.disc_local_non_local_after = 1
  config.model.disc_dense_features = 8
  config.train.batch_size = 4
  config.train.steps = 4
  config.train.stage1_steps = 2
  config.train.checkpoint_every = 2
  config.train.log_every = 1
  config.train.sample_every = 0
  config.train.ema_decay = 0.9  # exercised (and checkpointed) in every training test
  config.loss.semantic = 0.0  # the face parser has tests of its own
  return config
