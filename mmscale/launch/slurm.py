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

import argparse
import os
import re
import shlex
import subprocess
import sys

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


def parse(argv) -> argparse.Namespace:
  p = argparse.ArgumentParser(prog="python -m mmscale.launch.slurm",
                              description="Submit mmscale training to SLURM (module docstring).")
  p.add_argument("--nodes", type=int, required=True)
  p.add_argument("--gpus_per_node", type=int, default=8)
  p.add_argument("--per", choices=("gpu", "node"), default="gpu", help="one process per ...")
  p.add_argument("--partition", default="")
  p.add_argument("--account", default="")
  p.add_argument("--qos", default="")
  p.add_argument("--time", default="24:00:00")
  p.add_argument("--job_name", default="mmscale")
  p.add_argument("--cpus_per_task", type=int, default=0, help="0: 12 per GPU")
  p.add_argument("--config", required=True)
  p.add_argument("--workdir", required=True, help="on a disk all nodes see, or gs://")
  p.add_argument("--venv", default=os.path.expanduser("~/mmscale-venv"))
  p.add_argument("--repo", default=os.getcwd(), help="the checkout the nodes run from")
  p.add_argument("--script", default="", help="where to write the batch script "
                 "(default: <job_name>.sbatch in the current directory)")
  p.add_argument("--dry_run", action="store_true", help="print script and commands, submit nothing")
  p.add_argument("train_args", nargs="*", help="after --: more mmscale.train flags")
  args = p.parse_args(argv)
  if args.nodes < 1 or args.gpus_per_node < 1:
    p.error("--nodes and --gpus_per_node must be >= 1")
  return args


def main(argv=None) -> int:
  args = parse(sys.argv[1:] if argv is None else argv)
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
  sys.exit(main())
