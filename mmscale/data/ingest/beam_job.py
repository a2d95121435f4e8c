"""The ingestion job: an Apache Beam pipeline with one task per output shard, resumable.

```
plan (main process): units = source.units(num_shards); shard j gets units j, j+N, ...
Create(unfinished shards) | Reshuffle | ParDo(WriteShard)       # one worker task per shard
WriteShard: read units -> check -> encode -> DIR/records-j-of-N.arrayrecord.incomplete
            -> DIR/.ingest/shard-j.json (counts, skips) -> rename to the final shard name
finish (main process): sum shard stats -> DIR/skip_report.json; fail if skipped fraction is
            over max_skip_fraction, else DIR/manifest.json (records.read_manifest checks it)
```
Why one task per shard: a shard is the unit that is either finished (final name exists) or
redone from scratch, so a rerun after preemption skips finished shards *before* reading their
inputs, and any runner (DirectRunner here; Dataflow, Flink, Spark via `--runner`) can retry a
task without duplicating records. The output folder must be visible to every worker (a local or
shared filesystem). Progress: Beam metrics counters in namespace `mmscale.ingest`
(`records_written`, `skipped_<reason>`, `shards_written`, `shards_resumed`) plus one log line
per finished shard.
"""

import collections
import dataclasses
import json
import logging
import os
from typing import Sequence

from array_record.python import array_record_module

from mmscale import extras

beam = extras.require("apache_beam", "ingestion (mmscale.data.ingest.beam_job)")
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from mmscale.data import ingest, records  # noqa: E402
from mmscale.data.ingest import common  # noqa: E402
from mmscale import cli_flags  # noqa: E402
from mmscale.errors import DataError, RecordFormatError, UsageError  # noqa: E402

NAMESPACE = "mmscale.ingest"
STATE_DIR = ".ingest"
SKIP_REPORT = "skip_report.json"
_EXAMPLES_PER_REASON = 5


def _write_json(path: str, obj) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(tmp, path)


def _stats_path(out_dir: str, shard: int) -> str:
  return os.path.join(out_dir, STATE_DIR, f"shard-{shard:05d}.json")


def shard_finished(out_dir: str, shard: int, num_shards: int) -> bool:
  """A shard is finished once its final file and its stats file both exist."""
  return (os.path.isfile(os.path.join(out_dir, records.shard_name(shard, num_shards)))
          and os.path.isfile(_stats_path(out_dir, shard)))


class WriteShard(beam.DoFn):
  """(shard index, [unit]) -> the shard file and its stats; a finished shard is left alone."""

  def __init__(self, kind: str, input_spec: str, options: common.IngestOptions, out_dir: str,
               num_shards: int):
    self.kind, self.input_spec, self.options = kind, input_spec, options
    self.out_dir, self.num_shards = out_dir, num_shards
    self.records_written = beam.metrics.Metrics.counter(NAMESPACE, "records_written")
    self.shards_written = beam.metrics.Metrics.counter(NAMESPACE, "shards_written")
    self.shards_resumed = beam.metrics.Metrics.counter(NAMESPACE, "shards_resumed")
    self.skipped = {r: beam.metrics.Metrics.counter(NAMESPACE, f"skipped_{r}")
                    for r in common.SKIP_REASONS}
    self.source = None

  def setup(self):
    self.source = ingest.make_source(self.kind, self.input_spec, self.options)

  def process(self, element):
    shard, units = element
    if shard_finished(self.out_dir, shard, self.num_shards):
      self.shards_resumed.inc()
      return
    final = os.path.join(self.out_dir, records.shard_name(shard, self.num_shards))
    tmp = final + ".incomplete"
    counts, skipped = collections.Counter(), collections.Counter()
    examples = collections.defaultdict(list)
    writer = array_record_module.ArrayRecordWriter(tmp, records.WRITER_OPTIONS)
    try:
      for unit in units:
        for item in self.source.read(unit):
          if isinstance(item, dict):
            try:
              data = records.encode_record(item)
            except RecordFormatError as e:
              item = common.Skipped("invalid_record", str(item.get("id")), str(e))
            else:
              writer.write(data)
              counts[item["kind"]] += 1
              self.records_written.inc()
              continue
          skipped[item.reason] += 1
          self.skipped[item.reason].inc()
          if len(examples[item.reason]) < _EXAMPLES_PER_REASON:
            examples[item.reason].append(f"{item.where}: {item.detail}"[:300])
          logging.debug("ingest: skipped %s (%s): %s", item.where, item.reason, item.detail)
    finally:
      writer.close()
    n = sum(counts.values())
    _write_json(_stats_path(self.out_dir, shard), {
        "shard": shard, "path": os.path.basename(final), "num_records": n,
        "counts": dict(counts), "skipped": dict(skipped), "examples": dict(examples)})
    os.replace(tmp, final)
    self.shards_written.inc()
    logging.info("ingest: shard %d/%d done: %d records, %d skipped %s", shard + 1,
                 self.num_shards, n, sum(skipped.values()), dict(skipped))


