"""Several JAX processes on one machine, as a multi-host run would be: for tests and debugging.

`python -m mmscale.launch.local_multiprocess --num_processes=2 --devices_per_process=4 -- \
    python -m mmscale.train --config=... --workdir=...`
Each process gets simulated CPU devices and the MMSCALE_COORDINATOR / MMSCALE_NUM_PROCESSES /
MMSCALE_PROCESS_ID variables that `mmscale.parallel.mesh.maybe_initialize_distributed` reads
(gloo collectives on CPU). Output of process 0 is streamed; the others go to files.
"""

from __future__ import annotations

import os
import socket
import subprocess

from absl import flags

from mmscale import cli_flags


def free_port() -> int:
  """A TCP port free right now on localhost, for the coordinator."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def process_env(port: int, num_processes: int, process_id: int, *, devices_per_process: int = 4,
                base: dict | None = None) -> dict:
  """The environment of local process `process_id`: coordinator, ids and simulated devices."""
  env = dict(os.environ if base is None else base)
  flags = [f for f in env.get("XLA_FLAGS", "").split()
           if not f.startswith("--xla_force_host_platform_device_count")]
  env.update(
      XLA_FLAGS=" ".join(flags + [f"--xla_force_host_platform_device_count={devices_per_process}"]),
      JAX_PLATFORMS="cpu", MMSCALE_COORDINATOR=f"127.0.0.1:{port}",
      MMSCALE_NUM_PROCESSES=str(num_processes), MMSCALE_PROCESS_ID=str(process_id))
  return env


def run(command: list[str], num_processes: int, devices_per_process: int,
        log_dir: str = ".") -> int:
  """Runs `command` as `num_processes` processes; returns the first non-zero exit code (or 0)."""
  port = free_port()
  procs = []
  for pid in range(num_processes):
    out = None if pid == 0 else open(os.path.join(log_dir, f"process_{pid}.log"), "w")
    procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT if out else None,
                                  env=process_env(port, num_processes, pid,
                                                  devices_per_process=devices_per_process)))
  codes = [p.wait() for p in procs]
  return next((c for c in codes if c), 0)


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this module's own (mmscale/cli_flags.py)."""
  flags.DEFINE_integer("num_processes", 2, None, flag_values=fv)
  flags.DEFINE_integer("devices_per_process", 4, None, flag_values=fv)
  flags.DEFINE_string("log_dir", ".", "where process_<i>.log go (i > 0)", flag_values=fv)


def main(argv: list[str]) -> int:
  """argv = [program, *flags, "--", *command]: the first positional argument (or `--`) ends the
  flags, so the command keeps its own flags."""
  fv, rest = cli_flags.parse(define_flags, argv, doc=__doc__, stop_at_positional=True)
  command = rest[2:] if rest[1:2] == ["--"] else rest[1:]
  if not command:
    cli_flags.usage_error("give the command after --")
  return run(command, fv.num_processes, fv.devices_per_process, fv.log_dir)


if __name__ == "__main__":
  cli_flags.run(main)
