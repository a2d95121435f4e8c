"""The results table: one row per finished point, written as DIR/results.json and DIR/results.csv.

A row holds the point's coordinates (tags), its config spec and overrides, the git commit it ran
at and the versions of the key packages (`package_versions`, JSON: `mmscale/versions.py`), the realised budget (steps, tokens = steps x batch x seq_len, FLOPs from
the trainer's own analytic
count, `mmscale.models.flops`, read back from its log), the final training loss, every eval result (`vqa/accuracy/<qtype>`,
`heldout/loss`, ...) and the arm's density (coverage, task diversity). The table is everything
`tools/report.py` needs: the report regenerates from it with no run directories. Run and sweep
directories may be local or in a bucket (`gs://...`, any etils.epath path).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess

from mmscale import paths, versions
from mmscale.errors import ConfigError

FIRST_COLUMNS = ("name", "group", "arm", "size", "tokens", "seed", "config", "overrides",
                 "git_commit", "package_versions", "steps", "batch_size", "seq_len", "tokens_trained", "flops",
                 "final_loss", "wall_s", "coverage", "task_diversity")


def git_commit(repo_dir: str) -> str:
  """HEAD, with '+dirty' when the working tree has changes (the run is then not exactly HEAD)."""
  def git(*args):
    return subprocess.run(["git", "-C", repo_dir, *args], capture_output=True, text=True,
                          check=False).stdout.strip()
  head = git("rev-parse", "HEAD") or "unknown"
  return head + ("+dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def budget(config) -> dict:
  """What the point trains on: steps, rows, seq_len and tokens = steps x rows x seq_len."""
  rows, seq_len, steps = config.data.batch_size, config.data.seq_len, config.train.steps
  return {"steps": steps, "batch_size": rows, "seq_len": seq_len,
          "tokens_trained": steps * rows * seq_len}


def read_metrics(workdir: str) -> dict:
  """Final loss and step from the trainer's metrics.jsonl (the last logged line), the first
  logged loss (step 1), and the training FLOPs per token.

  FLOPs per token come from the trainer's log: `tflops_per_device / tokens_per_s_per_device`
  is its analytic `flops_per_step / tokens_per_step` (step time and device count cancel), so
  the count is `mmscale.models.flops` exactly, without this package importing `models`
  (setup.cfg: scaling reaches training only through its entry point). A `flops_per_step` key,
  when the log has one, is used as is."""
  path = paths.join(workdir, "metrics.jsonl")
  first, last, per_token = {}, {}, None
  if paths.exists(path):
    for line in paths.read_text(path).splitlines():
      if not line.strip():
        continue
      last = json.loads(line)
      first = first or last
      if last.get("flops_per_step") and last.get("tokens_per_step"):
        per_token = last["flops_per_step"] / last["tokens_per_step"]
      elif last.get("tflops_per_device") and last.get("tokens_per_s_per_device"):
        per_token = 1e12 * last["tflops_per_device"] / last["tokens_per_s_per_device"]
  return {"final_loss": last.get("loss"), "final_step": last.get("step"),
          "first_loss": first.get("loss"), "flops_per_token": per_token}


def read_eval(workdir: str) -> dict | None:
  path = paths.join(workdir, "eval", "results.json")
  if not paths.exists(path):
    return None
  results = paths.read_json(path)
  results.pop("package_versions", None)  # the row records the sweep's own
  return {("eval_step" if k == "step" else k): v for k, v in results.items()}


def make_row(point, config, workdir: str, commit: str, density: dict, wall_s) -> dict:
  tags = point.tag_dict
  row = {"name": point.name, "group": tags.get("group", ""), **tags, "config": point.config,
         "overrides": json.dumps(point.override_dict, sort_keys=True), "git_commit": commit,
         "package_versions": json.dumps(versions.package_versions(), sort_keys=True),
         **budget(config), **read_metrics(workdir), "wall_s": wall_s, **density}
  if row["flops_per_token"] is not None:
    row["flops"] = row["flops_per_token"] * row["tokens_trained"]
  row.update(read_eval(workdir) or {})
  return row


def run_row(name: str, workdir: str, *, group: str = "", commit: str = "") -> dict:
  """The row of a training run made outside a sweep (`bash launch/local.sh`, `python -m
  mmscale.train` + `python -m mmscale.eval`), with a sweep point's columns so that
  `tools/report.py` reads it: the budget from W/config.json, losses and FLOPs from
  W/metrics.jsonl, every metric of W/eval/results.json. `package_versions` are the evaluation's
  (the stack that produced the numbers); `git_commit` is the caller's (a run directory does not
  record one)."""
  config_path = paths.join(workdir, "config.json")
  if not paths.exists(config_path):
    raise ConfigError(f"run '{name}'", f"no config.json under {workdir}")
  results = read_eval(workdir)
  if results is None:
    raise ConfigError(f"run '{name}'", f"no eval/results.json under {workdir}: evaluate it first "
                      "(python -m mmscale.eval --config=... --workdir=...)")
  config = paths.read_json(config_path)
  used = paths.read_json(paths.join(workdir, "eval", "results.json")).get("package_versions") or {}
  rows, seq_len = int(config["data"]["batch_size"]), int(config["data"]["seq_len"])
  metrics = read_metrics(workdir)
  steps = int(results.get("eval_step") or config["train"]["steps"])  # the checkpoint evaluated
  row = {"name": name, "group": group, "seed": config.get("seed"), "git_commit": commit,
         "package_versions": json.dumps(used, sort_keys=True), "steps": steps,
         "tokens": steps * rows * seq_len, "batch_size": rows, "seq_len": seq_len,
         "tokens_trained": steps * rows * seq_len, **metrics}
  if row["flops_per_token"] is not None:
    row["flops"] = row["flops_per_token"] * row["tokens_trained"]
  if set((results.get("metric_steps") or {}).values()) <= {results.get("eval_step")}:
    results.pop("metric_steps", None)  # every metric is from the last evaluation: say nothing
  for key in ("metric_steps", "decoding"):
    if key in results:
      results[key] = json.dumps(results[key], sort_keys=True)
  row.update(results)
  return row


def _columns(rows: list[dict]) -> list[str]:
  seen = [c for c in FIRST_COLUMNS if any(c in r for r in rows)]
  for r in rows:
    seen += [k for k in r if k not in seen]
  return seen


def write_table(sweep_dir: str, rows: list[dict], failed: list[dict], pending: list[dict]) -> str:
  """Writes results.json ({rows, failed, pending}) and results.csv (rows only); returns the CSV's
  path."""
  paths.write_json(paths.join(sweep_dir, "results.json"),
                   {"rows": rows, "failed": failed, "pending": pending}, indent=1)
  return write_csv(rows, paths.join(sweep_dir, "results.csv"))


def write_csv(rows: list[dict], path: str) -> str:
  """The rows as CSV, in the sweep table's column order (local or `gs://...`)."""
  text = io.StringIO(newline="")
  writer = csv.DictWriter(text, fieldnames=_columns(rows))
  writer.writeheader()
  writer.writerows(rows)
  return paths.write_text(path, text.getvalue())


def _number(text: str):
  if text == "":
    return None
  try:
    return float(text)
  except ValueError:
    return text


def read_table(path: str) -> list[dict]:
  """Rows from a sweep dir, a results.json or a results.csv (CSV cells parsed back to numbers)."""
  if paths.is_dir(path):
    path = paths.join(path, "results.json") if paths.exists(
        paths.join(path, "results.json")) else paths.join(path, "results.csv")
  if path.endswith(".json"):
    data = paths.read_json(path)
    return data["rows"] if isinstance(data, dict) else data
  text = io.StringIO(paths.read_bytes(path).decode("utf-8"), newline="")  # quoted newlines kept
  return [{k: _number(v) for k, v in r.items()} for r in csv.DictReader(text)]
