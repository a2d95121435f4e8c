"""Launchers: the exact commands that train + evaluate one point, and how they are run.

Each launcher turns a `Job` into shell command strings (printed by `--dry_run`, so a person can
copy them) and runs or submits them. All of them call only the public entry points
`python -m mmscale.train` and `python -m mmscale.eval` with the point's `--config` and
`--config.x=y` flags, so a point runs the same way on a laptop, a TPU pod and a SLURM cluster.

- local: runs train then eval here, in subprocesses, blocking; output goes to the point's log;
         with `--workers=N`, N points at once, each pinned to its share of the CPUs.
- tpu:   `gcloud compute tpus tpu-vm ssh NAME --zone=Z --worker=all --command='cd REPO && ...'`:
         every worker of the pod slice runs the same command (JAX multi-host SPMD); blocks.
- slurm: `sbatch --wrap='srun ... && srun ...'`: one task per node (`--ntasks-per-node=1`), the
         trainer initialises jax.distributed from SLURM's environment; returns at submission.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import shlex
import subprocess
import tempfile

from mmscale import paths
from mmscale.registry import Registry
from mmscale.scaling.spec import Point


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
  """Flags shared by the launchers (mmscale/sweep.py documents each)."""
  python: str = "python"
  train_module: str = "mmscale.train"
  eval_module: str = "mmscale.eval"
  repo_dir: str = "mmscale"  # remote checkout (tpu, slurm)
  tpu_name: str = "mmscale-tpu"
  tpu_zone: str = "us-central2-b"
  tpu_project: str = ""
  slurm_nodes: int = 1
  slurm_gpus_per_node: int = 8
  slurm_partition: str = ""
  slurm_time: str = "24:00:00"
  slurm_extra: tuple = ()


@dataclasses.dataclass(frozen=True)
class Job:
  point: Point
  workdir: str  # where the entry points write (remote path for tpu/slurm when set)


@dataclasses.dataclass
class Outcome:
  status: str  # "done" | "failed" | "submitted"
  detail: str = ""


def entry_argv(opts: LaunchOptions, module: str, job: Job) -> list[str]:
  return [opts.python, "-m", module] + job.point.config_flags() + [f"--workdir={job.workdir}"]


def train_and_eval(opts: LaunchOptions, job: Job, prefix: tuple = ()) -> str:
  """`train && eval` as one shell line; `prefix` (e.g. srun) goes before each."""
  return " && ".join(shlex.join([*prefix, *entry_argv(opts, m, job)])
                     for m in (opts.train_module, opts.eval_module))


def _run_logged(argv, log_path: str, env=None, cpus=None) -> int:
  """Runs `argv` (a shell line if a str), appending the command and its output to the log.

  With `cpus` (LocalLauncher only) the process and its children are pinned to those CPUs, set in
  the child before exec; the log line names them (`# cpus=0,1`).
  """
  with _appending(log_path) as log:
    pinned = f"  # cpus={','.join(map(str, cpus))}" if cpus else ""
    log.write(f"\n$ {argv if isinstance(argv, str) else shlex.join(argv)}{pinned}\n")
    log.flush()
    return subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                          shell=isinstance(argv, str), check=False,
                          preexec_fn=_pin_to(cpus)).returncode


@contextlib.contextmanager
def _appending(log_path: str):
  """A local text file whose contents end up appended to `log_path`: the log itself when local
  (so it grows while the command runs), else a temporary file appended to the remote log when
  the command ends (an object store cannot append to an object being written)."""
  if not paths.is_remote(log_path):
    with open(log_path, "a") as log:
      yield log
    return
  with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as log:
    try:
      yield log
    finally:
      log.flush()
      log.seek(0)
      paths.append_text(log_path, log.read())


def _pin_to(cpus):
  """A preexec_fn pinning the child to `cpus`, or None when there is nothing to pin or the OS
  cannot (no os.sched_setaffinity outside Linux). The child runs only this one system call
  before exec, which keeps preexec_fn's hazards with threads (the `--workers` sweep) at bay."""
  if not cpus or not hasattr(os, "sched_setaffinity"):
    return None
  return functools.partial(os.sched_setaffinity, 0, frozenset(cpus))


