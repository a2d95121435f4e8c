"""On-disk response cache keyed by a hash of the request, so a rerun costs nothing.

One JSON file per answer under `dir/ab/abcdef....json`, written to a temporary file and renamed:
many processes (Beam workers) may share the directory without locks, a crash never leaves a
half-written entry, and an entry is only written for an answer that passed schema validation.
The key covers everything that changes the answer (endpoint model, messages, schema, sampling
settings) and never the API key.
"""
import hashlib
import json
import os
import uuid


def request_key(identity: dict) -> str:
  return hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False)
                        .encode()).hexdigest()


class DiskCache:

  def __init__(self, directory: str):
    self.directory = directory
    os.makedirs(directory, exist_ok=True)

  def _path(self, key: str) -> str:
    return os.path.join(self.directory, key[:2], key + ".json")

  def get(self, key: str):
    try:
      with open(self._path(key)) as f:
        return json.load(f)
    except (OSError, ValueError):
      return None

  def put(self, key: str, value) -> None:
    path = self._path(key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    with open(tmp, "w") as f:
      json.dump(value, f)
    os.replace(tmp, path)

  def __len__(self) -> int:
    return sum(len([n for n in names if n.endswith(".json")])
               for _, _, names in os.walk(self.directory))
