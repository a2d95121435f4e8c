"""Learning curves: every evaluation a run made during training, as one long table, and when each
question type became learnable.

The evaluator hook writes `W/eval/step_<N>.json` at each evaluation
(`mmscale.eval.runner.write_results`); `collect` turns the runs' files into rows `run, step,
tokens, <every numeric metric>` with tokens = step x data.batch_size x data.seq_len from
`W/config.json` (the global batch in rows, as the trainer counts them). The table (CSV) is what the
report reads, so the committed report regenerates without the run directories.

Learnable at: a final score says whether a type was learned, not when; the first evaluated step
where accuracy beats the majority baseline by at least MIN_GAP *and* by more than chance says
when. The chance check is a one-sided exact binomial test of k = round(accuracy x n) correct out
of n = `vqa/count/<qtype>` questions against the majority rate (p < ALPHA): 0.10 over majority on
30 questions is not evidence, on 1,500 it is.
"""

from __future__ import annotations

import csv
import io
import math
import re

from scipy import stats

from mmscale import paths
from mmscale.errors import ConfigError
from mmscale.scaling import plots

ACC, MAJ, COUNT = "vqa/accuracy/", "vqa/majority/", "vqa/count/"
FORM_MAJ = "vqa/form_majority/"
MIN_GAP = 0.10
ALPHA = 0.01
FIRST_COLUMNS = ("run", "step", "tokens")
_STEP_FILE = re.compile(r"step_(\d+)\.json$")


def parse_run(text: str) -> tuple[str, str]:
  """'NAME=WORKDIR' -> (NAME, WORKDIR)."""
  name, sep, workdir = text.partition("=")
  if not sep or not name or not workdir:
    raise ConfigError(f"--run '{text}'", "expected NAME=WORKDIR")
  return name, workdir


def tokens_per_step(workdir: str) -> int:
  """data.batch_size x data.seq_len from the run's config.json."""
  path = paths.join(workdir, "config.json")
  if not paths.exists(path):
    raise ConfigError(f"run '{workdir}'", "no config.json (needed for tokens per step)")
  data = paths.read_json(path)["data"]
  return int(data["batch_size"]) * int(data["seq_len"])


