"""The quickstart, trained to find damage of any kind: holes filled white, with the mean colour, a random
colour, noise or another face's pixels (one kind per example), so that mask-free completion finds the
damage by its content rather than its colour.

  python launch.py --config configs/quickstart_blind.py --workdir runs/quickstart_blind

Same budget and recipe as configs/quickstart.py (about 13 minutes on 2 CPU cores); evaluate it with
`python -m faceinpaint_jax.evaluate --workdir runs/quickstart_blind --blind`.
"""

import os

from faceinpaint_jax.config import load_config_file


def get_config():
  config = load_config_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py"))
  config.data.hole_fill = "mixture"
  return config
