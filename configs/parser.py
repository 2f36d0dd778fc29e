"""Fine-tune (or train) the BiSeNet face parser on CelebAMask-HQ-style pairs, with mIoU evaluation.

  python launch.py --config configs/parser.py --workdir runs/parser --config.data.root=/data/CelebAMask-HQ
"""

from faceinpaint_jax.parser.train import get_base_config


def get_config():
  return get_base_config()