def plan(source, num_shards: int) -> list[list]:
  """Deals the source's units over shards (deterministic, so a rerun plans the same shards)."""
  units = source.units(num_shards)
  n = max(1, min(num_shards, len(units)))
  return [units[j::n] for j in range(n)]


def _check_plan(out_dir: str, job: dict) -> None:
  """Refuses to resume into a folder that another job (other input, shards) started."""
  path = os.path.join(out_dir, STATE_DIR, "job.json")
  if os.path.isfile(path):
    with open(path) as f:
      old = json.load(f)
    if old != job:
      raise DataError(f"{out_dir} holds a different ingest job ({path}); remove the folder or "
                      "choose another --out")
  else:
    _write_json(path, job)


def default_beam_args(beam_args: Sequence[str]) -> list[str]:
  """DirectRunner with 2 local worker processes unless the caller chose a runner or mode."""
  args = list(beam_args)
  if not any(a.startswith("--runner") for a in args):
    args.append("--runner=DirectRunner")
  runner = next(a for a in args if a.startswith("--runner")).split("=", 1)[-1]
  if runner in ("DirectRunner", "direct"):
    if not any(a.startswith("--direct_running_mode") for a in args):
      args.append("--direct_running_mode=multi_processing")
    if not any(a.startswith("--direct_num_workers") for a in args):
      args.append("--direct_num_workers=2")
  return args


def _log_metrics(result) -> None:
  try:
    counters = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(NAMESPACE))
    totals = collections.Counter()
    for c in counters["counters"]:
      totals[c.key.metric.name] += c.committed or 0
    logging.info("ingest: beam counters %s", dict(totals))
  except Exception as e:  # some runners do not report metrics; progress is in the logs anyway
    logging.info("ingest: beam metrics unavailable (%s)", e)


def finish(out_dir: str, num_shards: int, *, source_desc: str, provenance_args: dict,
           max_skip_fraction: float) -> dict:
  """Sums shard stats into the skip report and (if the skipped fraction is allowed) manifest."""
  stats = []
  for j in range(num_shards):
    if not shard_finished(out_dir, j, num_shards):
      raise DataError(f"{out_dir}: shard {j} did not finish; rerun the same command to resume")
    with open(_stats_path(out_dir, j)) as f:
      stats.append(json.load(f))
  counts, skipped = collections.Counter(), collections.Counter()
  examples = collections.defaultdict(list)
  for s in stats:
    counts.update(s["counts"])
    skipped.update(s["skipped"])
    for r, ex in s["examples"].items():
      examples[r] += ex[:_EXAMPLES_PER_REASON - len(examples[r])]
  num_records, num_skipped = sum(counts.values()), sum(skipped.values())
  fraction = num_skipped / max(num_records + num_skipped, 1)
  report = {"inputs": num_records + num_skipped, "records": num_records,
            "skipped": num_skipped, "skip_fraction": fraction,
            "max_skip_fraction": max_skip_fraction, "reasons": dict(sorted(skipped.items())),
            "examples": dict(sorted(examples.items()))}
  _write_json(os.path.join(out_dir, SKIP_REPORT), report)
  logging.info("ingest: %d records, %d skipped (%.4f) by reason %s", num_records, num_skipped,
               fraction, report["reasons"])
  if fraction > max_skip_fraction:
    raise DataError(
        f"ingest skipped {num_skipped} of {num_records + num_skipped} inputs ({fraction:.3f}), "
        f"more than --max_skip_fraction={max_skip_fraction}; reasons {report['reasons']}; "
        f"examples in {os.path.join(out_dir, SKIP_REPORT)}. No manifest written; fix the input "
        "or raise the threshold and rerun (finished shards are kept)")
  manifest = records.write_manifest(
      out_dir, [(s["path"], s["num_records"]) for s in stats], dict(counts), source=source_desc,
      provenance=[records.provenance_entry("ingest", provenance_args)])
  records.read_manifest(out_dir)  # the reader's checks, before anyone trusts the folder
  return manifest


