"""Submit training to a SLURM GPU cluster: `launch/slurm_gpu.sbatch` with its #SBATCH lines set.

```
python -m mmscale.launch.slurm --nodes=2 --gpus_per_node=8 --partition=h100 \
    --config=configs/world/tiny.py --workdir=/shared/runs/tiny [--dry_run] -- --config.x=y
```
Checks the mesh against nodes x GPUs (fails before anything is queued), writes the batch script
(the template with this job's #SBATCH lines) and runs `sbatch SCRIPT CONFIG WORKDIR ARGS`.
`--per=gpu` (default) starts one JAX process per GPU, `--per=node` one per node driving all its
GPUs. `--dry_run` prints the script, the sbatch command and the srun command each node runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import types

from absl import flags

from mmscale import cli_flags
from mmscale.launch import topology

TEMPLATE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "launch", "slurm_gpu.sbatch")
SRUN = "srun --kill-on-bad-exit=1 --cpu-bind=none"


def sbatch_options(args) -> dict[str, str]:
  """#SBATCH option -> value for this job (None values are dropped from the template)."""
  tasks = args.gpus_per_node if args.per == "gpu" else 1
  cpus = args.cpus_per_task or (12 if args.per == "gpu" else 12 * args.gpus_per_node)
  return {"job-name": args.job_name, "nodes": str(args.nodes), "ntasks-per-node": str(tasks),
          "gpus-per-node": str(args.gpus_per_node), "cpus-per-task": str(cpus),
          "time": args.time, "partition": args.partition or None,
          "account": args.account or None, "qos": args.qos or None}


def render_script(args, template: str) -> str:
  """The template with its #SBATCH lines replaced by this job's options (others kept)."""
  options = sbatch_options(args)
  lines, placed = [], set()
  for line in template.splitlines():
    match = re.match(r"#SBATCH --([\w-]+)=", line)
    if match and match.group(1) in options:
      key = match.group(1)
      placed.add(key)
      if options[key] is not None:
        lines.append(f"#SBATCH --{key}={options[key]}")
      continue
    if line.startswith("set -euo pipefail"):  # options the template lacks go before the body
      lines += [f"#SBATCH --{k}={v}" for k, v in options.items() if k not in placed and v]
    lines.append(line)
  return "\n".join(lines) + "\n"


def srun_command(args) -> str:
  """What the script runs on the allocation (shown by --dry_run)."""
  return (f"{SRUN} {shlex.quote(args.venv)}/bin/python -m mmscale.train "
          + shlex.join([f"--config={args.config}", f"--workdir={args.workdir}", *args.train_args]))


def sbatch_command(args, script_path: str) -> list[str]:
  env = [f"--export=ALL,VENV={args.venv},MMSCALE_REPO={args.repo}"]
  return ["sbatch", *env, script_path, args.config, args.workdir, *args.train_args]


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this module's own (mmscale/cli_flags.py)."""
  flags.DEFINE_integer("nodes", None, None, flag_values=fv)
  flags.DEFINE_integer("gpus_per_node", 8, None, flag_values=fv)
  flags.DEFINE_enum("per", "gpu", ["gpu", "node"], "one process per ...", flag_values=fv)
  flags.DEFINE_string("partition", "", None, flag_values=fv)
  flags.DEFINE_string("account", "", None, flag_values=fv)
  flags.DEFINE_string("qos", "", None, flag_values=fv)
  flags.DEFINE_string("time", "24:00:00", None, flag_values=fv)
  flags.DEFINE_string("job_name", "mmscale", None, flag_values=fv)
  flags.DEFINE_integer("cpus_per_task", 0, "0: 12 per GPU", flag_values=fv)
  flags.DEFINE_string("config", None, None, flag_values=fv)
  flags.DEFINE_string("workdir", None, "on a disk all nodes see, or gs://", flag_values=fv)
  flags.DEFINE_string("venv", os.path.expanduser("~/mmscale-venv"), None, flag_values=fv)
  flags.DEFINE_string("repo", os.getcwd(), "the checkout the nodes run from", flag_values=fv)
  flags.DEFINE_string("script", "", "where to write the batch script (default: <job_name>.sbatch "
                      "in the current directory)", flag_values=fv)
  flags.DEFINE_boolean("dry_run", False, "print script and commands, submit nothing",
                       flag_values=fv)
  flags.mark_flags_as_required(["nodes", "config", "workdir"], flag_values=fv)


def parse(argv: list[str]) -> types.SimpleNamespace:
  """argv = [program, *flags, "--", *train_args] -> the flag values as attributes, and
  `train_args`: the arguments after `--` (more mmscale.train flags), passed on unchanged.

  `--config` stays a path string: it is handed to mmscale.train on the nodes (and read here only
  to check the mesh), with the `--config.x=y` overrides among train_args."""
  fv, rest = cli_flags.parse(define_flags, argv, doc=__doc__, positional=True)
  if fv.nodes < 1 or fv.gpus_per_node < 1:
    cli_flags.usage_error("--nodes and --gpus_per_node must be >= 1")
  return types.SimpleNamespace(**fv.flag_values_dict(), train_args=rest[1:])


def main(argv: list[str]) -> int:
  """argv = [program, *flags, "--", *train_args]; returns the exit status (2: the mesh does not
  fit)."""
  args = parse(argv)
  target = topology.gpu_target(args.nodes, args.gpus_per_node, args.per)
  try:
    shape = topology.check_mesh(args.config, args.train_args, target)
  except ValueError as e:  # ConfigError: the mesh does not fit, nothing was queued
    print(f"error: {e}", file=sys.stderr)
    return 2
  with open(TEMPLATE) as f:
    script = render_script(args, f.read())
  path = args.script or f"{args.job_name}.sbatch"
  print(f"# {target.description}: {target.devices} devices, {target.hosts} processes; mesh {shape}")
  if args.dry_run:
    print(f"# batch script ({path}):\n{script}# submit:\n{shlex.join(sbatch_command(args, path))}\n"
          f"# each task runs:\n{srun_command(args)}")
    return 0
  with open(path, "w") as f:
    f.write(script)
  return subprocess.run(sbatch_command(args, path)).returncode


if __name__ == "__main__":
  cli_flags.run(main)
