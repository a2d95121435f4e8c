"""Knowledge-engine throughput: offline records/s per stage, and the HTTP backend's requests/s at
concurrency 1 vs 32 against a loopback chat-completions server with a fixed answer delay (the
ratio shows that bounded concurrency works; with a 50 ms delay the ideal is 20 vs 640 req/s).

  python bench/enrich.py --world=/tmp/kworld [--requests=128 --delay_ms=50]

Needs a world (tools/build_world.py). Prints one JSON object.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags  # noqa: E402
from mmscale.data import records  # noqa: E402
from mmscale.knowledge import schema as js  # noqa: E402
from mmscale.knowledge import stages, pairing  # noqa: E402
from mmscale.knowledge.jobs import JobConfig  # noqa: E402
from mmscale.knowledge.llm import make_backend  # noqa: E402
from mmscale.knowledge.llm.base import task_messages  # noqa: E402
from mmscale.knowledge.llm.loopback import LoopbackServer  # noqa: E402


def offline_rates(world: str, limit: int) -> dict:
  out = {}
  for stage, arm in (("describe", "caption"), ("enrich", "knowledge"),
                     ("caption2vqa", "enriched")):
    recs = list(records.iter_records(os.path.join(world, "arms", arm)))[:limit]
    ctx = JobConfig(stage=stage, input_dir="", out_dir="", vocab=world,
                    kb=os.path.join(world, "kb.jsonl")).context()
    t0 = time.perf_counter()
    for i in range(0, len(recs), 64):
      stages.run_map_batch(stage, recs[i:i + 64], ctx)
    out[stage] = round(len(recs) / (time.perf_counter() - t0), 1)
  items = [(r["id"], r["descriptor"])
           for r in records.iter_records(os.path.join(world, "arms", "enriched"))][:limit]
  t0 = time.perf_counter()
  pairing.find_pairs(items, pairing.PairConfig())
  out["pair"] = round(len(items) / (time.perf_counter() - t0), 1)
  return out


def http_rate(n: int, concurrency: int, delay_s: float) -> float:
  schema = js.obj({"echo": {"type": "string"}})
  reqs = [(task_messages("echo", "Echo.", {"name": f"r{i}"}, "v1"), schema) for i in range(n)]
  with LoopbackServer(lambda task, p: {"echo": p["name"]}, delay_s=delay_s) as s:
    b = make_backend("openai", endpoint=s.endpoint, model="m", concurrency=concurrency,
                     cache_dir=None)
    t0 = time.perf_counter()
    out = b.complete_json_batch(reqs)
    rate = n / (time.perf_counter() - t0)
  assert all(isinstance(o, dict) for o in out)
  return round(rate, 1)


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this benchmark's own (mmscale/cli_flags.py)."""
  flags.DEFINE_string("world", None, None, flag_values=fv)
  flags.DEFINE_integer("limit", 2000, "records per offline stage", flag_values=fv)
  flags.DEFINE_integer("requests", 128, None, flag_values=fv)
  flags.DEFINE_float("delay_ms", 50.0, None, flag_values=fv)
  flags.mark_flags_as_required(["world"], flag_values=fv)


def main(argv: list[str]) -> int:
  """argv = [program, *flags] (module docstring)."""
  args, _ = cli_flags.parse(define_flags, argv, doc=__doc__)
  res = {"offline_records_per_s": offline_rates(args.world, args.limit)}
  c1 = http_rate(max(8, args.requests // 8), 1, args.delay_ms / 1000)
  c32 = http_rate(args.requests, 32, args.delay_ms / 1000)
  res["http"] = {"delay_ms": args.delay_ms, "req_per_s_concurrency_1": c1,
                 "req_per_s_concurrency_32": c32, "speedup": round(c32 / c1, 1)}
  print(json.dumps(res, indent=1))
  return 0


if __name__ == "__main__":
  cli_flags.run(main)
