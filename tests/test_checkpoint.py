"""Checkpoints that can be trusted: digests verified on restore, one run per workdir, and faults injected
into training (corrupted files, kill -9 at random moments and during a save, a writer that fails).

Every faulty run must end bitwise equal to one straight run of the same config (`straight` below).
"""

import errno
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from faceinpaint_jax import checkpoint
from faceinpaint_jax.checkpoint import CheckpointCorrupt, array_digests, load_generator, load_raw
from faceinpaint_jax.config import load_config_file
from faceinpaint_jax.train import loop
from faceinpaint_jax.train.loop import train_and_evaluate
from faceinpaint_jax.train.workdir import WorkdirError, WorkdirLock, remove_interrupted_saves

REPO = pathlib.Path(__file__).resolve().parent.parent
TINY = str(REPO / "configs" / "tiny.py")
# Eight steps across the stage switch, a checkpoint after every step, all of them kept.
TRAIN = dict(steps=8, stage1_steps=3, checkpoint_every=1, keep_checkpoints=10)


def _config(**train):
  config = load_config_file(TINY)
  for key, value in {**TRAIN, **train}.items():
    config.train[key] = value
  return config


def _launch_args(workdir, **train) -> list[str]:
  return [sys.executable, str(REPO / "launch.py"), f"--config={TINY}", f"--workdir={workdir}",
          *[f"--config.train.{k}={v}" for k, v in {**TRAIN, **train}.items()]]


def _assert_same_digests(workdir, reference: dict):
  state, meta = load_raw(str(workdir))
  assert meta["step"] == TRAIN["steps"]
  digests = array_digests(state)
  differing = [k for k in reference if digests[k] != reference[k]]
  assert digests.keys() == reference.keys() and not differing, differing[:3]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory) -> str:
  """The workdir of one uninterrupted run."""
  workdir = tmp_path_factory.mktemp("straight")
  assert train_and_evaluate(_config(), str(workdir)) == 0
  return str(workdir)


@pytest.fixture(scope="module")
def straight(straight_run) -> dict:
  """Digests of every array after one uninterrupted run."""
  state, _ = load_raw(straight_run)
  return array_digests(state)


def _flip_a_byte_of(workdir, step: int, wanted) -> list[str]:
  """Flip one byte of a data file of step `step` so that an array whose name satisfies `wanted` reads
  back differently; the names of the arrays that now read back differently.

  Where each array lands inside OCDBT's data files differs from run to run (the writes are concurrent),
  so positions spread over every file are tried until one changes only arrays the test wants."""
  reference = array_digests(load_raw(str(workdir), step)[0])
  root = pathlib.Path(workdir) / "checkpoints" / str(step) / "state"
  files = sorted((p for p in root.rglob("*") if p.is_file() and p.parent.name == "d"),
                 key=lambda p: -p.stat().st_size)
  for path in files:
    original = path.read_bytes()
    for position in (len(original) * k // 16 for k in (8, 4, 12, 2, 6, 10, 14, 1, 3, 5, 7, 9, 11, 13, 15)):
      flipped = bytearray(original)
      flipped[position] ^= 0xFF
      path.write_bytes(bytes(flipped))
      try:
        digests = array_digests(load_raw(str(workdir), step, verify=False)[0])
        changed = [name for name in reference if digests[name] != reference[name]]
      except CheckpointCorrupt:
        changed = []
      if changed and all(wanted(name) for name in changed):
        return changed
      path.write_bytes(original)
  pytest.fail(f"no byte of step {step}'s data files holds only arrays the test wants")


@pytest.mark.slow
def test_flipped_bytes_in_weights_and_adam_moments_are_caught_and_training_resumes_bitwise(
    tmp_path, straight, capsys):
  workdir = tmp_path / "run"
  assert train_and_evaluate(_config(steps=3), str(workdir)) == 0
  changed = _flip_a_byte_of(workdir, 3, lambda name: name.startswith("g_params/"))
  assert changed and all(name.startswith("g_params/") for name in changed)

  # Evaluation and inpainting refuse it in one line naming the step and the alternative.
  with pytest.raises(CheckpointCorrupt) as refused:
    load_generator(str(workdir))
  assert "step 3: g_params/" in str(refused.value) and "--step 2 is the newest intact one" in str(refused.value)
  assert "\n" not in str(refused.value)
  _, variables, step = load_generator(str(workdir), 2)
  assert step == 2
  from faceinpaint_jax import evaluate, inpaint
  capsys.readouterr()
  assert evaluate.main(["--workdir", str(workdir), "--out", str(tmp_path / "eval")]) == 2
  from PIL import Image
  Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "photo.png")
  assert inpaint.main(["--workdir", str(workdir), "--input", str(tmp_path / "photo.png"),
                       "--output", str(tmp_path / "out.png")]) == 2
  errors = capsys.readouterr().err.splitlines()
  assert len(errors) == 2 and all(e.startswith("error: checkpoint step 3: g_params/") for e in errors), errors
  assert not (tmp_path / "out.png").exists()
  assert checkpoint.main(["verify", str(workdir)]) == 1
  report = capsys.readouterr().out
  assert "step 2: ok" in report and "step 3: FAILED" in report

  # Training reports it, sets it aside and resumes from step 2.
  assert train_and_evaluate(_config(steps=4), str(workdir)) == 0
  err = capsys.readouterr().err
  assert "warning: checkpoint step 3: g_params/" in err and "trying the previous one" in err
  assert (workdir / "checkpoints_corrupt" / "3").is_dir()
  assert load_raw(str(workdir))[1]["step"] == 4

  # An Adam moment of either network.
  changed = _flip_a_byte_of(workdir, 4, lambda name: "_opt_state/" in name and ("/mu/" in name or "/nu/" in name))
  assert train_and_evaluate(_config(), str(workdir)) == 0
  assert f"warning: checkpoint step 4: {changed[0]}" in capsys.readouterr().err
  _assert_same_digests(workdir, straight)
  assert checkpoint.main(["verify", str(workdir)]) == 0


