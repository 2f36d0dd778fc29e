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
  cache = str(tmp_path_factory.mktemp("jax_cache"))
  os.environ["JAX_COMPILATION_CACHE_DIR"] = cache
  jax.config.update("jax_compilation_cache_dir", cache)
  yield


@pytest.fixture(scope="session")
def trained_workdir(tmp_path_factory):
  """A tiny model trained for a few steps: enough to exercise evaluation and inpainting end to end."""
  from faceinpaint_jax.train.loop import train_and_evaluate
  config = load_config_file(os.path.join(REPO, "configs", "tiny.py"))
  workdir = str(tmp_path_factory.mktemp("run"))
  assert train_and_evaluate(config, workdir) == 0
  return workdir