def run_ingest(kind: str, input_spec: str, out_dir: str, *, num_shards: int = 1,
               options: common.IngestOptions = common.IngestOptions(),
               beam_args: Sequence[str] = (), max_skip_fraction: float = 0.01) -> dict:
  """Ingests `input_spec` with the source `kind` into the record folder `out_dir`.

  Returns the manifest. Raises DataError when more than `max_skip_fraction` of the inputs were
  skipped (the skip report is still written). Rerunning the same command resumes: finished
  shards are neither read nor written again.
  """
  if num_shards < 1:
    raise UsageError(f"--num_shards={num_shards}: expected >= 1")
  if not 0.0 <= max_skip_fraction <= 1.0:
    raise UsageError(f"--max_skip_fraction={max_skip_fraction}: expected a fraction in [0, 1]")
  source = ingest.make_source(kind, input_spec, options)
  shards = plan(source, num_shards)
  n = len(shards)
  os.makedirs(os.path.join(out_dir, STATE_DIR), exist_ok=True)
  job = {"source": kind, "input": input_spec, "num_shards": n,
         "options": dataclasses.asdict(options)}
  _check_plan(out_dir, job)
  manifest_path = os.path.join(out_dir, records.MANIFEST)
  if os.path.exists(manifest_path):
    os.remove(manifest_path)  # rewritten at the end; a half-updated folder must not look done
  todo = [(j, units) for j, units in enumerate(shards) if not shard_finished(out_dir, j, n)]
  logging.info("ingest: %s -> %s: %d shards, %d to write, %d already finished",
               source.describe(), out_dir, n, len(todo), n - len(todo))
  if todo:
    pipeline = beam.Pipeline(options=PipelineOptions(default_beam_args(beam_args)))
    _ = (pipeline | "Shards" >> beam.Create(todo) | "Spread" >> beam.Reshuffle()
         | "Write" >> beam.ParDo(WriteShard(kind, input_spec, options, out_dir, n)))
    result = pipeline.run()
    result.wait_until_finish()
    _log_metrics(result)
  return finish(out_dir, n, source_desc=source.describe(),
                provenance_args={**job, "shards_resumed": n - len(todo)},
                max_skip_fraction=max_skip_fraction)


def parse_tool_args(define_flags, argv: list[str], doc: str):
  """A Beam tool's command line: argv = [program, *flags] -> (the tool's flags, the rest as
  Beam's pipeline options). A flag that is neither the tool's nor Beam's is one `error:` line."""
  fv, rest = cli_flags.parse(define_flags, argv, doc=doc, known_only=True)
  try:
    check_beam_args(rest[1:])  # a mistyped flag is an error, not a dropped Beam option
  except UsageError as e:
    cli_flags.usage_error(str(e))
  return fv, rest[1:]


def check_beam_args(beam_args: Sequence[str]) -> None:
  """Raises `UsageError` naming any `--flag` that neither the tool nor Beam's PipelineOptions
  define: Beam drops those with a log warning, so a mistyped tool flag would be lost silently."""
  known = set(PipelineOptions([]).get_all_options(drop_default=False))
  unknown = [a for a in beam_args if a.startswith("-")
             and a.lstrip("-").split("=", 1)[0].replace("-", "_") not in known]
  if unknown:
    raise UsageError(f"unknown flag(s) {' '.join(unknown)}: neither this tool's (--help) nor "
                     "Beam's pipeline options")
