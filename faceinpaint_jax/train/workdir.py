"""One training run per workdir: an exclusive lock held for the run's life, and leftovers of a crash cleared.

The lock is an advisory `flock` on WORKDIR/train.lock, so the kernel releases it when its holder dies,
even by `kill -9`; the file's text names the holder. A second run on the same workdir stops before
anything compiles, naming the holder. A lock file whose holder is gone (a crashed run) is taken over
with one line saying so. In a multi-host run process 0 holds it for all the run's processes (the
others are started with it by the same launcher and coordinate through jax.distributed).
"""

from __future__ import annotations

import datetime
import fcntl
import glob
import os
import shutil
import socket

LOCK_FILE = "train.lock"


class WorkdirError(Exception):
  """The workdir cannot be used for training (busy, or not writable); the message is for the user."""


class WorkdirLock:
  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(workdir, LOCK_FILE)
    self._fd = None

  def acquire(self, report=print) -> None:
    """Take the lock or raise WorkdirError naming its holder."""
    try:
      os.makedirs(self.workdir, exist_ok=True)
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
      raise WorkdirError(f"cannot use {self.workdir} as the workdir: {e.strerror}") from None
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = _read(fd) or "another process"
      os.close(fd)
      raise WorkdirError(f"{self.workdir} is in use by another training run ({holder}); wait for it to "
                         f"finish or pass another --workdir") from None
    previous = _read(fd)
    if previous:
      report(f"note: taking over the workdir lock of a run that ended without releasing it ({previous})")
    holder = (f"pid {os.getpid()} on {socket.gethostname()} since "
              f"{datetime.datetime.now().astimezone().isoformat(timespec='seconds')}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, holder.encode(), 0)
    os.fsync(fd)
    self._fd = fd

  def release(self) -> None:
    if self._fd is None:
      return
    os.ftruncate(self._fd, 0)  # an empty lock file: the run ended cleanly
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None

  def __enter__(self):
    self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()


def _read(fd: int) -> str:
  return os.pread(fd, 4096, 0).decode(errors="replace").strip()


def remove_interrupted_saves(checkpoint_dir: str, report=print) -> list[str]:
  """Delete the temporary folders an interrupted orbax save leaves behind; their paths."""
  leftovers = sorted(glob.glob(os.path.join(checkpoint_dir, "*.orbax-checkpoint-tmp*")))
  for path in leftovers:
    shutil.rmtree(path, ignore_errors=True)
  if leftovers:
    names = ", ".join(os.path.basename(p) for p in leftovers)
    report(f"note: removed {len(leftovers)} unfinished checkpoint save(s) left by an interrupted run: {names}")
  return leftovers
