"""Host memory that the CPU backend reuses instead of mapping afresh every step (glibc malloc).

XLA's CPU runtime allocates each execution's buffers from its worker threads: the benchmark's
train step frees and allocates a 646 MB temporary buffer every step. glibc gives every thread but
the main one an arena of its own whose heaps hold at most 64 MiB, so such a block is mmap-ed and
munmap-ed on every step, and the kernel zero-fills each of its pages again on first touch: about
144,000 page faults and a quarter of the CPU time of the benchmark's bf16 step
(docs/performance.md). With one arena, no mmap-ed blocks and no trimming, a freed block stays in
the process and the next step reuses it.

`keep_freed_memory()` makes those three settings with `mallopt` (what MALLOC_ARENA_MAX=1
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647 in the environment do). It has to run
before JAX starts its threads: a thread takes its arena at its first allocation. The command-line
entry points (`cli_flags.run`, `cli_flags.run_with_config_flags`) and the benchmarks call it
first thing. The cost is that the process keeps its peak host memory, which a training process
needs again every step anyway (tcmalloc, which MaxText preloads on TPU hosts, keeps it too).

MMSCALE_HOST_MALLOC=system in the environment leaves glibc's defaults alone; on a C library
other than glibc (macOS, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import os
import platform

from mmscale.errors import UsageError

ENV = "MMSCALE_HOST_MALLOC"
# mallopt parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
# (parameter, glibc's environment variable for it, value): one arena, no mmap-ed blocks, no trim
_SETTINGS = ((M_ARENA_MAX, "MALLOC_ARENA_MAX", 1), (M_MMAP_MAX, "MALLOC_MMAP_MAX_", 0),
             (M_TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", 2 ** 31 - 1))
# the same settings as environment variables, for a process this one starts (a peer)
ENVIRONMENT = {name: str(value) for _, name, value in _SETTINGS}

_applied: bool | None = None


def keep_freed_memory() -> bool:
  """Applies the settings once per process; True when they are in effect."""
  global _applied
  if _applied is None:
    _applied = _apply()
  return _applied


def _apply() -> bool:
  choice = os.environ.get(ENV, "keep")
  if choice not in ("keep", "system"):
    raise UsageError(f"{ENV}: expected 'keep' or 'system', got {choice!r}")
  if choice == "system" or platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
    return False
  mallopt = ctypes.CDLL(None).mallopt
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  return all(mallopt(param, value) == 1 for param, _, value in _SETTINGS)
