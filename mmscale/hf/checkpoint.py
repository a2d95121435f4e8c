"""A local Hugging Face checkpoint directory: config.json plus one or more safetensors files.

Tensors are read one at a time (`safetensors.safe_open`, memory-mapped), never the whole model:
a 7B decoder is read tensor by tensor into its shardings (mmscale/hf/load.py). Nothing is ever
fetched from a hub; the directory must be on local (or mounted) disk.
"""

from __future__ import annotations

import glob
import json
import os

import ml_dtypes
import numpy as np
from safetensors import safe_open

from mmscale.errors import CheckpointError, ConfigError

# safetensors dtypes numpy cannot name; read through the file header and a memory map instead.
_EXTRA_DTYPES = {"BF16": ml_dtypes.bfloat16, "F8_E4M3": ml_dtypes.float8_e4m3fn,
                 "F8_E5M2": ml_dtypes.float8_e5m2}


class Checkpoint:
  """The tensors of one Hugging Face directory, by name. `field` names the config field that
  pointed here, so every error says which setting to fix."""

  def __init__(self, path: str, field: str = "checkpoint"):
    self.path, self.field = path, field
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
      raise ConfigError(field, f"no config.json in '{path}' (expected a Hugging Face checkpoint "
                        "directory: config.json + *.safetensors)")
    with open(config_path) as f:
      self.config = json.load(f)
    files = sorted(glob.glob(os.path.join(path, "*.safetensors")))
    if not files:
      raise ConfigError(field, f"no *.safetensors files in '{path}' (convert .bin checkpoints "
                        "with transformers' save_pretrained(safe_serialization=True))")
    self._file_of: dict[str, str] = {}
    self._shape: dict[str, tuple[int, ...]] = {}
    for file in files:
      with safe_open(file, framework="numpy") as f:
        for name in f.keys():
          self._file_of[name] = file
          self._shape[name] = tuple(f.get_slice(name).get_shape())

  def names(self) -> list[str]:
    return sorted(self._file_of)

  def __contains__(self, name: str) -> bool:
    return name in self._file_of

  def shape(self, name: str) -> tuple[int, ...]:
    return self._shape[name]

  def read(self, name: str) -> np.ndarray:
    """Tensor `name` as a float32 numpy array (bfloat16 / float8 files are widened)."""
    if name not in self._file_of:
      raise CheckpointError(f"{self.path}: tensor '{name}' is missing (read by {self.field})")
    file = self._file_of[name]
    with safe_open(file, framework="numpy") as f:
      dtype = f.get_slice(name).get_dtype()
      if dtype not in _EXTRA_DTYPES:
        return np.asarray(f.get_tensor(name), np.float32)
    return _read_by_header(file, name, _EXTRA_DTYPES[dtype]).astype(np.float32)


def read_preprocessor(path: str) -> dict | None:
  """preprocessor_config.json of a checkpoint directory (the image processor's settings), or
  None when it has none."""
  file = os.path.join(path, "preprocessor_config.json")
  if not os.path.isfile(file):
    return None
  with open(file) as f:
    return json.load(f)


def _read_by_header(file: str, name: str, dtype) -> np.ndarray:
  """One tensor of a safetensors file through its JSON header (8-byte little-endian length,
  then {name: {dtype, shape, data_offsets}}) and a memory map: for dtypes numpy has no name for."""
  with open(file, "rb") as f:
    header_len = int.from_bytes(f.read(8), "little")
    entry = json.loads(f.read(header_len))[name]
  begin, end = entry["data_offsets"]
  data = np.memmap(file, dtype=np.uint8, mode="r", offset=8 + header_len + begin,
                   shape=(end - begin,))
  return np.asarray(data.view(dtype).reshape(entry["shape"]))
