"""Optional dependencies: the install extra that provides each, and one clear error when missing.

The base install (`pip install -e .`) is the training stack and installs on Linux x86-64/aarch64
and macOS arm64. Apache Beam (ingestion, the knowledge engine), TensorFlow Datasets and TensorFlow
are extras (setup.cfg, README.md "Install"); code that needs one imports it through `require`,
so a missing extra is one line naming the `pip install` that fixes it, never an ImportError
traceback from deep inside a tool.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType

from mmscale.errors import MmscaleError

# top-level module -> (what it is, the extra that installs it)
EXTRA_OF_MODULE = {
    "apache_beam": ("Apache Beam", "beam"),
    "tensorflow_datasets": ("TensorFlow Datasets", "tfds"),
    "tensorflow": ("TensorFlow", "tf"),
    "gcsfs": ("gcsfs", "gcs"),
}


class MissingExtraError(MmscaleError, ImportError):
  """An optional dependency is not installed; the message names the extra that installs it."""


def install_hint(module: str) -> str:
  what, extra = EXTRA_OF_MODULE[module]
  return f"{what} is not installed; install it with: pip install 'mmscale[{extra}]'"


def available(module: str) -> bool:
  """Whether `module` can be imported, without importing it (TensorFlow takes seconds)."""
  return importlib.util.find_spec(module) is not None


def require(module: str, purpose: str = "") -> ModuleType:
  """Imports the top-level `module` of an extra, or raises `MissingExtraError` naming the extra.

  purpose: what needs it (e.g. "tools/enrich.py"), put at the front of the message.
  """
  if module not in EXTRA_OF_MODULE:
    raise KeyError(f"{module} is not an optional dependency; known: {sorted(EXTRA_OF_MODULE)}")
  try:
    return importlib.import_module(module)
  except ImportError as e:
    if e.name is None or e.name.split(".")[0] != module:
      raise  # the extra is installed but broken: its own traceback says how
    prefix = f"{purpose} needs {EXTRA_OF_MODULE[module][0]}: " if purpose else ""
    raise MissingExtraError(prefix + install_hint(module)) from None


def require_or_exit(module: str, purpose: str) -> ModuleType:
  """`require` for a command-line tool: a missing extra is one `error: ...` line and exit 1."""
  try:
    return require(module, purpose)
  except MissingExtraError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
