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
