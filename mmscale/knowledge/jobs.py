"""Apache Beam pipelines for the engine's stages (tools/enrich.py is the command line).

Map stages (describe, enrich, compare, filter, caption2vqa): the input's global index range is cut
into `num_shards` units; `Create(pending units) | Reshuffle | ParDo(MapUnit)` reads a unit with
random access, sends its records to the backend in batches (the openai backend keeps
`concurrency` requests in flight per worker) and writes one output shard. Group stages: `pair`
groups descriptors by block key (GroupByKey: blocked candidate retrieval), joins the chosen pairs
back to their records (CoGroupByKey) and writes pair records; `vqa2caption` groups VQA records by
image. Their outputs are keyed to shards by a hash of the record id and written per shard.

Every shard is written atomically with a done marker, so a rerun skips finished shards (and the
LLM cache makes redone requests free); a shard with transport failures (server down, retries
exhausted) is not marked done and is retried by the next run. Records of rejected or failed
inputs are not written; the summary counts them by reason.
"""
import dataclasses
import json
import logging
import os
import time
import zlib

from mmscale import extras

beam = extras.require("apache_beam", "the knowledge engine's Beam jobs")
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from mmscale.data import records  # noqa: E402
from mmscale.errors import UnknownNameError  # noqa: E402
from mmscale.knowledge import pairing, shards, stages  # noqa: E402
from mmscale.knowledge import vocab as vocab_lib  # noqa: E402
from mmscale.knowledge.llm import Usage, make_backend  # noqa: E402
from mmscale.registry import Registry  # noqa: E402

log = logging.getLogger("mmscale.knowledge")
NAMESPACE = "mmscale.knowledge"


@dataclasses.dataclass
class JobConfig:
  """Everything a worker needs to rebuild the stage context (picklable, no secrets)."""
  stage: str
  input_dir: str
  out_dir: str
  backend: str = "offline"
  backend_kwargs: dict = dataclasses.field(default_factory=dict)
  vocab: str | None = None
  kb: str | None = None
  with_facts: bool = True
  pair: dict = dataclasses.field(default_factory=dict)
  num_shards: int = 0
  batch_size: int = 64

  def context(self) -> stages.StageContext:
    kwargs = dict(self.backend_kwargs)
    if self.backend == "offline":
      kwargs.setdefault("vocab", self.vocab)
      kwargs.setdefault("kb", self.kb)
    backend = make_backend(self.backend, **kwargs)
    voc = (vocab_lib.load_vocabulary(self.vocab) if self.vocab
           else vocab_lib.Vocabulary(objects=[], attributes={}, relations=[]))
    step = {"stage": self.stage, "backend": backend.name, "model": backend.model,
            "prompt_version": stages.PROMPT_VERSIONS.get(self.stage, "")}
    return stages.StageContext(backend, voc, vocab_lib.load_kb(self.kb), self.with_facts,
                               pairing.PairConfig(**self.pair), step)


def _count(name: str, n: int = 1) -> None:
  Metrics.counter(NAMESPACE, name).inc(n)


def _tally(outcomes: list) -> dict:
  """{kept, rejected: {reason: n}, failed: {reason: n}} over (status, payload[, info])
  outcomes."""
  t = {"kept": 0, "records_out": 0, "rejected": {}, "failed": {}}
  for status, payload, *_ in outcomes:
    if status == stages.KEPT:
      t["kept"] += 1
      t["records_out"] += len(payload)
    else:
      t[status][payload] = t[status].get(payload, 0) + 1
  return t


class _WithContext(beam.DoFn):

  def __init__(self, cfg: JobConfig):
    super().__init__()
    self.cfg = cfg
    self.ctx = None

  def setup(self):
    self.ctx = self.cfg.context()

  def teardown(self):
    if self.ctx is not None:
      self.ctx.backend.close()

  def _take_usage(self) -> dict:
    """This worker's LLM usage since the last call (then reset), also added to the Beam
    counters `usage_<field>`, which the runner sums over every worker."""
    usage = self.ctx.backend.usage.to_json()
    self.ctx.backend.usage = Usage()
    for field, n in usage.items():
      if n:
        _count(f"usage_{field}", n)
    return usage

  def _finish_shard(self, name: str, outcomes: list, records_in: int, t0: float,
                    carried: Usage | None = None, groups_in: int | None = None):
    """Writes the shard and its marker. `carried`: the usage of the workers that made the
    outcomes (group stages call the LLM in an earlier step, on other workers)."""
    usage = Usage().add(self._take_usage()).add(carried or Usage()).to_json()
    tally = _tally(outcomes)
    for k in ("kept",):
      _count(k, tally[k])
    for status in ("rejected", "failed"):
      for reason, n in tally[status].items():
        _count(f"{status}:{reason}", n)
    marker = {"shard": name, "records_in": records_in, **tally, "usage": usage,
              "seconds": round(time.time() - t0, 3)}
    if groups_in is not None:
      marker["groups_in"] = groups_in
    if tally["failed"].get("transport"):
      shards.mark_pending(self.cfg.out_dir, name)
      log.warning("shard %s: %d transport failures; not marked done (rerun to resume)", name,
                  tally["failed"]["transport"])
      return {**marker, "done": False}
    recs = sorted((r for s, p, *_ in outcomes if s == stages.KEPT for r in p),
                  key=lambda r: r["id"])
    shards.write_shard(self.cfg.out_dir, name, recs, marker)
    log.info("shard %s done: %d in, %d kept, rejected %s, failed %s, %.1f rec/s", name,
             records_in, tally["kept"], tally["rejected"], tally["failed"],
             records_in / max(time.time() - t0, 1e-9))
    _count("shards_done")
    return {**marker, "done": True}