class LocalLauncher:
  """Runs here; the sweep process (or one of its `--workers` threads) waits. PYTHONPATH/XLA
  flags are inherited; `cpus` pins both entry points to a share of this machine's CPUs."""

  def __init__(self, opts: LaunchOptions):
    self.opts = opts

  def commands(self, job: Job) -> list[str]:
    return [shlex.join(entry_argv(self.opts, m, job))
            for m in (self.opts.train_module, self.opts.eval_module)]

  def run(self, job: Job, log_path: str, cpus=None) -> Outcome:
    for module in (self.opts.train_module, self.opts.eval_module):
      rc = _run_logged(entry_argv(self.opts, module, job), log_path, cpus=cpus)
      if rc:
        return Outcome("failed", f"{module} exited with {rc}")
    return Outcome("done")


class TpuLauncher:
  """One ssh to all workers of a TPU VM slice; the repo must be checked out at `repo_dir`."""

  def __init__(self, opts: LaunchOptions):
    self.opts = opts

  def commands(self, job: Job) -> list[str]:
    o = self.opts
    remote = f"cd {shlex.quote(o.repo_dir)} && {train_and_eval(o, job)}"
    argv = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", o.tpu_name, f"--zone={o.tpu_zone}"]
    argv += [f"--project={o.tpu_project}"] if o.tpu_project else []
    argv += ["--worker=all", f"--command={remote}"]
    return [shlex.join(argv)]

  def run(self, job: Job, log_path: str) -> Outcome:
    rc = _run_logged(self.commands(job)[0], log_path)
    return Outcome("done") if rc == 0 else Outcome("failed", f"gcloud exited with {rc}")


class SlurmLauncher:
  """One batch job per point; results are collected by a later sweep run (or --collect_only)."""

  def __init__(self, opts: LaunchOptions):
    self.opts = opts

  def commands(self, job: Job) -> list[str]:
    o = self.opts
    wrap = f"cd {shlex.quote(o.repo_dir)} && {train_and_eval(o, job, prefix=('srun',))}"
    argv = ["sbatch", "--parsable", f"--job-name=mmscale-{job.point.name}",
            f"--nodes={o.slurm_nodes}", "--ntasks-per-node=1",
            f"--gpus-per-node={o.slurm_gpus_per_node}", f"--time={o.slurm_time}",
            f"--output={os.path.join(job.workdir, 'slurm-%j.out')}"]
    argv += [f"--partition={o.slurm_partition}"] if o.slurm_partition else []
    argv += list(o.slurm_extra) + [f"--wrap={wrap}"]
    return [f"mkdir -p {shlex.quote(job.workdir)}", shlex.join(argv)]

  def run(self, job: Job, log_path: str) -> Outcome:
    mkdir, sbatch = self.commands(job)
    if _run_logged(mkdir, log_path):
      return Outcome("failed", "mkdir of the workdir failed")
    out = subprocess.run(sbatch, shell=True, capture_output=True, text=True, check=False)
    paths.append_text(log_path, f"\n$ {sbatch}\n{out.stdout}{out.stderr}")
    match = re.search(r"\d+", out.stdout)
    if out.returncode or not match:
      return Outcome("failed", f"sbatch exited with {out.returncode}: {out.stderr.strip()}")
    return Outcome("submitted", match.group(0))


LAUNCHERS = Registry("launcher")
LAUNCHERS.add("local", LocalLauncher)
LAUNCHERS.add("tpu", TpuLauncher)
LAUNCHERS.add("slurm", SlurmLauncher)


def get_launcher(name: str, opts: LaunchOptions):
  """The launcher registered as `name`; an unknown name raises `UnknownNameError`."""
  return LAUNCHERS.get(name)(opts)
