"""MTCNN's weights: facenet-pytorch 2.6.0's three state dicts, fetched from the pinned wheel (or a user's
folder holding pnet.pt, rnet.pt and onet.pt), read with the restricted torch reader, converted once and
cached as .npz."""

from __future__ import annotations

import pathlib

import numpy as np

from faceinpaint_jax import assets
from faceinpaint_jax.safe_pickle import load_state_dict

FACENET_PYTORCH = assets.RegistryArtifact(
    "facenet-pytorch==2.6.0", "wheel", "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca")
MEMBER_SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
NETWORKS = tuple(MEMBER_SHA256)


def mtcnn_checkpoints(cache_dir: str = "") -> dict[str, pathlib.Path]:
  """Paths of the verified pnet.pt, rnet.pt and onet.pt, fetched into the cache on first use."""
  folder = assets.cache_root(cache_dir) / "mtcnn"
  paths = assets.package_members(FACENET_PYTORCH, {f"facenet_pytorch/data/{name}.pt": (digest, folder / f"{name}.pt")
                                                   for name, digest in MEMBER_SHA256.items()})
  return {name: paths[f"facenet_pytorch/data/{name}.pt"] for name in MEMBER_SHA256}


def torch_to_flax(state_dict: dict) -> dict:
  """One network's PyTorch state dict → Flax params (OIHW convs → HWIO, (out, in) linears → (in, out))."""
  params: dict = {}
  for key, value in state_dict.items():
    layer, kind = key.rsplit(".", 1)
    value = np.asarray(value, np.float32)
    if layer.startswith("prelu"):
      params[layer] = {"weight": value}
    elif kind == "weight":
      params.setdefault(layer, {})["kernel"] = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value.T
    else:
      params.setdefault(layer, {})["bias"] = value
  return {"params": params}


def load_mtcnn_variables(path: str = "", cache_dir: str = "") -> dict:
  """{"pnet", "rnet", "onet"} Flax variables, from `path` (a folder with the three .pt files, or a converted
  .npz) or the pinned download; the conversion is cached in the cache directory."""
  if path and pathlib.Path(path).suffix == ".npz":
    if not pathlib.Path(path).exists():
      raise assets.AssetError(f"face detector weights not found: {path}")
    return assets.load_tree(path)
  if path:
    sources = {name: pathlib.Path(path) / f"{name}.pt" for name in NETWORKS}
    missing = [str(p) for p in sources.values() if not p.exists()]
    if missing:
      raise assets.AssetError(f"face detector weights not found: {', '.join(missing)}")
  else:
    sources = mtcnn_checkpoints(cache_dir)
  digest = "".join(assets.sha256_file(p)[:8] for p in sources.values())
  cached = assets.cache_root(cache_dir) / "mtcnn" / f"mtcnn_{digest}.npz"
  if cached.exists():
    return assets.load_tree(cached)
  variables = {}
  for name, source in sources.items():
    variables[name] = assets.read_weights(lambda p: torch_to_flax(load_state_dict(p)), source,
                                          "face detector weights")
  assets.save_tree(cached, variables)
  return variables
