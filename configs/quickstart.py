"""Train a small but useful model on the 999 bundled CelebA sample faces at 64×64 on a laptop CPU.

  python launch.py --config configs/quickstart.py --workdir runs/quickstart
"""

from faceinpaint_jax.config import base_config


def get_config():
  config = base_config()
  config.data.source = "sample"
  config.data.image_size = 64
  config.model.attention_features = 16
  config.model.attention_resblocks = 1
  # The attentive module's non-local block sees all 64² positions; pooling its keys/values 4×4 cuts
  # its cost (which is most of the step on a CPU) 16-fold while every query still sees the whole face.
  config.model.attention_kv_pool = 4
  config.model.completion_width = 16
  config.model.dilation_rates = (2, 4, 8)
  # Nearest resize + conv: fewer parameters than the 4×4 transposed conv at these widths; the figures
  # in the README were measured with it.
  config.model.upsample = "resize_conv"
  config.model.disc_global_widths = (16, 32, 64, 64)
  config.model.disc_local_widths = (16, 32, 64)
  config.model.disc_local_non_local_after = 2
  config.model.disc_dense_features = 128
  config.train.batch_size = 16
  # ≈ 1.05 s per stage-1 step and 2.1 s per stage-2 step (0.65 s of it L_sem's face parser at 128²)
  # on 2 CPU cores: about 14 minutes in all.
  config.train.steps = 580
  config.train.stage1_steps = 380
  config.train.g_learning_rate = 2e-3
  config.train.d_learning_rate = 2e-4
  # Cosine decay to 0: the stage-2 losses arrive at a quarter of the peak rate (a smaller shock to a
  # short run), and the BatchNorm running statistics settle on the final weights.
  config.train.schedule = "cosine"
  config.train.warmup_steps = 20
  config.train.decay_steps = 580  # fixed, so `--config.train.steps=N` runs share one schedule
  config.train.checkpoint_every = 100
  config.train.log_every = 20
  config.train.sample_every = 100
  return config
