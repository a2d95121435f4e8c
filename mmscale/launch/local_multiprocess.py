"""Several JAX processes on one machine, as a multi-host run would be: for tests and debugging.

`python -m mmscale.launch.local_multiprocess --num_processes=2 --devices_per_process=4 -- \
    python -m mmscale.train --config=... --workdir=...`
Each process gets simulated CPU devices and the MMSCALE_COORDINATOR / MMSCALE_NUM_PROCESSES /
MMSCALE_PROCESS_ID variables that `mmscale.parallel.mesh.maybe_initialize_distributed` reads
(gloo collectives on CPU). Output of process 0 is streamed; the others go to files.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys


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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num_processes", type=int, default=2)
  parser.add_argument("--devices_per_process", type=int, default=4)
  parser.add_argument("--log_dir", default=".", help="where process_<i>.log go (i > 0)")
  parser.add_argument("command", nargs=argparse.REMAINDER, help="after --: the command")
  args = parser.parse_args(argv)
  command = args.command[1:] if args.command[:1] == ["--"] else args.command
  if not command:
    parser.error("give the command after --")
  return run(command, args.num_processes, args.devices_per_process, args.log_dir)


if __name__ == "__main__":
  sys.exit(main())