@pytest.mark.slow
def test_compare_says_whether_two_runs_are_bit_for_bit_equal(tmp_path, straight_run, capsys):
  """`checkpoint compare`: a resumed run equals the straight one; one last-bit change is named."""
  resumed = tmp_path / "resumed"
  assert train_and_evaluate(_config(steps=5), str(resumed)) == 0
  capsys.readouterr()
  assert checkpoint.main(["compare", str(resumed), straight_run]) == 1
  assert "latest steps differ" in capsys.readouterr().out
  assert checkpoint.main(["compare", "--step", "5", str(resumed), straight_run]) == 0
  arrays = len(jax.tree_util.tree_leaves(load_raw(straight_run)[0]))
  assert capsys.readouterr().out.strip() == f"step 5: all {arrays} arrays bit-for-bit equal"
  assert train_and_evaluate(_config(), str(resumed)) == 0
  capsys.readouterr()
  assert checkpoint.main(["compare", str(resumed), straight_run]) == 0
  assert capsys.readouterr().out.strip() == f"step 8: all {arrays} arrays bit-for-bit equal"

  # The straight run's state with the last bit of one weight changed, saved with its own digests: it
  # verifies, and compare names that array and no other.
  state, meta = load_raw(straight_run)
  kernel = state["g_params"]["completion"]["rgb_full"]["Conv_0"]["kernel"]
  changed = np.array(kernel)
  changed.flat[0] = np.nextafter(changed.flat[0], np.float32(np.inf))
  state["g_params"]["completion"]["rgb_full"]["Conv_0"]["kernel"] = changed
  writer = checkpoint.Checkpointer(str(tmp_path / "changed"), keep=1)
  writer.save(8, state, {k: v for k, v in meta.items() if k != "digests"})
  writer.close()
  assert checkpoint.main(["compare", str(tmp_path / "changed"), straight_run]) == 1
  assert capsys.readouterr().out.strip() == (
      f"step 8: 1 of {arrays} arrays differ: g_params/completion/rgb_full/Conv_0/kernel")

  # A user's mistakes: one line on stderr, exit 2.
  assert checkpoint.main(["compare", straight_run, str(tmp_path / "nowhere")]) == 2
  assert checkpoint.main(["compare", "--step", "6", str(tmp_path / "changed"), straight_run]) == 2
  errors = capsys.readouterr().err.splitlines()
  assert errors == [f"error: no such workdir: {tmp_path / 'nowhere'}",
                    f"error: no checkpoint for step 6 in {tmp_path / 'changed'} (kept: 8)"], errors


