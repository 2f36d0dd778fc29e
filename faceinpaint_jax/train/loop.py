"""The training loop of Algorithm 1: stage 1 (L_att + L_mse), then D and G steps with all losses.

Resumes from the newest checkpoint in WORKDIR/checkpoints that verifies against its digests (a failing
one is reported and moved aside); batches are a pure function of the step, so a resumed run continues bit
for bit. SIGTERM/SIGINT save the current step and return 0. The run holds WORKDIR's lock throughout.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

import jax
import numpy as np

from faceinpaint_jax import parallel
from faceinpaint_jax.checkpoint import Checkpointer, abstract_like
from faceinpaint_jax.data import InputPipeline
from faceinpaint_jax.train.state import initial_train_state
from faceinpaint_jax.train.steps import Steps
from faceinpaint_jax.train.workdir import WorkdirLock, remove_interrupted_saves
from faceinpaint_jax.visualize import image_grid, save_png

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_NONFINITE = 3
EXIT_SAVE_FAILED = 4


class TrainingStopped(RuntimeError):
  """Training cannot go on (e.g. too many non-finite updates in a row); the message is for the user."""


class SaveFailed(RuntimeError):
  """Writing a checkpoint failed (disk full, I/O error); the message is for the user."""


def _note(message: str):
  print(message, file=sys.stderr, flush=True)


class MetricsLogger:
  """metrics.jsonl + TensorBoard (tensorboardX) + progress bar or plain lines; process 0 only."""

  def __init__(self, workdir: str, total_steps: int, start_step: int):
    self.enabled = jax.process_index() == 0
    self.bar = None
    if not self.enabled:
      return
    from tensorboardX import SummaryWriter
    self.jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    self.writer = SummaryWriter(os.path.join(workdir, "tensorboard"))
    if sys.stderr.isatty():
      from tqdm import tqdm
      self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

  def scalars(self, step: int, values: dict):
    if not self.enabled:
      return
    self.jsonl.write(json.dumps(values) + "\n")
    self.jsonl.flush()
    for key, value in values.items():
      if isinstance(value, (int, float)) and key != "step":
        self.writer.add_scalar(key, value, step)
    short = {k: values[k] for k in ("g/total", "g/mse", "g/attention", "d/total", "images_per_sec")
             if k in values}
    text = " ".join(f"{k}={v:.4g}" for k, v in short.items())
    if self.bar is not None:
      self.bar.set_postfix_str(f"stage={values['stage']} {text}", refresh=False)
    else:
      print(f"step {step} stage {values['stage']} {text}", flush=True)

  def image(self, step: int, tag: str, grid: np.ndarray):
    if self.enabled:
      self.writer.add_image(tag, grid, step, dataformats="HWC")

  def advance(self, n: int = 1):
    if self.bar is not None:
      self.bar.update(n)

  def close(self):
    if self.enabled:
      if self.bar is not None:
        self.bar.close()
      self.writer.close()
      self.jsonl.close()


class _StopRequest:
  """SIGTERM/SIGINT set a flag; the loop saves and exits after the step in flight."""

  def __init__(self):
    self.requested = False
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      try:
        self._previous[sig] = signal.signal(sig, self._handle)
      except ValueError:  # not the main thread: signals stay with the caller
        pass
    return self

  def _handle(self, signum, frame):
    self.requested = True

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _mean_metrics(history: list[dict]) -> dict:
  host = jax.device_get(history)
  keys = {k for h in host for k in h}
  return {k: float(np.mean([h[k] for h in host if k in h])) for k in sorted(keys)}


def sample_grid(outputs: dict, batch: dict, rows: int = 4) -> np.ndarray:
  """Fig. 6: damaged input, A_1…A_N, completion, ground truth — one example per row."""
  # Without the attentive module (an ablation) the hole mask stands where A_1…A_N would.
  attention = (np.asarray(outputs["attention_maps"]) if outputs.get("attention_maps") is not None
               else np.asarray(batch["hole_mask"])[None])
  completed = np.asarray(outputs["completed"])
  panels = []
  for i in range(min(rows, completed.shape[0])):
    panels.append([batch["damaged"][i], *[a[i] for a in attention], completed[i], batch["image"][i]])
  return image_grid(panels)


def train_and_evaluate(config, workdir: str) -> int:
  """Train until config.train.steps; returns the process exit code.

  Raises WorkdirError (busy or unwritable workdir) before anything compiles, and CheckpointCorrupt when
  checkpoints are kept but none verifies.
  """
  parallel.check_batch_size(config.train.batch_size)
  lock = WorkdirLock(workdir) if jax.process_index() == 0 else None
  if lock is not None:
    lock.acquire(report=_note)
  try:
    return _train(config, workdir)
  finally:
    if lock is not None:
      lock.release()


def _train(config, workdir: str) -> int:
  if jax.process_index() == 0:
    remove_interrupted_saves(os.path.join(workdir, "checkpoints"), report=_note)
    with open(os.path.join(workdir, "config.json"), "w") as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))

  mesh = parallel.make_mesh()
  state_sharding, batch_sharding = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  parser_variables = None
  if config.loss.semantic > 0:
    from faceinpaint_jax.parser import load_parser_variables
    parser_variables = load_parser_variables(config.loss.parser_weights, config.data.cache_dir)
  steps = Steps(config, parser_variables).compile(state_sharding, batch_sharding)
  state = initial_train_state(config, jax.random.key(config.train.seed), state_sharding)

  checkpointer = Checkpointer(workdir, config.train.keep_checkpoints)
  start_step, restored, _ = checkpointer.restore_latest_intact(abstract_like(state, state_sharding),
                                                               report=_note)
  start_step = start_step or 0
  if start_step:
    state = restored
    log.info("resumed from %s at step %d", checkpointer.directory, start_step)
  total_steps = int(config.train.steps)
  if start_step >= total_steps:
    log.info("checkpoint at step %d already reaches train.steps=%d", start_step, total_steps)
    checkpointer.close()
    return EXIT_OK

  pipeline = InputPipeline(config, split="train", training=True)
  logger = MetricsLogger(workdir, total_steps, start_step)
  samples_dir = os.path.join(workdir, "samples")
  # cpu_seconds (the process's CPU time, all threads) beside the wall clock: on a VM whose hypervisor
  # steals time in bursts, wall seconds per step swing by a third for the same compute, CPU seconds by a
  # tenth (faceinpaint_jax.ablate --clock cpu plans from them).
  history, window_start, window_cpu, window_images = [], time.perf_counter(), time.process_time(), 0
  last_saved = start_step
  code = EXIT_OK

  def save(step_done: int):
    nonlocal last_saved
    if step_done != last_saved:
      try:
        checkpointer.save(step_done, state, {"step": step_done, "seed": int(config.train.seed)}, force=True)
      except Exception as e:  # orbax wraps the writer's OSError in its own types
        raise SaveFailed(_save_failed_message(checkpointer, step_done, e)) from None
      last_saved = step_done

  try:
    with _StopRequest() as stop:
      for step, local_batch in pipeline.iterate(start_step, total_steps):
        batch = parallel.global_batch(local_batch, mesh)
        stage2 = step >= config.train.stage1_steps
        state, metrics = steps.stage_step(state, batch, stage2)
        history.append(metrics)
        window_images += config.train.batch_size
        step_done = step + 1
        logger.advance()

        for network, name in (("g", "generator"), ("d", "discriminator")):
          in_a_row = int(metrics.get(f"{network}/nonfinite_in_a_row", 0))
          if in_a_row:
            log.warning("step %d: non-finite %s loss or gradient, %s update skipped (%d in a row)",
                        step, name, name, in_a_row)
          if in_a_row >= config.train.max_nonfinite_in_a_row:
            raise TrainingStopped(
                f"stopping: {in_a_row} non-finite {name} updates in a row at step {step}; the last good "
                f"checkpoint (step {checkpointer.latest_step()}) is intact — lower the learning rates "
                f"or enable train.grad_clip_norm")

        if step_done % config.train.log_every == 0 or step_done == total_steps:
          values = _mean_metrics(history)
          elapsed = time.perf_counter() - window_start
          values.update(step=step_done, stage=2 if stage2 else 1,
                        images_per_sec=window_images / max(elapsed, 1e-9),
                        cpu_seconds=time.process_time() - window_cpu)
          logger.scalars(step_done, values)
          history, window_start, window_cpu, window_images = [], time.perf_counter(), time.process_time(), 0

        if config.train.sample_every and step_done % config.train.sample_every == 0:
          grid = sample_grid(jax.device_get(steps.predict(state, batch)), local_batch)
          if jax.process_index() == 0:
            os.makedirs(samples_dir, exist_ok=True)
            save_png(grid, os.path.join(samples_dir, f"step_{step_done:07d}.png"))
            logger.image(step_done, "samples", grid)

        if step_done % config.train.checkpoint_every == 0 or step_done == total_steps:
          save(step_done)
        if stop.requested:
          log.warning("stop requested: saving step %d and exiting", step_done)
          save(step_done)
          break
  except TrainingStopped as e:
    print(f"error: {e}", file=sys.stderr)
    code = EXIT_NONFINITE
  except SaveFailed as e:
    print(f"error: {e}", file=sys.stderr)
    code = EXIT_SAVE_FAILED
  finally:
    pipeline.close()
    logger.close()
    try:
      checkpointer.close()  # waits for the last asynchronous save: its failure surfaces here
    except Exception as e:
      if code != EXIT_SAVE_FAILED:
        print(f"error: {_save_failed_message(checkpointer, last_saved, e)}", file=sys.stderr)
      code = EXIT_SAVE_FAILED
  return code


def _save_failed_message(checkpointer: Checkpointer, step: int, error: BaseException) -> str:
  cause = error
  while cause.__cause__ is not None or cause.__context__ is not None:  # the writer's own error
    cause = cause.__cause__ or cause.__context__
  try:
    checkpointer.manager.reload()
    kept = checkpointer.all_steps()
  except Exception:
    kept = []
  intact = f"step {kept[-1]}" if kept else "none"
  detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
  return (f"saving checkpoint step {step} failed ({type(cause).__name__}: {detail}); "
          f"the last good checkpoint ({intact}) is intact and the next run resumes from it")
