"""Versions of the fast-moving packages a result depends on, and the list constraints.txt pins.

Results rows (`mmscale/scaling/results.py`) and eval results files (`mmscale/eval/runner.py`)
record `package_versions()` beside the git commit, so a number can be traced to the stack that
produced it. `tools/update_constraints.py` writes constraints.txt from the same list.
"""

from __future__ import annotations

from importlib import metadata

# Distribution names (as pip spells them): the JAX stack, whose releases change numerics and APIs
# often, the heavy optional stacks whose resolution CI should not leave to chance, and the
# Hugging Face stack.
PINNED_PACKAGES = (
    "jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "tensorstore",
    "grain", "array-record", "ml-collections", "ml-dtypes", "clu", "etils",
    "sentencepiece", "scipy", "tensorboardX",
    "tensorflow-cpu", "tensorflow", "tensorboard", "tensorflow-datasets", "apache-beam",
    # the Hugging Face stack: safetensors and tokenizers at run time; transformers and torch
    # (test-only) are the reference the checkpoint parity tests compare against
    "safetensors", "tokenizers", "transformers", "torch",
    # the test extra's OpenAI-compatible server (`transformers serve`) and its web stack
    "fastapi", "starlette", "uvicorn", "openai",
    "fsspec", "gcsfs",
    # the pod-scale compile check's TPU compiler: the release jax[tpu] pins (a newer one loads a
    # profiler plugin of another size, and jax.profiler.start_trace segfaults even on CPU)
    "libtpu",
)
# What a result row records: the packages above that shape numbers (not the optional stacks).
RESULT_PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "grain", "numpy")


def installed_version(name: str) -> str | None:
  try:
    return metadata.version(name)
  except metadata.PackageNotFoundError:
    return None


def package_versions(names=RESULT_PACKAGES) -> dict[str, str]:
  """{distribution: version} of those of `names` that are installed."""
  found = {name: installed_version(name) for name in names}
  return {name: version for name, version in found.items() if version is not None}
