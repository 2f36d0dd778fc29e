"""Train a small but useful model on the 999 bundled CelebA sample faces at 64×64 on a laptop CPU.

  python launch.py --config configs/quickstart.py --workdir runs/quickstart

Every component of the paper is on (attentive module with its non-local block and ConvLSTM, the
completion network's non-local blocks and multi-scale heads, both discriminators, L_sem); the choices
below are training-recipe choices for a 15-minute CPU budget, each measured in docs/RESULTS.md.
"""

from faceinpaint_jax.config import base_config


def get_config():
  config = base_config()
  config.data.source = "sample"
  config.data.image_size = 64
  config.model.attention_features = 16
  config.model.attention_resblocks = 1
  # The attentive module finds the hole on the image pooled 2× (32²) and its maps are resized back:
  # a quarter of its cost, which at full resolution was most of a stage-1 step on a CPU.
  config.model.attention_downsample = 2
  config.model.attention_kv_pool = 2
  config.model.completion_width = 16
  config.model.dilation_rates = (2, 4, 8)
  config.model.upsample = "bilinear"  # no stripes (transposed conv) or blocks (nearest): see Upsample2x
  # No BatchNorm in the generator: its running statistics lag a fast-moving small model, so eval-mode
  # outputs differed from train-mode ones; without it train and eval compute the same function.
  config.model.norm = "none"
  config.model.disc_global_widths = (16, 32, 64, 64)
  config.model.disc_local_widths = (16, 32, 64)
  config.model.disc_local_non_local_after = 2
  config.model.disc_dense_features = 128
  config.loss.semantic_images = 4  # the 128² face parser on 4 of the 16 faces per step
  config.train.batch_size = 16
  config.train.steps = 1800
  config.train.stage1_steps = 1250
  config.train.g_learning_rate = 1e-3
  config.train.d_learning_rate = 2e-4
  config.train.b1 = 0.9
  config.train.ema_decay = 0.99
  config.train.schedule = "cosine"
  config.train.warmup_steps = 20
  config.train.decay_steps = 1800  # fixed, so `--config.train.steps=N` runs share one schedule
  config.train.checkpoint_every = 250
  config.train.log_every = 50
  config.train.sample_every = 250
  return config