def test_no_intact_checkpoint_refuses_to_start_over(tmp_path, monkeypatch):
  """Kept checkpoints of which none verifies: the run stops instead of silently starting from step 0."""
  workdir = tmp_path / "run"
  assert train_and_evaluate(_config(steps=1), str(workdir)) == 0
  state, meta = load_raw(str(workdir))
  monkeypatch.setattr(checkpoint, "verify_digests",
                      lambda *a: (_ for _ in ()).throw(CheckpointCorrupt("step 1: g_params/x differ")))
  with pytest.raises(CheckpointCorrupt, match="no kept checkpoint verifies"):
    train_and_evaluate(_config(steps=2), str(workdir))


def test_digest_names_the_array_and_sees_dtype_and_shape():
  state = {"g_params": {"w": np.arange(6, dtype=np.float32)}, "rng": jax.random.key(0)}
  digests = array_digests(state)
  assert set(digests) == {"g_params/w", "rng"}
  flipped = {"g_params": {"w": np.arange(6, dtype=np.float32)}, "rng": jax.random.key(1)}
  assert array_digests(flipped)["rng"] != digests["rng"]  # typed PRNG keys by their key data
  same_bytes = {"g_params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, "rng": jax.random.key(0)}
  assert array_digests(same_bytes)["g_params/w"] != digests["g_params/w"]
  with pytest.raises(CheckpointCorrupt, match="step 7: g_params/w differ"):
    checkpoint.verify_digests(same_bytes, {"digests": digests}, 7)


def test_workdir_lock_is_exclusive_names_its_holder_and_takes_over_a_dead_ones(tmp_path):
  lock_path = tmp_path / "train.lock"
  lock_path.write_text("pid 999999 on gone-host since 2026-01-01T00:00:00+00:00")  # a crashed run's
  notes = []
  first = WorkdirLock(str(tmp_path))
  first.acquire(report=notes.append)
  assert len(notes) == 1 and "taking over" in notes[0] and "pid 999999 on gone-host" in notes[0]
  assert lock_path.read_text().startswith(f"pid {os.getpid()} on ")
  with pytest.raises(WorkdirError, match=f"in use by another training run \\(pid {os.getpid()} on "):
    WorkdirLock(str(tmp_path)).acquire()
  first.release()
  assert lock_path.read_text() == ""
  notes.clear()
  with WorkdirLock(str(tmp_path)):  # released cleanly: no takeover note
    pass
  assert not notes


def test_unwritable_workdir_fails_in_one_line_before_compiling(tmp_path, monkeypatch):
  (tmp_path / "a_file").write_text("")
  monkeypatch.setattr(loop.Steps, "compile", lambda *a: pytest.fail("compiled before checking the workdir"))
  with pytest.raises(WorkdirError, match="cannot use .*a_file/run as the workdir"):
    train_and_evaluate(_config(), str(tmp_path / "a_file" / "run"))
  result = subprocess.run(_launch_args(tmp_path / "a_file" / "run"), capture_output=True, text=True, cwd=REPO)
  assert result.returncode == 2
  assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error: cannot use ")


def test_interrupted_save_leftovers_are_removed(tmp_path):
  (tmp_path / "7.orbax-checkpoint-tmp-123").mkdir()
  (tmp_path / "7.orbax-checkpoint-tmp-123" / "junk").write_text("x")
  (tmp_path / "6").mkdir()
  notes = []
  removed = remove_interrupted_saves(str(tmp_path), report=notes.append)
  assert [os.path.basename(p) for p in removed] == ["7.orbax-checkpoint-tmp-123"]
  assert sorted(os.listdir(tmp_path)) == ["6"] and "removed 1 unfinished" in notes[0]


def _wait_for(predicate, timeout: float, what: str):
  deadline = time.monotonic() + timeout
  while not predicate():
    if time.monotonic() > deadline:
      pytest.fail(f"timed out waiting for {what}")
    time.sleep(0.05)


@pytest.mark.slow
def test_second_run_on_a_busy_workdir_exits_2_and_leaves_the_first_alone(tmp_path):
  workdir = tmp_path / "run"
  first = subprocess.Popen(_launch_args(workdir, steps=400, checkpoint_every=2, keep_checkpoints=3),
                           cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
  try:
    _wait_for(lambda: (workdir / "checkpoints" / "2").is_dir(), 120, "the first run's first checkpoint")
    config_before = (workdir / "config.json").read_text()
    start = time.monotonic()
    second = subprocess.run(_launch_args(workdir, steps=401), capture_output=True, text=True, cwd=REPO)
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0, second.stderr
    assert f"in use by another training run (pid {first.pid} on " in second.stderr
    assert (workdir / "config.json").read_text() == config_before
    assert time.monotonic() - start < 60
    assert first.poll() is None  # still training
  finally:
    first.send_signal(signal.SIGTERM)  # saves the step in flight and exits 0
    _, first_err = first.communicate(timeout=120)
  assert first.returncode == 0, first_err[-2000:]
  assert checkpoint.verify_workdir(str(workdir)) == 0
  assert not list((workdir / "checkpoints").glob("*tmp*"))


_KILL_DURING_SAVE = """
import os, signal, sys
sys.argv = {argv!r}
sys.path.insert(0, {repo!r})
from faceinpaint_jax import checkpoint
original = checkpoint.Checkpointer.save
def save_then_die(self, step, *args, **kwargs):
  result = original(self, step, *args, **kwargs)  # the asynchronous write is under way
  if step == {step}:
    os.kill(os.getpid(), signal.SIGKILL)
  return result
checkpoint.Checkpointer.save = save_then_die
import runpy
runpy.run_path({launch!r}, run_name="__main__")
"""


@pytest.mark.slow
def test_kill_9_at_random_moments_and_during_a_save_then_the_run_ends_bitwise_equal(tmp_path, straight):
  workdir = tmp_path / "run"
  args = _launch_args(workdir)
  script = _KILL_DURING_SAVE.format(argv=args[1:], repo=str(REPO), step=3, launch=str(REPO / "launch.py"))
  died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
  assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
  assert checkpoint.kept_steps(str(workdir))[-1] <= 3
  print(f"killed in the save of step 3; kept steps {checkpoint.kept_steps(str(workdir))}, "
        f"unfinished saves {[p.name for p in (workdir / 'checkpoints').glob('*tmp*')]}")

  # Then at random moments of training: after a random one of the next steps is saved, a random
  # fraction of a step later (a step of the tiny config takes ~0.1 s, a save about as long).
  rng = random.Random(0)
  for _ in range(3):
    latest = checkpoint.kept_steps(str(workdir))[-1]
    target = min(latest + rng.randint(1, 2), TRAIN["steps"] - 2)  # ≥ 2 steps left: still training
    run = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(lambda: (workdir / "checkpoints" / str(target)).is_dir(), 120, f"step {target}")
    time.sleep(rng.uniform(0.0, 0.3))
    run.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL  # killed while still training, not after finishing
    print(f"killed after step {target}; kept steps {checkpoint.kept_steps(str(workdir))}, "
          f"unfinished saves {[p.name for p in (workdir / 'checkpoints').glob('*tmp*')]}")
  leftovers = list((workdir / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
  final = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
  assert final.returncode == 0, final.stderr[-2000:]
  if leftovers:  # the last kill interrupted a save (it did in every run so far)
    assert f"note: removed {len(leftovers)} unfinished checkpoint save(s)" in final.stderr
  _assert_same_digests(workdir, straight)
  assert not list((workdir / "checkpoints").glob("*tmp*"))


@pytest.mark.slow
def test_a_save_failing_part_way_stops_in_one_line_and_the_next_run_resumes(tmp_path, straight, monkeypatch,
                                                                            capsys):
  """The writer of step 3's metadata fails with a full disk after step 3's arrays were written."""
  workdir = tmp_path / "run"
  original = ocp.handlers.JsonCheckpointHandler._save_fn

  def disk_full_at_step_3(self, x, directory, *args, **kwargs):
    if "3.orbax-checkpoint-tmp" in str(directory):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return original(self, x, directory, *args, **kwargs)

  monkeypatch.setattr(ocp.handlers.JsonCheckpointHandler, "_save_fn", disk_full_at_step_3)
  code = train_and_evaluate(_config(), str(workdir))
  assert code == loop.EXIT_SAVE_FAILED
  errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
  assert len(errors) == 1
  assert "No space left on device" in errors[0] and "the last good checkpoint (step 2) is intact" in errors[0]
  assert checkpoint.kept_steps(str(workdir)) == [1, 2]
  monkeypatch.undo()
  assert train_and_evaluate(_config(), str(workdir)) == 0
  _assert_same_digests(workdir, straight)
