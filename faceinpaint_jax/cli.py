"""Shared command-line plumbing: absl config files, and user errors as one line with exit code 2."""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

from faceinpaint_jax.config import ConfigError, validate

USER_ERROR_EXIT = 2


class UserError(Exception):
  """Bad input the user can fix; the CLIs print it as one line and exit with USER_ERROR_EXIT."""


def fail(message: str, code: int = USER_ERROR_EXIT):
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def use_compilation_cache(config) -> None:
  """Point XLA's persistent compilation cache at `train.compilation_cache_dir` (default under ~/.cache),
  so a resumed run, or a training run after the ablation runner timed it, skips the compile."""
  import os

  import jax
  cache_dir = config.train.get("compilation_cache_dir", "") or os.path.join(
      os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "faceinpaint_jax", "jax_compilation_cache")
  jax.config.update("jax_compilation_cache_dir", cache_dir)


def define_config_flag():
  return config_flags.DEFINE_config_file("config", None, "config file with get_config()", lock_config=True)


def _normalise(arg: str) -> str:
  """--fingerprint-steps=1 → --fingerprint_steps=1 (absl names use underscores; configs keep theirs)."""
  if not arg.startswith("--") or arg.startswith("--config"):
    return arg
  name, sep, value = arg[2:].partition("=")
  return "--" + name.replace("-", "_") + sep + value


def parse_flags(argv, config_flag):
  """Parse absl flags; a bad flag, unknown config key or bad value ends in one line, exit 2."""
  argv = [argv[0], *map(_normalise, argv[1:])]
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
  except (AttributeError, KeyError) as e:  # ml_collections: an override naming a key that does not exist
    fail(f"unknown config key in an override: {_unknown_key_message(e)}")
  except Exception as e:  # an exception raised while executing the config file
    fail(f"could not load the config: {type(e).__name__}: {e}")
  try:
    config = config_flag.value  # config files load lazily: errors in them surface on first use
    if config is not None:
      config.get("model")
  except OSError as e:
    fail(str(e).replace("\n", " ").split("  Attempted")[0].strip() + f" ({_first_error_line(e)})")
  except Exception as e:
    fail(f"could not load the config: {type(e).__name__}: {e}")
  if config is None:
    fail("--config is required (e.g. --config configs/quickstart.py)")
  try:
    if config.get("task") == "parser":
      from faceinpaint_jax.parser.train import validate as validate_parser
      validate_parser(config)
    else:
      validate(config)
  except ConfigError as e:
    fail(str(e))
  return rest


def _unknown_key_message(error: BaseException) -> str:
  """ml_collections' "'stepz'\nDid you mean …" as one line, without the repr quoting KeyError adds."""
  text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  text = text.replace("\\n", "\n").replace("\\'", "'")  # nested keys arrive repr()-escaped once more
  return " ".join(part.strip() for part in text.splitlines() if part.strip()).replace("'", "")


def _first_error_line(error: BaseException) -> str:
  lines = [line.strip() for line in str(error).splitlines() if line.strip().startswith("[Errno")]
  return lines[0] if lines else type(error).__name__
