"""The sweep loop: every point trained + evaluated once, resumable, into one results table.

State lives in files under `DIR/points/<name>/` (also the point's workdir), so a sweep can be
killed at any moment and rerun with the same command:
- `DONE`:      the point's results-table row (JSON); the point is skipped from then on.
- `FAILED`:    attempts and the log tail of the last failure; a rerun tries the point again.
- `SUBMITTED`: a batch job id (slurm); the point is collected once its eval results exist.
- `log.txt`:   every command run for the point and its output; `point.json`: spec and commands.
A point whose eval results already exist (e.g. the sweep died after eval, before DONE) is
collected without rerunning; the trainer itself resumes an interrupted run from its checkpoint.
DIR may be local or in a bucket (`gs://...`, any etils.epath path): then every point trains and
evaluates into the bucket, and the markers, logs and table are written there too.

With `workers` > 1 (local launcher only) up to that many points run at once, on threads that each
wait for their point's subprocesses; worker slot k pins its subprocesses to the k-th of `workers`
contiguous chunks of the sweep's CPUs (`cpu_shares`). Statuses, the table and its row order are
the same as with one worker.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import fnmatch
import functools
import logging
import os
import queue
import threading
import time

from mmscale import paths
from mmscale.errors import ConfigError
from mmscale.scaling import density as density_lib
from mmscale.scaling import results as results_lib
from mmscale.scaling.launchers import Job, get_launcher
from mmscale.scaling.spec import Point

LOG_TAIL_LINES = 30


@dataclasses.dataclass
class SweepOptions:
  sweep_dir: str
  launcher: str = "local"
  dry_run: bool = False
  only: str = ""  # fnmatch pattern (or substring) over point names
  retries: int = 1  # extra attempts after a failure, per sweep run
  collect_only: bool = False
  remote_sweep_dir: str = ""  # where tpu/slurm workers see DIR (default: DIR itself)
  repo_dir: str = "."  # for the git commit
  workers: int = 1  # points run at once (local launcher only), each on its share of the CPUs


def select(points, pattern: str):
  if not pattern:
    return list(points)
  glob = any(ch in pattern for ch in "*?[")
  return [p for p in points if (fnmatch.fnmatch(p.name, pattern) if glob else pattern in p.name)]


def _read_json(path: str):
  return paths.read_json(path)


def _write_json(path: str, obj) -> None:
  paths.write_json(path, obj, indent=1)  # atomic: a kill never leaves half a marker


def log_tail(path: str, lines: int = LOG_TAIL_LINES) -> str:
  if not paths.exists(path):
    return ""
  text = paths.read_bytes(path).decode("utf-8", errors="replace")
  return "".join(text.splitlines(keepends=True)[-lines:])


def split_cpus(cpus, workers: int) -> list[tuple]:
  """`cpus` in `workers` contiguous chunks (sizes differ by at most one); with fewer CPUs than
  workers, slot k gets CPU k mod len(cpus), so chunks share."""
  cpus = sorted(cpus)
  if len(cpus) < workers:
    return [(cpus[k % len(cpus)],) for k in range(workers)]
  bounds = [len(cpus) * k // workers for k in range(workers + 1)]
  return [tuple(cpus[bounds[k]:bounds[k + 1]]) for k in range(workers)]


def cpu_shares(workers: int) -> list:
  """Worker slot k -> the CPUs its points are pinned to: the CPUs this process may use, split
  by `split_cpus`; None per slot where the OS cannot pin (no os.sched_setaffinity)."""
  if not hasattr(os, "sched_setaffinity"):
    _log_no_pinning()
    return [None] * workers
  return split_cpus(os.sched_getaffinity(0), workers)


@functools.lru_cache(maxsize=None)
def _log_no_pinning() -> None:
  logging.info("os.sched_setaffinity is not available here: parallel points are not pinned")


class Sweep:
  """Runs (or prints) the points of one sweep; see the module docstring for the file protocol."""

  def __init__(self, points, opts: SweepOptions, launch_opts):
    if opts.workers < 1 or (opts.workers > 1 and opts.launcher != "local"):
      raise ValueError(f"workers={opts.workers}: must be >= 1, and > 1 only with the local "
                       f"launcher (not {opts.launcher})")
    self.points, self.opts = points, opts
    self.launcher = get_launcher(opts.launcher, launch_opts)
    self.commit = results_lib.git_commit(opts.repo_dir)
    self._collect_lock = threading.Lock()  # workers: one density computation + DONE at a time
    self._stop = threading.Event()  # workers: set on Ctrl-C; no new point or attempt starts

  def point_dir(self, point) -> str:
    return paths.join(self.opts.sweep_dir, "points", point.name)

  def job(self, point) -> Job:
    if self.opts.launcher == "local":
      return Job(point, paths.absolute(self.point_dir(point)))
    root = self.opts.remote_sweep_dir or paths.absolute(self.opts.sweep_dir)
    return Job(point, paths.join(root, "points", point.name))

  def dry_run(self, out=print) -> None:
    for point in self.points:
      out(f"# {point.name}")
      for command in self.launcher.commands(self.job(point)):
        out(command)

  def _collect(self, point, wall_s=None) -> dict | None:
    """The point's row if its eval results exist (then DONE is written), else None."""
    workdir = self.point_dir(point)
    if results_lib.read_eval(workdir) is None:
      return None
    config = point.load()
    components = _arm_components(point)
    dens = density_lib.arm_density(config.data.world_dir, components,
                                   paths.join(self.opts.sweep_dir, "density"))
    row = results_lib.make_row(point, config, workdir, self.commit, dens, wall_s)
    _write_json(paths.join(workdir, "DONE"), row)
    for stale in ("FAILED", "SUBMITTED"):
      paths.remove(paths.join(workdir, stale))
    return row

  def _run_point(self, point, cpus=None) -> str:
    """Runs one point with retries (pinned to `cpus`, local launcher only); returns its status."""
    workdir = self.point_dir(point)
    paths.makedirs(workdir)
    job = self.job(point)
    _write_json(paths.join(workdir, "point.json"), {
        "name": point.name, "config": point.config, "overrides": point.override_dict,
        "tags": point.tag_dict, "commands": self.launcher.commands(job), "git_commit": self.commit})
    log_path = paths.join(workdir, "log.txt")
    failed_path = paths.join(workdir, "FAILED")
    previous = _read_json(failed_path)["attempts"] if paths.exists(failed_path) else 0
    for attempt in range(1, self.opts.retries + 2):
      logging.info("point %s: attempt %d (%s%s)", point.name, attempt, self.opts.launcher,
                   "" if cpus is None else f", cpus {','.join(map(str, cpus))}")
      start = time.time()
      outcome = self.launcher.run(job, log_path, **({} if cpus is None else {"cpus": cpus}))
      if outcome.status == "submitted":
        _write_json(paths.join(workdir, "SUBMITTED"), {"job_id": outcome.detail})
        return "submitted"
      if outcome.status == "done":
        with self._collect_lock:
          row = self._collect(point, round(time.time() - start, 1))
        if row:
          return "done"
      detail = outcome.detail or "finished without eval/results.json"
      _write_json(failed_path, {"attempts": previous + attempt, "error": detail,
                                "log_tail": log_tail(log_path)})
      logging.warning("point %s failed (%s)", point.name, detail)
      if self._stop.is_set():
        break
    return "failed"

  def _existing_status(self, point) -> str | None:
    """The status of a point that needs no run (done, submitted, missing), else None."""
    workdir = self.point_dir(point)
    if paths.exists(paths.join(workdir, "DONE")):
      return "done"
    if self._collect(point) is not None:
      return "done"
    if paths.exists(paths.join(workdir, "SUBMITTED")):
      return "submitted"
    return "missing" if self.opts.collect_only else None

  def run(self) -> dict:
    """Runs every unfinished point (`workers` at once); writes the table; returns
    {status: [names]} with the names in the points' order."""
    if self.opts.workers > 1:
      status = self._run_parallel()
    else:
      status = {}
      for point in self.points:
        status[point.name] = self._existing_status(point) or self._run_point(point)
    self.write_table(status)
    by_status = {}
    for name, s in status.items():
      by_status.setdefault(s, []).append(name)
    return by_status

  def _run_parallel(self) -> dict:
    """Collects what needs no run, then runs the rest on `workers` threads, each point on a
    worker slot no other running point holds (and that slot's CPUs)."""
    status = {point.name: self._existing_status(point) for point in self.points}
    todo = [point for point in self.points if status[point.name] is None]
    free_slots = queue.Queue()
    for slot in range(self.opts.workers):
      free_slots.put(slot)
    run = functools.partial(self._run_on_free_slot, free_slots, cpu_shares(self.opts.workers))
    with concurrent.futures.ThreadPoolExecutor(self.opts.workers, "sweep-worker") as pool:
      futures = [pool.submit(run, point) for point in todo]
      try:
        for point, future in zip(todo, futures):
          status[point.name] = future.result()
      except BaseException:  # Ctrl-C (which the running points get too): start nothing more
        self._stop.set()
        for future in futures:
          future.cancel()
        raise
    return status

  def _run_on_free_slot(self, free_slots: queue.Queue, shares: list, point) -> str:
    """`_run_point` on a slot taken from `free_slots` (pinned to its share) and given back."""
    if self._stop.is_set():
      return "missing"
    slot = free_slots.get()  # never waits: as many slots as threads
    try:
      return self._run_point(point, shares[slot])
    finally:
      free_slots.put(slot)

  def write_table(self, status: dict) -> str:
    rows, failed, pending = [], [], []
    for point in self.points:
      workdir = self.point_dir(point)
      s = status.get(point.name)
      if s == "done":
        rows.append(_read_json(paths.join(workdir, "DONE")))
      elif s == "failed":
        failed.append({"name": point.name, **_read_json(paths.join(workdir, "FAILED"))})
      elif s is not None:
        pending.append({"name": point.name, "status": s})
    return results_lib.write_table(self.opts.sweep_dir, rows, failed, pending)


def _arm_components(point) -> list[str]:
  """The arm's own world arms: the mixture at vqa_share=0 when the config takes that argument."""
  tags = point.tag_dict
  spec = point.config
  if "vqa_share" in tags or "arm" in tags:
    path, _, arg = spec.partition(":")
    items = [i for i in arg.split(",") if i and not i.startswith("vqa_share=")]
    spec = f"{path}:{','.join(items + ['vqa_share=0'])}"
    try:
      config = Point(point.name, spec, point.overrides).load()
    except ConfigError as e:
      if "argument 'vqa_share'" not in str(e):
        raise
      config = point.load()  # a config file without a vqa_share argument: its mixture as it is
  else:
    config = point.load()
  return [k for k, w in config.data.mixture.items() if w > 0]