class MapUnit(_WithContext):
  """One output shard of a map stage: element = (shard name, start, stop)."""

  def process(self, unit):
    name, start, stop = unit
    t0 = time.time()
    reader = records.RecordReader(self.cfg.input_dir)
    outcomes = []
    try:
      for lo in range(start, stop, self.cfg.batch_size):
        batch = [reader[i] for i in range(lo, min(stop, lo + self.cfg.batch_size))]
        outcomes += stages.run_map_batch(self.cfg.stage, batch, self.ctx)
        _count("records_in", len(batch))
    finally:
      reader.close()
    yield self._finish_shard(name, outcomes, stop - start, t0)


class WriteKeyedShard(_WithContext):
  """Group stages: element = (shard index, [(status, payload[, info])]) -> the shard and its
  marker. `info` ({records_in, usage}) comes with outcomes made from several input records by
  an LLM call on another worker: the marker then counts input records, not groups, and that
  worker's usage."""

  def process(self, element):
    index, outcomes = element
    outcomes = list(outcomes)
    name = records.shard_name(index, self.cfg.num_shards)
    if shards.is_done(self.cfg.out_dir, name):
      _count("shards_skipped")
      return
    infos = [o[2] for o in outcomes if len(o) > 2]
    records_in = len(outcomes) - len(infos) + sum(i["records_in"] for i in infos)
    carried = Usage()
    for info in infos:
      carried.add(info["usage"])
    yield self._finish_shard(name, outcomes, records_in, time.time(), carried,
                             groups_in=len(outcomes))


class Vqa2CaptionGroups(_WithContext):
  """The VQA records of one image -> one caption (one LLM request), with the records it read
  and the usage it cost."""

  def process(self, element):
    key, recs = element
    recs = list(recs)
    _count("records_in", len(recs))
    status, payload = stages.vqa2caption_group(key, recs, self.ctx)
    yield _shard_of(key, self.cfg.num_shards), (status, payload, {
        "records_in": len(recs), "usage": self._take_usage()})


class ReadUnit(beam.DoFn):
  """Reads the records of (name, start, stop) from the input directory."""

  def __init__(self, input_dir: str):
    super().__init__()
    self.input_dir = input_dir

  def process(self, unit):
    _, start, stop = unit
    reader = records.RecordReader(self.input_dir)
    try:
      for i in range(start, stop):
        yield reader[i]
    finally:
      reader.close()


def _shard_of(key: str, num_shards: int) -> int:
  return zlib.crc32(key.encode()) % num_shards


