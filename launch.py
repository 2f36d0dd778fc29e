"""Train: python launch.py --config configs/X.py --workdir DIR [--config.a.b=value ...]

Running the same command again resumes from the latest checkpoint in DIR/checkpoints.
"""

import logging
import sys

from absl import flags

from faceinpaint_jax import cli

_CONFIG = cli.define_config_flag()
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and samples")
FLAGS = flags.FLAGS


def main(argv) -> int:
  cli.parse_flags(argv, _CONFIG)
  if not FLAGS.workdir:
    cli.fail("--workdir is required")
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  for noisy in ("absl", "jax._src", "orbax", "tensorflow_datasets"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
  config = _CONFIG.value


  from faceinpaint_jax import parallel
  from faceinpaint_jax.assets import AssetError
  from faceinpaint_jax.checkpoint import CheckpointCorrupt
  from faceinpaint_jax.config import ConfigError
  from faceinpaint_jax.data import SourceError
  from faceinpaint_jax.train.loop import train_and_evaluate
  from faceinpaint_jax.train.workdir import WorkdirError

  cli.use_compilation_cache(config)
  try:
    if config.get("task") == "parser":
      from faceinpaint_jax.parser.train import train_parser
      return train_parser(config, FLAGS.workdir)
    parallel.initialize_distributed(config.parallel)
    return train_and_evaluate(config, FLAGS.workdir)
  except (SourceError, AssetError, ConfigError, WorkdirError, CheckpointCorrupt) as e:
    cli.fail(str(e).splitlines()[0])


if __name__ == "__main__":
  sys.exit(main(sys.argv))
