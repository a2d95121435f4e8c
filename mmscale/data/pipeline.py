"""The grain loader of one host: mixture -> decode/tokenise -> pack -> batch.

```
arms (ArrayRecord) --shuffle(seed), repeat, slice [p::P]--> mix(weights)      grain MapDataset
  --map(record -> example, fit to a row)--> to_iter_dataset (threads) [--> mp_prefetch(workers)]
  --SkipCountingIterDataset--> PackIterDataset --batch(B = global_batch // process_count)-->
```
Batches are dicts of numpy arrays in the `BatchLayout` (mmscale/data/batch.py). Every stage keeps
its position in the iterator state (JSON-safe), so `it.set_state(state)` on a fresh iterator
continues exactly where `state = it.get_state()` was taken; skip counters and packing statistics
resume with it. `data_config` is a validated `config.data` (every field in mmscale/config.py).
"""

import logging

import grain
import numpy as np

from mmscale.data import mixture as mixture_lib
from mmscale.data import packing
from mmscale.data import transforms
from mmscale.data.batch import BatchLayout
from mmscale.errors import ConfigError


def order_seed(data_config, seed: int) -> int:
  """The data-order seed: data.shuffle_seed folded with the run seed (uint32)."""
  return int(np.random.SeedSequence([int(data_config.shuffle_seed) % 2**32, int(seed) % 2**32])
             .generate_state(1)[0])


def _ensure_absl_flags_parsed():
  """grain's worker processes read absl flags; outside an absl app (tests, notebooks) nothing
  parsed them, so accept their defaults rather than fail with UnparsedFlagAccessError."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class RecordToExample(grain.transforms.Map):
  """{"arm", "data": bytes} -> an example that fits a row, or {"skip": reason, "arm"}."""

  def __init__(self, builder: transforms.ExampleBuilder, seq_len: int, max_images: int):
    self.builder = builder
    self.seq_len = seq_len
    self.max_images = max_images

  def map(self, element: dict) -> dict:
    arm = element["arm"]
    if "skip" in element:  # a corrupt record, or a component's example that formed no record
      return element
    try:
      rec = transforms.decode_record_or_skip(element["data"])
      ex = self.builder(rec, arm=arm)
    except transforms.SkipExample as e:
      return {"skip": e.reason, "arm": arm}
    ex, note = packing.fit_example(ex, self.seq_len, self.max_images,
                                   self.builder.num_image_tokens)
    if ex is None:
      return {"skip": note, "arm": arm}
    ex["truncated"] = note == "truncated"
    return ex


def example_dataset(data_config, layout: BatchLayout, tokenizer, *, process_index: int = 0,
                    process_count: int = 1, seed: int = 0, read_threads: int | None = None,
                    num_workers: int | None = None) -> grain.IterDataset:
  """This process's infinite stream of examples (transforms docstring), skips counted.

  `process_index` / `process_count` select a slice of every arm; they may name a data shard
  rather than a process (make_train_iterator). `read_threads` / `num_workers` override the
  config's, so several shards of one process share its threads and workers."""
  if not 0 <= process_index < process_count:
    raise ConfigError("process_index", f"{process_index} not in [0, {process_count})")
  mixed = mixture_lib.mix_arms(
      str(data_config.world_dir), data_config.mixture, seed=order_seed(data_config, seed),
      process_index=process_index, process_count=process_count, sources=data_config.sources)
  builder = transforms.builder_for(data_config, layout, tokenizer)
  threads = read_threads or int(data_config.read_threads)
  ds = mixed.map(RecordToExample(builder, layout.seq_len, layout.max_images)).to_iter_dataset(
      grain.ReadOptions(num_threads=threads, prefetch_buffer_size=max(4 * threads, 8)))
  workers = int(data_config.num_workers if num_workers is None else num_workers)
  if workers > 0:
    _ensure_absl_flags_parsed()
    ds = ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
  return transforms.SkipCountingIterDataset(
      ds, max_skip_fraction=float(data_config.max_skip_fraction),
      min_records=int(data_config.skip_check_min_records))


