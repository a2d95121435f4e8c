"""Paths of runs and results, local or in an object store (`gs://`, any scheme etils.epath knows).

Training writes its workdir through Orbax and `etils.epath`, so a run may live in a bucket; every
tool that reads or writes a workdir or a results file (evaluation, generation, export, the probe,
sweeps, reports, learning curves) goes through these helpers so that it works there too. Why not
`os.path`: `os.path.abspath("gs://b/run")` is `"$PWD/gs:/b/run"`, a local folder named `gs:`, and
`open`, `os.makedirs` or `glob` on a URL silently work on that folder or find nothing.

Local paths behave exactly as with `os` (relative paths resolve against the working directory;
JSON markers are replaced atomically). In an object store an upload appears whole or not at all,
so a plain write is already atomic; appending is emulated by rewriting the object.

Without TensorFlow, epath reaches gs:// through fsspec's gcsfs, which by default caches directory
listings for the life of the process: files another process writes later (a sweep's points, an
evaluation after training) would stay invisible. Runs are read while other processes write them,
so the listing cache is turned off for gs:// (fsspec's per-protocol defaults).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import tempfile
from typing import Iterator

from etils import epath

from mmscale import extras

try:
  import fsspec.config  # pylint: disable=g-import-not-at-top
  fsspec.config.conf.setdefault("gs", {}).setdefault("use_listings_cache", False)
except ImportError:  # pragma: no cover  (epath's gs:// then goes through TensorFlow, uncached)
  pass


def is_remote(path) -> bool:
  """True for a URL (`gs://bucket/run`), False for a local path."""
  return "://" in os.fspath(path)


@functools.lru_cache(maxsize=None)
def _gcs_reachable() -> bool:
  return any(importlib.util.find_spec(m) is not None for m in ("tensorflow", "gcsfs"))


def path(p) -> epath.Path:
  """`p` (str or path) as an epath.Path. A `gs://` path needs one of epath's two GCS file
  systems, gcsfs (the `gcs` extra) or TensorFlow's; without either, `MissingExtraError` names
  the install."""
  text = os.fspath(p)
  if text.startswith("gs://") and not _gcs_reachable():
    raise extras.MissingExtraError(f"{text}: gs:// paths need gcsfs or TensorFlow: "
                                   + extras.install_hint("gcsfs"))
  return epath.Path(text)


def join(p, *parts: str) -> str:
  """`p/part/...` as a string, URL or local path alike (os.path.join on a URL is fine too, but
  this one says that the result may be remote)."""
  return os.fspath(path(p).joinpath(*parts))


def absolute(p) -> str:
  """A URL as it is, a local path made absolute: what Orbax and a record of the source need."""
  text = os.fspath(p)
  return text if is_remote(text) else os.path.abspath(text)


def exists(p) -> bool:
  return path(p).exists()


def is_file(p) -> bool:
  q = path(p)
  return q.exists() and not q.is_dir()


def is_dir(p) -> bool:
  return path(p).is_dir()


def makedirs(p) -> None:
  path(p).mkdir(parents=True, exist_ok=True)


def listdir(p) -> list[str]:
  """Names in directory `p`, [] when it does not exist."""
  q = path(p)
  return sorted(child.name for child in q.iterdir()) if q.is_dir() else []


def glob(p, pattern: str) -> list[str]:
  """Paths under directory `p` matching `pattern` (one level of `*` per part; no `**`), sorted."""
  q = path(p)
  return sorted(os.fspath(x) for x in q.glob(pattern)) if q.exists() else []


def read_text(p) -> str:
  return path(p).read_text()


def read_bytes(p) -> bytes:
  return path(p).read_bytes()


def read_json(p):
  return json.loads(read_text(p))


def write_text(p, text: str) -> str:
  """Writes `text` whole; a kill never leaves half a file (local: a temporary file renamed over
  it; object store: an upload appears whole or not at all). Makes the parent directory."""
  q = path(p)
  q.parent.mkdir(parents=True, exist_ok=True)
  if is_remote(q):
    q.write_text(text)
  else:
    tmp = os.fspath(q) + ".tmp"
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, q)
  return os.fspath(q)


def write_bytes(p, data: bytes) -> str:
  q = path(p)
  q.parent.mkdir(parents=True, exist_ok=True)
  q.write_bytes(data)
  return os.fspath(q)


def write_json(p, obj, indent: int | None = 1, **kwargs) -> str:
  return write_text(p, json.dumps(obj, indent=indent, **kwargs))


def append_text(p, text: str) -> None:
  """Appends `text` (local: in place; an object store cannot append, so the object is rewritten
  with the text added)."""
  q = path(p)
  if not is_remote(q):
    with open(q, "a") as f:
      f.write(text)
    return
  old = q.read_text() if q.exists() else ""
  q.write_text(old + text)


def remove(p) -> None:
  """Deletes the file `p` if it exists."""
  path(p).unlink(missing_ok=True)


def copy_tree(src: str, dst) -> None:
  """Copies the local directory `src` (recursively) into `dst`, local or remote."""
  target = path(dst)
  for root, _, files in os.walk(src):
    rel = os.path.relpath(root, src)
    folder = target if rel == "." else target.joinpath(rel)
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
      with open(os.path.join(root, name), "rb") as f:
        folder.joinpath(name).write_bytes(f.read())


@contextlib.contextmanager
def local_dir(out) -> Iterator[str]:
  """A local directory to write `out`'s files into, for libraries that write only local files
  (safetensors, tokenizers, SentencePiece): `out` itself (made) when local, else a temporary
  directory copied to `out` when the block ends without an error."""
  if not is_remote(out):
    os.makedirs(out, exist_ok=True)
    yield os.fspath(out)
    return
  staging = tempfile.mkdtemp(prefix="mmscale_out_")
  try:
    yield staging
    copy_tree(staging, out)
  finally:
    shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def local_copy(p) -> Iterator[str]:
  """A local path holding the file `p`: `p` itself when local, else a temporary copy (for
  libraries that read only local files: numpy's npz, SentencePiece)."""
  if not is_remote(p):
    yield os.fspath(p)
    return
  q = path(p)
  with tempfile.TemporaryDirectory(prefix="mmscale_in_") as tmp:
    local = os.path.join(tmp, q.name)
    with open(local, "wb") as f:
      f.write(q.read_bytes())
    yield local


def save_figure(fig, p, **kwargs) -> str:
  """`fig.savefig` to `p` (PNG), local or remote; returns `p`."""
  q = path(p)
  q.parent.mkdir(parents=True, exist_ok=True)
  with q.open("wb") as f:
    fig.savefig(f, format="png", **kwargs)
  return os.fspath(q)


def relative(p, start) -> str:
  """`p` relative to the directory `start` (both local or both under one URL), as a markdown
  link wants it."""
  if is_remote(p) or is_remote(start):
    return os.fspath(path(p).relative_to(path(start)))
  return os.path.relpath(p, start)


def parent(p) -> str:
  """The directory holding `p` (for a local path: of its absolute form)."""
  return os.fspath(path(absolute(p)).parent)
