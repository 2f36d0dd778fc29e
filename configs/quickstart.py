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
  # 8 channels are plenty to find a hole; the ConvLSTM's gate conv (2C → 4C channels) dominates the
  # module's cost, so halving C quarters it.
  config.model.attention_features = 8
  config.model.attention_resblocks = 1
  # The attentive module finds the hole on the image pooled 4× (16²) and its maps are resized back:
  # a sixteenth of its cost, which at full resolution was most of a stage-1 step on a CPU (IoU 0.99
  # at 2× and at 4×; stage 1 0.31 → 0.23 s per iteration, docs/RESULTS.md).
  config.model.attention_downsample = 4
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
  # Spectral normalisation keeps the discriminators from overpowering the generator within a few
  # hundred steps (without it, L_adv grew 1.6 → 7.2 over stage 2 and the hole MSE rose by half).
  config.model.spectral_norm = True
  # L_sem at a tenth of the paper's default weight: at weight 1 its cross-entropy (≈ 0.7, mostly the
  # parser's own uncertainty on upscaled 64² faces) outweighed L_mse (≈ 0.07) ten to one and cost
  # 0.7 dB of hole PSNR in 400 steps (docs/RESULTS.md).
  config.loss.semantic = 0.1
  config.loss.semantic_images = 2  # the 128² face parser on 2 of the 16 faces per step
  config.train.batch_size = 16
  config.train.steps = 2800
  # 500 stage-2 steps: the first few hundred bring LPIPS down (0.130 → 0.117 over 400 steps), after that
  # the discriminators pull ahead and every metric degrades (a 2,800-step run with 840 stage-2 steps
  # ended at 16.78 dB / 0.1238; docs/RESULTS.md).
  config.train.stage1_steps = 2300
  # Stage 2's losses arrive over 100 steps instead of at once: switched on at full weight they
  # raised the hole MSE from 0.077 to 0.130 in the first 50 steps.
  config.train.stage2_rampup_steps = 100
  config.train.g_learning_rate = 3e-3  # the best of {5e-4 constant, 1e-3, 3e-3} for the baseline
  config.train.d_learning_rate = 2e-4
  config.train.b1 = 0.9  # β1 = 0.5 is a GAN habit; the generator trains on L_mse alone for 80 % of the run
  config.train.d_b1 = 0.5
  config.train.ema_decay = 0.99
  config.train.schedule = "cosine"
  config.train.warmup_steps = 20
  config.train.decay_steps = 2800  # fixed, so `--config.train.steps=N` runs share one schedule
  config.train.checkpoint_every = 400
  config.train.log_every = 50
  config.train.sample_every = 400
  return config