def _numeric(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_run(name: str, workdir: str) -> list[dict]:
  """One row per `eval/step_<N>.json` of the run (local or `gs://...`), by step."""
  files = {int(m.group(1)): p for p in paths.glob(paths.join(workdir, "eval"), "step_*.json")
           if (m := _STEP_FILE.search(p))}
  if not files:
    raise ConfigError(f"run '{name}'", f"no eval/step_*.json under {workdir}")
  per_step = tokens_per_step(workdir)
  rows = []
  for step in sorted(files):
    results = paths.read_json(files[step])
    metrics = {k: v for k, v in sorted(results.items()) if k != "step" and _numeric(v)}
    rows.append({"run": name, "step": step, "tokens": step * per_step, **metrics})
  return rows


def collect(runs) -> list[dict]:
  """Rows of every (name, workdir), in the order given."""
  return [row for name, workdir in runs for row in read_run(name, workdir)]


def write_csv(rows: list[dict], path: str) -> str:
  columns = list(FIRST_COLUMNS)
  for r in rows:
    columns += [k for k in r if k not in columns]
  text = io.StringIO(newline="")
  writer = csv.DictWriter(text, fieldnames=columns)
  writer.writeheader()
  writer.writerows(rows)
  return paths.write_text(path, text.getvalue())


def read_csv(path: str) -> list[dict]:
  """Rows back from write_csv: `run` as text, every other cell a float or None (empty)."""
  text = io.StringIO(paths.read_bytes(path).decode("utf-8"), newline="")
  return [{k: (v if k == "run" else (float(v) if v != "" else None)) for k, v in r.items()}
          for r in csv.DictReader(text)]


def qtypes(rows) -> list[str]:
  keys = {k[len(ACC):] for r in rows for k in r if k.startswith(ACC) and r[k] is not None}
  return sorted(keys - {"all"}) + (["all"] if "all" in keys else [])


def majority(row: dict, qtype: str):
  """The baseline of `qtype`: the form majority (each question template's most common answer,
  `mmscale.eval.vqa.form_majority_hits`) when the evaluation reports it, as it is the stronger
  'knows the format, sees nothing' baseline; else the per-type majority. The evaluator gives no
  per-type majority for `all`; there it is the
  accuracy of answering each type's majority answer: the per-type majorities weighted by their
  question counts, over the top-level types (sub-groups like knowledge_heldout are left out, they
  would count questions twice) when their counts add up to `vqa/count/all`."""
  if row.get(FORM_MAJ + qtype) is not None:
    return row[FORM_MAJ + qtype]
  if row.get(MAJ + qtype) is not None:
    return row[MAJ + qtype]
  if qtype != "all":
    return None
  types = [t for t in qtypes([row]) if t != "all"]
  top = [t for t in types if not any(t.startswith(o + "_") for o in types if o != t)]
  pairs = [(row.get(MAJ + t), row.get(COUNT + t)) for t in top]
  if not pairs or any(m is None or n is None for m, n in pairs):
    return None
  total = sum(n for _, n in pairs)
  if not total or total != row.get(COUNT + "all"):
    return None
  return sum(m * n for m, n in pairs) / total


def binomial_p(accuracy: float, base: float, n: int) -> float:
  """One-sided exact binomial p of >= round(accuracy n) correct of n when the rate is `base`."""
  k = round(accuracy * n)
  return float(stats.binom.sf(k - 1, n, base))


def learnable(row: dict, qtype: str):
  """(learned?, gap, p) at this evaluation; None when the row lacks accuracy, baseline or n."""
  acc, base, n = row.get(ACC + qtype), majority(row, qtype), row.get(COUNT + qtype)
  if acc is None or base is None or not n:
    return None
  gap, p = acc - base, binomial_p(acc, base, int(n))
  return gap >= MIN_GAP and p < ALPHA, gap, p


def learnable_at(run_rows: list[dict], qtype: str):
  """The first row (by step) at which `qtype` is learnable, with its gap and p; else None."""
  for row in sorted(run_rows, key=lambda r: r["step"]):
    got = learnable(row, qtype)
    if got and got[0]:
      return row, got[1], got[2]
  return None


def runs(rows) -> dict:
  """Rows by run, by step. A run evaluates the same questions each time, so its form-majority
  baseline is the same at every step: evaluations made before the evaluator reported it take it
  from one that did (copies; the input rows are not changed)."""
  out = {}
  for r in rows:
    out.setdefault(str(r["run"]), []).append(dict(r))
  for rs in out.values():
    known = {}
    for r in rs:
      known.update({k: v for k, v in r.items() if k.startswith(FORM_MAJ) and v is not None})
    for r in rs:
      for k, v in known.items():
        if r.get(k) is None:
          r[k] = v
  return {k: sorted(v, key=lambda r: r["step"]) for k, v in out.items()}


def _fmt(x, spec=".3f") -> str:
  return "-" if x is None else format(x, spec)


def _table(header, body) -> list[str]:
  out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return out + ["| " + " | ".join(str(c) for c in r) + " |" for r in body]


def learnable_table(rows) -> list[str]:
  body = []
  for name, rs in runs(rows).items():
    last = int(rs[-1]["step"])
    for q in qtypes(rs):
      hit = learnable_at(rs, q)
      if hit is None:
        body.append([name, q, f"not within {last} steps", "-", "-", "-", "-", "-"])
        continue
      row, gap, p = hit
      body.append([name, q, int(row["step"]), _fmt(row["tokens"], ".0f"),
                   _fmt(row[ACC + q]), _fmt(majority(row, q)), f"{gap:+.3f}", f"{p:.2g}"])
  return _table(["run", "question type", "learnable at step", "tokens", "accuracy", "majority",
                 "gap", "p (one-sided binomial)"], body)


def _majority_cell(rs, q) -> str:
  vals = [m for m in (majority(r, q) for r in rs) if m is not None]
  if not vals:
    return "-"
  lo, hi = min(vals), max(vals)
  return f"{lo:.3f}" if hi - lo < 5e-4 else f"{lo:.3f}-{hi:.3f}"


def run_table(rs) -> list[str]:
  """Accuracy per question type at each evaluation; the last row is the majority baseline."""
  types = qtypes(rs)
  body = [[int(r["step"]), _fmt(r["tokens"], ".0f")] + [_fmt(r.get(ACC + q)) for q in types]
          for r in rs]
  body.append(["majority", ""] + [_majority_cell(rs, q) for q in types])
  return _table(["step", "tokens"] + types, body)


def run_plot(name, rs, path) -> str:
  types = qtypes(rs)
  series = {q: ([r["tokens"] for r in rs if r.get(ACC + q) is not None],
                [r[ACC + q] for r in rs if r.get(ACC + q) is not None]) for q in types}
  base = {q: ([r["tokens"] for r in rs if majority(r, q) is not None],
              [majority(r, q) for r in rs if majority(r, q) is not None]) for q in types}
  return plots.curves(series, base, path, title=name)


def section(rows, plot_dir: str, out_dir: str, source: str = "") -> list[str]:
  """The report's `## Learning curves`: the learnable-at table, then per run a table and a plot."""
  lines = ["## Learning curves", "",
           f"Every evaluation made during training (`W/eval/step_<N>.json`, collected by "
           f"`tools/curves.py`{f' into `{source}`' if source else ''}); tokens = step × "
           "data.batch_size × data.seq_len. Majority (the baseline): when the evaluation reports it, "
           "the form majority, the accuracy of giving each question template's most common "
           "answer (what a model that knows the answer format and priors but sees nothing gets; "
           "for knowledge questions, which mix templates with different answer sets, it is well "
           "above the type's single most common answer); else the accuracy of always giving the "
           "type's most common answer (for `all`: each type's majority answer, weighted by "
           "question count).", "",
           f"**Learnable at** is the first evaluated step where accuracy − majority ≥ "
           f"{MIN_GAP:.2f} and the gap is significant: a one-sided exact binomial test of round(accuracy × n) "
           f"correct out of n = `vqa/count/<qtype>` questions against the majority rate gives "
           f"p < {ALPHA}. \"not within N steps\": never, up to the last evaluation (step N).", ""]
  lines += ["### Learnable at", ""] + learnable_table(rows) + [""]
  for name, rs in runs(rows).items():
    safe = re.sub(r"[^A-Za-z0-9_.=-]", "_", name)
    png = run_plot(name, rs, paths.join(plot_dir, f"curve_{safe}.png"))
    lines += [f"### Run: {name}", ""] + run_table(rs) + [
        "", f"![learning curve {name}]({paths.relative(png, out_dir)})", ""]
  return lines
