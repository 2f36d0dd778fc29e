"""The frozen face parser (BiSeNet, 19 CelebAMask-HQ classes) behind the semantic loss (Eq. 9)."""

from faceinpaint_jax.parser.bisenet import CLASS_NAMES, NUM_CLASSES, BiSeNet, normalize, torch_to_flax
from faceinpaint_jax.parser.weights import load_parser_variables, parser_input

__all__ = ["BiSeNet", "CLASS_NAMES", "NUM_CLASSES", "normalize", "torch_to_flax",
           "load_parser_variables", "parser_input"]
