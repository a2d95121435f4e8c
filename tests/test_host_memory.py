"""The host memory settings: with them a CPU computation reuses its freed buffers instead of
taking freshly mapped (page-faulting) memory on every call; without them (MMSCALE_HOST_MALLOC=
system) it does not; a bad setting is one clear error. Real processes: the settings must be made
before JAX starts its threads."""

import json
import os
import platform
import subprocess
import sys

import pytest

from mmscale import host_memory
from mmscale.errors import UsageError

SCRIPT = """
import json, resource
from mmscale import host_memory
applied = host_memory.keep_freed_memory()
import jax, jax.numpy as jnp
step = jax.jit(lambda x: jnp.tanh(x) * 2.0)  # an 80 MB result, freed before the next call
x = jnp.ones((5000, 4096), jnp.float32)
for _ in range(10):  # the heap grows to its steady size
  step(x).block_until_ready()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
  step(x).block_until_ready()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"applied": applied, "faults_per_call": faults}))
"""


def _faults(choice: str) -> dict:
  # one CPU device, as a CPU run has (the suite's 8 simulated ones start threads per call)
  env = dict(os.environ, MMSCALE_HOST_MALLOC=choice, XLA_FLAGS="")
  for name in host_memory.ENVIRONMENT:
    env.pop(name, None)
  out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                       check=True, timeout=300)
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings")
def test_freed_buffers_are_reused_instead_of_mapped_afresh():
  kept, system = _faults("keep"), _faults("system")
  assert kept["applied"] and not system["applied"]
  # 80 MB of fresh pages is about 20,000 faults per call with glibc's defaults; kept, the heap
  # reaches its steady size within a few calls (a call now and then may still grow it)
  assert system["faults_per_call"] > 10_000, system
  assert kept["faults_per_call"] < 0.4 * system["faults_per_call"], (kept, system)


def test_a_bad_setting_names_the_variable(monkeypatch):
  monkeypatch.setenv(host_memory.ENV, "tcmalloc")
  monkeypatch.setattr(host_memory, "_applied", None)
  with pytest.raises(UsageError, match="MMSCALE_HOST_MALLOC: expected 'keep' or 'system'"):
    host_memory.keep_freed_memory()