def _units(cfg: JobConfig, total: int) -> list:
  n = cfg.num_shards
  return [(records.shard_name(j, n), j * total // n, (j + 1) * total // n) for j in range(n)]


def _pairs_in_block(element, pair_cfg: dict):
  block, items = element
  for a, b, sim in pairing.block_pairs(list(items), pairing.PairConfig(**pair_cfg)):
    yield a, (b, sim, block)


def _attach_first(element):
  _, group = element
  recs, pairs = list(group["rec"]), list(group["pair"])
  for b, sim, block in pairs:
    yield b, (recs[0], sim, block)


class _PairRecords(_WithContext):

  def process(self, element):
    _, group = element
    recs = list(group["rec"])
    for a, sim, block in group["first"]:
      rec = stages.pair_record(a, recs[0], sim, block, self.ctx)
      yield _shard_of(rec["id"], self.cfg.num_shards), (stages.KEPT, [rec])


def _candidate(rec, num_shards: int):
  if rec.get("descriptor"):
    yield beam.pvalue.TaggedOutput("cand", (pairing.block_key(rec["descriptor"]),
                                            (rec["id"], rec["descriptor"])))
    yield beam.pvalue.TaggedOutput("keyed", (rec["id"], rec))
  else:
    yield _shard_of(rec["id"], num_shards), (stages.REJECTED, "no_descriptor")


def _build_pair(p, cfg: JobConfig, units: list):
  recs = (p | "Units" >> beam.Create(units) | "Spread" >> beam.Reshuffle()
          | "Read" >> beam.ParDo(ReadUnit(cfg.input_dir)))
  split = recs | "Candidates" >> beam.FlatMap(_candidate, cfg.num_shards).with_outputs(
      "cand", "keyed", main="rejected")
  pairs = (split.cand | "Block" >> beam.GroupByKey()
           | "PairsInBlock" >> beam.FlatMap(_pairs_in_block, cfg.pair))
  firsts = ({"rec": split.keyed, "pair": pairs} | "JoinFirst" >> beam.CoGroupByKey()
            | "AttachFirst" >> beam.FlatMap(_attach_first))
  made = ({"rec": split.keyed, "first": firsts} | "JoinSecond" >> beam.CoGroupByKey()
          | "PairRecords" >> beam.ParDo(_PairRecords(cfg)))
  return (made, split.rejected) | "All" >> beam.Flatten()


def _build_vqa2caption(p, cfg: JobConfig, units: list):
  return (p | "Units" >> beam.Create(units) | "Spread" >> beam.Reshuffle()
          | "Read" >> beam.ParDo(ReadUnit(cfg.input_dir))
          | "ByImage" >> beam.Map(lambda r: (stages.image_key(r), r))
          | "Group" >> beam.GroupByKey() | "Caption" >> beam.ParDo(Vqa2CaptionGroups(cfg)))


# group stage -> builder(pipeline, cfg, units) of the PCollection of (shard, outcome) pairs.
GROUP_BUILDERS = Registry("group stage")
GROUP_BUILDERS.add("pair", _build_pair)
GROUP_BUILDERS.add("vqa2caption", _build_vqa2caption)


def check_stage(stage: str) -> None:
  """Raises `UnknownNameError` listing every stage, map and group, for a name that is neither;
  called before any input is read, so a misspelt stage fails at once."""
  if stage not in stages.MAP_STAGES and stage not in GROUP_BUILDERS:
    known = sorted(stages.MAP_STAGES.names() + GROUP_BUILDERS.names())
    raise UnknownNameError(f"unknown stage {stage!r}; known: {known}")


def pipeline_options(beam_args: list) -> PipelineOptions:
  """Beam options from the pass-through arguments; default: DirectRunner with one worker
  process per CPU (multi_processing), so a laptop run uses every core."""
  args = list(beam_args)
  names = {a.split("=")[0] for a in args}
  if "--runner" not in names:
    args.append("--runner=DirectRunner")
  runner = next((a.split("=", 1)[1] for a in args if a.startswith("--runner=")), "")
  if runner == "DirectRunner":
    if "--direct_running_mode" not in names:
      args.append("--direct_running_mode=multi_processing")
    if "--direct_num_workers" not in names and "--direct_running_mode=in_memory" not in args:
      args.append(f"--direct_num_workers={os.cpu_count() or 1}")
  return PipelineOptions(args)


def _summary(cfg: JobConfig, names: list, skipped: int, total_in: int, t0: float) -> dict:
  s = {"stage": cfg.stage, "input": cfg.input_dir, "out": cfg.out_dir, "backend": cfg.backend,
       "records_in": total_in, "kept": 0, "records_out": 0, "rejected": {}, "failed": {},
       "usage": Usage().to_json(), "shards": len(names), "shards_skipped": skipped}
  if cfg.stage in GROUP_BUILDERS:
    s["groups_in"] = 0
  done = [n for n in names if shards.is_done(cfg.out_dir, n)]
  usage = Usage()
  for n in done:
    m = shards.read_marker(cfg.out_dir, n)
    s["kept"] += m["kept"]
    s["records_out"] += m["records_out"]
    if "groups_in" in s:
      s["groups_in"] += m.get("groups_in", 0)
    for status in ("rejected", "failed"):
      for reason, k in m[status].items():
        s[status][reason] = s[status].get(reason, 0) + k
    usage.add(m["usage"])
  s["usage"] = usage.to_json()
  s["shards_done"] = len(done)
  s["complete"] = len(done) == len(names)
  s["seconds"] = round(time.time() - t0, 2)
  return s


def run(cfg: JobConfig, beam_args: list = ()) -> dict:
  """Runs (or resumes) one stage; returns the summary (also written to OUT/summary.json)."""
  t0 = time.time()
  check_stage(cfg.stage)
  manifest = records.read_manifest(cfg.input_dir)
  total = manifest["num_records"]
  if cfg.num_shards <= 0:
    cfg.num_shards = max(len(manifest["shards"]), -(-total // 2000), 1)
  if cfg.vocab is None:
    cfg.vocab = vocab_lib.find_world_file(cfg.input_dir)
  if cfg.backend == "offline" and not cfg.vocab:
    raise ValueError(f"{cfg.input_dir} is not inside a knowledge world: the offline backend needs "
                     "--vocab (a world.json, world directory or vocabulary JSON)")
  if cfg.kb is None and cfg.vocab:
    world_dir = cfg.vocab if os.path.isdir(cfg.vocab) else os.path.dirname(cfg.vocab)
    if os.path.isfile(os.path.join(world_dir, "kb.jsonl")):
      cfg.kb = os.path.join(world_dir, "kb.jsonl")
  if cfg.backend == "openai":
    cfg.backend_kwargs.setdefault("cache_dir", os.path.join(cfg.out_dir, "_llm_cache"))
    cfg.backend_kwargs.setdefault("invalid_answers_dir",
                                  os.path.join(cfg.out_dir, "_invalid_answers"))
  os.makedirs(cfg.out_dir, exist_ok=True)
  shards.clear_manifest(cfg.out_dir)
  shards.clear_pending(cfg.out_dir)
  units = _units(cfg, total)
  names = [u[0] for u in units]
  pending = [u for u in units if not shards.is_done(cfg.out_dir, u[0])]
  skipped = len(units) - len(pending)
  log.info("%s: %d records in %d shards, %d already done", cfg.stage, total, len(units), skipped)
  counters = {}
  if pending:
    with beam.Pipeline(options=pipeline_options(beam_args)) as p:
      if cfg.stage in stages.MAP_STAGES:
        _ = (p | "Units" >> beam.Create(pending) | "Spread" >> beam.Reshuffle()
             | "Process" >> beam.ParDo(MapUnit(cfg)))
      else:
        _ = (GROUP_BUILDERS.get(cfg.stage)(p, cfg, units) | "ByShard" >> beam.GroupByKey()
             | "Write" >> beam.ParDo(WriteKeyedShard(cfg)))
    counters = beam_counters(p.result)
    if cfg.stage in GROUP_BUILDERS:
      _fill_empty_group_shards(cfg, names)
  summary = _summary(cfg, names, skipped, total, t0)
  summary["this_run"] = counters
  samples = cfg.backend_kwargs.get("invalid_answers_dir")
  if samples and os.path.isdir(samples) and os.listdir(samples):
    summary["invalid_answer_samples"] = samples
  if summary["complete"]:
    ctx_step = {"stage": cfg.stage, "backend": cfg.backend,
                "prompt_version": stages.PROMPT_VERSIONS.get(cfg.stage, ""),
                "model": cfg.backend_kwargs.get("model", "rules"),
                "endpoint": cfg.backend_kwargs.get("endpoint"), "with_facts": cfg.with_facts,
                "pair": cfg.pair, "input": cfg.input_dir}
    shards.finalize(cfg.out_dir, names, source=manifest.get("source", ""),
                    provenance=manifest.get("provenance", [])
                    + [records.provenance_entry(cfg.stage, ctx_step)])
  with open(os.path.join(cfg.out_dir, shards.SUMMARY), "w") as f:
    json.dump(summary, f, indent=1, sort_keys=True)
  return summary


def beam_counters(result) -> dict:
  """This run's counters in NAMESPACE, summed over every worker by the runner (`usage_requests`,
  `usage_prompt_tokens`, `records_in`, `kept`, `failed:<reason>`, ...); {} if the runner
  reports none."""
  try:
    found = result.metrics().query(
        beam.metrics.MetricsFilter().with_namespace(NAMESPACE))["counters"]
  except Exception as e:  # pylint: disable=broad-except  (some runners have no metrics API)
    log.info("beam metrics unavailable (%s)", e)
    return {}
  totals = {}
  for c in found:
    totals[c.key.metric.name] = totals.get(c.key.metric.name, 0) + int(c.committed or 0)
  return dict(sorted(totals.items()))


def _fill_empty_group_shards(cfg: JobConfig, names: list) -> None:
  """A group stage's shard that received no element is empty; write it so the set is complete.
  Only when no shard is left unfinished by failures (a marker with done False is never written,
  so an unfinished shard is indistinguishable from an empty one: rerun handles both alike)."""
  for n in names:
    if not shards.is_done(cfg.out_dir, n) and not shards.is_pending(cfg.out_dir, n):
      shards.write_shard(cfg.out_dir, n, [], {"shard": n, "records_in": 0, "kept": 0,
                                              "records_out": 0, "rejected": {}, "failed": {},
                                              "usage": Usage().to_json(), "seconds": 0})