def make_train_iterator(data_config, layout: BatchLayout, tokenizer, *, process_index: int,
                        process_count: int, seed: int, num_shards: int | None = None,
                        shards: list[int] | None = None) -> grain.DatasetIterator:
  """Infinite iterator of this process's batches (module docstring), B = global // processes.

  By default process p reads slice p of `process_count` (one shard per process). With
  `num_shards` (and `shards`, the ones this process loads; default its equal share), the global
  batch is cut into `num_shards` blocks of rows, block i always read from slice i of every arm and
  packed on its own, and the process's batch is its blocks concatenated in order. The global
  batch is then the same whatever the process count (the trainer uses one shard per data-parallel
  mesh slot, `mmscale.parallel.mesh.process_batch_shards`), at the cost of one small pipeline per
  shard; their packing groups hold at least 16 rows so packing stays tight.
  `pack=False` puts one example per row (padding only), for ablations and debugging.
  """
  gb = int(data_config.batch_size)
  if num_shards is None:
    if gb % process_count:
      raise ConfigError("data.batch_size", f"{gb} is not divisible by {process_count} processes")
    it = _shard_iterator(data_config, layout, tokenizer, shard=process_index,
                         num_shards=process_count, rows=gb // process_count, seed=seed)
  else:
    shards = list(range(process_index * num_shards // process_count,
                        (process_index + 1) * num_shards // process_count)) \
        if shards is None else list(shards)
    if gb % num_shards or not shards:
      raise ConfigError("data.batch_size", f"{gb} is not divisible by {num_shards} batch "
                        "shards (data x fsdp)" if gb % num_shards else "no shards to load")
    rows = gb // num_shards
    threads = max(1, int(data_config.read_threads) // len(shards))
    workers = -(-int(data_config.num_workers) // len(shards))
    its = [_shard_iterator(data_config, layout, tokenizer, shard=shard,
                           num_shards=num_shards, rows=rows, seed=seed,
                           min_pack_rows=16 if num_shards > 1 else 1, read_threads=threads,
                           num_workers=workers) for shard in shards]
    it = its[0] if len(its) == 1 else ConcatShardsIterator(its)
  every = int(data_config.log_every_batches)
  if every <= 0:
    return it
  return StatsLoggingIterator(it, every, mixture_lib.normalised_weights(data_config.mixture),
                              process_index)


def _shard_iterator(data_config, layout: BatchLayout, tokenizer, *, shard: int, num_shards: int,
                    rows: int, seed: int, min_pack_rows: int = 1, read_threads=None,
                    num_workers=None) -> grain.DatasetIterator:
  """Batches of `rows` rows packed from slice `shard` of `num_shards` of every arm.
  Packing groups hold `data.pack_rows` rows (0: max(rows, min_pack_rows))."""
  ds = example_dataset(data_config, layout, tokenizer, process_index=shard,
                       process_count=num_shards, seed=seed, read_threads=read_threads,
                       num_workers=num_workers)
  pack = bool(data_config.pack)
  pack_rows = int(data_config.pack_rows) or max(rows, min_pack_rows)
  ds = packing.PackIterDataset(ds, layout=layout, num_rows=pack_rows if pack else rows,
                               max_examples_per_row=None if pack else 1)
  return ds.batch(rows, drop_remainder=True).__iter__()


class ConcatShardsIterator(grain.DatasetIterator):
  """Concatenates the batches of several shard iterators along rows; state = theirs, in order."""

  def __next__(self) -> dict:
    batches = [next(it) for it in self._parents]
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}

  def get_state(self):
    return {"shards": [it.get_state() for it in self._parents]}

  def set_state(self, state):
    if len(state["shards"]) != len(self._parents):
      raise ConfigError("data", f"the checkpoint's data state has {len(state['shards'])} shards "
                        f"for this process, the run {len(self._parents)}: restore on the same mesh")
    for it, st in zip(self._parents, state["shards"]):
      it.set_state(st)


def stats_summary(stats: dict, weights: dict | None = None) -> str:
  """One log line: realised mixture (vs the configured weights), packing efficiency, skips."""
  arms = stats.get("arms", {})
  total = max(sum(arms.values()), 1)
  mix = ", ".join(f"{a} {n / total:.3f}" + (f" (target {weights[a]:.3f})" if weights and a in
                                             weights else "") for a, n in sorted(arms.items()))
  pk = stats.get("packing", {})
  reasons = {r: n for r, n in stats.get("skip_reasons", {}).items() if n}
  return (f"realised mixture: {mix}; packing efficiency {pk.get('efficiency', 0.0):.3f} "
          f"({pk.get('examples_per_row', 0.0):.2f} examples/row over {pk.get('rows', 0)} rows); "
          f"skipped {stats.get('skipped', 0)} of {stats.get('records', 0)} records {reasons}")


class StatsLoggingIterator(grain.DatasetIterator):
  """Logs `stats_summary` every `every` batches; otherwise transparent.

  Its state *is* the parent's state, so checkpoints do not depend on whether logging is on.
  """

  def __init__(self, parent: grain.DatasetIterator, every: int, weights: dict,
               process_index: int = 0):
    super().__init__(parent)
    self._every, self._weights, self._process = every, weights, process_index
    self._batches = 0

  def __next__(self) -> dict:
    batch = next(self._parent)
    self._batches += 1
    if self._batches % self._every == 0:
      logging.info("data[process %d]: %s", self._process,
                   stats_summary(pipeline_stats(self._parent), self._weights))
    return batch

  def get_state(self):
    return self._parent.get_state()

  def set_state(self, state):
    self._parent.set_state(state)


def pipeline_stats(iterator: grain.DatasetIterator) -> dict:
  """Skip counters and packing statistics of an iterator from `make_train_iterator`.

  Returns {"records", "examples", "truncated", "skipped", "skip_reasons": {reason: n},
  "skip_fraction", "arms": {arm: examples}, "packing": {"rows", "examples", "tokens",
  "images", "efficiency", "examples_per_row"}}. Found by walking the iterator's parents, so it
  works whatever grain stages (batch, prefetch) sit on top.
  """
  out, todo = {}, [iterator]
  while todo:
    it = todo.pop()
    if isinstance(it, transforms.SkipCountingIterator):
      out.update(it.stats())
    elif isinstance(it, packing.PackIterator):
      out["packing"] = it.stats()
    todo.extend(getattr(it, "_parents", ()))
  return out
