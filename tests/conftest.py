import os
import sys

# Tests run on the CPU; a few simulate several devices in subprocesses of their own.
os.environ.setdefault("JAX_PLATFORMS", "cpu")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

import pytest  # noqa: E402

from faceinpaint_jax.config import load_config_file  # noqa: E402


@pytest.fixture
def tiny_config():
  return load_config_file(os.path.join(REPO, "configs", "tiny.py"))


@pytest.fixture(autouse=True, scope="session")
def _compilation_cache(tmp_path_factory):
  """One persistent XLA cache for the whole run (and its subprocesses): the same small programs are
  compiled by several tests, as a resumed training run would."""
  import jax
  cache = str(_shared_root(tmp_path_factory) / "jax_cache")
  os.makedirs(cache, exist_ok=True)
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  jax.config.update("jax_compilation_cache_dir", cache)
  yield


def free_port() -> int:
  """A TCP port on 127.0.0.1 that nothing listens on now."""
  import socket
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _shared_root(tmp_path_factory):
  """The run's base temp folder; under pytest-xdist, the folder all workers share."""
  root = tmp_path_factory.getbasetemp()
  return root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A tiny model trained for a few steps: enough to exercise evaluation and inpainting end to end.
  Read-only for the tests; trained once per run, whichever worker asks first, the others wait."""
  import fcntl

  from faceinpaint_jax.train.loop import train_and_evaluate
  root = _shared_root(tmp_path_factory)
  workdir = root / "trained_workdir"
  with open(root / "trained_workdir.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not (workdir / "TRAINED").exists():
      config = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
      assert train_and_evaluate(config, str(workdir)) == 0
      (workdir / "TRAINED").write_text("")
  return str(workdir)
