"""Runs one stage of the knowledge engine as an Apache Beam pipeline.

  python tools/enrich.py --stage=describe --input=data/world/arms/caption --out=/tmp/desc
  python tools/enrich.py --stage=enrich --input=/tmp/desc --out=/tmp/enriched --backend=openai \\
      --endpoint=http://localhost:8000/v1 --model=Qwen/Qwen2.5-7B-Instruct --concurrency=64

Stages: describe | enrich | pair | compare | filter | vqa2caption | caption2vqa
(docs/knowledge_engine.md). Unknown arguments go to Beam (`--runner=DataflowRunner ...`); the
default is the DirectRunner with one worker process per CPU. Reruns resume: finished output
shards are skipped and LLM answers come from OUT/_llm_cache. Prints the summary JSON; exits 1
when shards are left unfinished (rerun to resume).
"""
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags, extras  # noqa: E402

extras.require_or_exit("apache_beam", "tools/enrich.py")
from mmscale.data.ingest import beam_job  # noqa: E402
from mmscale.knowledge import jobs, stages  # noqa: E402

STAGES = sorted(list(stages.MAP_STAGES) + list(stages.GROUP_STAGES))


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  flags.DEFINE_enum("stage", None, STAGES, None, flag_values=fv)
  flags.DEFINE_string("input", None, "input record directory", flag_values=fv)
  flags.DEFINE_string("out", None, "output record directory", flag_values=fv)
  flags.DEFINE_enum("backend", "offline", ["offline", "openai"], None, flag_values=fv)
  flags.DEFINE_string("endpoint", "http://localhost:8000/v1",
                      "OpenAI-compatible API base URL (openai backend)", flag_values=fv)
  flags.DEFINE_string("model", "", "model name sent to the server (openai backend)",
                      flag_values=fv)
  flags.DEFINE_integer("concurrency", 16, "requests in flight per worker", flag_values=fv)
  flags.DEFINE_float("timeout_s", 120.0, "per-request timeout", flag_values=fv)
  flags.DEFINE_integer("max_retries", 6, None, flag_values=fv)
  flags.DEFINE_integer("max_reasks", 2, "re-asks on invalid JSON answers", flag_values=fv)
  flags.DEFINE_integer("max_tokens", 1024, "longest answer the server may generate, in tokens "
                       "(`max_tokens` of each request)", lower_bound=1, flag_values=fv)
  flags.DEFINE_string("api_key_env", "OPENAI_API_KEY", "name of the environment variable holding "
                      "the API key (never logged)", flag_values=fv)
  flags.DEFINE_enum("response_format", "json_schema", ["json_schema", "json_object", "none"],
                    None, flag_values=fv)
  flags.DEFINE_string("cache_dir", None, "LLM response cache (default OUT/_llm_cache)",
                      flag_values=fv)
  flags.DEFINE_string("vocab", None, "world.json / world dir / vocabulary JSON (default: "
                      "world.json above input)", flag_values=fv)
  flags.DEFINE_string("kb", None, "knowledge base JSONL (default: kb.jsonl by world)",
                      flag_values=fv)
  flags.DEFINE_boolean("no_facts", False, "enrich: do not inject KB facts", flag_values=fv)
  flags.DEFINE_string("band", "0.6,0.9", "pair: similarity band lower,upper", flag_values=fv)
  flags.DEFINE_integer("max_pairs", 1, "pair: max pairs per image", flag_values=fv)
  flags.DEFINE_integer("max_block", 512, "pair: max items per similarity block", flag_values=fv)
  flags.DEFINE_integer("num_shards", 0, "output shards (0: auto)", flag_values=fv)
  flags.DEFINE_integer("batch_size", 64, "records per backend batch", flag_values=fv)
  flags.mark_flags_as_required(["stage", "input", "out"], flag_values=fv)


def parse_args(argv: list[str]) -> tuple[flags.FlagValues, list[str]]:
  """argv = [program, *flags] -> (this tool's flags, the other arguments: Beam's options)."""
  return beam_job.parse_tool_args(define_flags, argv, __doc__)


def config_from_args(args) -> jobs.JobConfig:
  backend_kwargs = {}
  if args.backend == "openai":
    backend_kwargs = {"endpoint": args.endpoint, "model": args.model,
                      "concurrency": args.concurrency, "timeout_s": args.timeout_s,
                      "max_retries": args.max_retries, "max_reasks": args.max_reasks,
                      "max_tokens": args.max_tokens,
                      "api_key_env": args.api_key_env, "response_format": args.response_format}
    if args.cache_dir:
      backend_kwargs["cache_dir"] = args.cache_dir
  lower, upper = (float(x) for x in args.band.split(","))
  return jobs.JobConfig(
      stage=args.stage, input_dir=args.input, out_dir=args.out, backend=args.backend,
      backend_kwargs=backend_kwargs, vocab=args.vocab, kb=args.kb, with_facts=not args.no_facts,
      pair={"lower": lower, "upper": upper, "max_pairs": args.max_pairs,
            "max_block": args.max_block},
      num_shards=args.num_shards, batch_size=args.batch_size)


def main(argv: list[str]) -> int:
  """argv = [program, *flags, *beam options] (module docstring)."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
  args, beam_args = parse_args(argv)
  summary = jobs.run(config_from_args(args), beam_args)
  print(json.dumps(summary, indent=1, sort_keys=True))
  return 0 if summary["complete"] else 1


if __name__ == "__main__":
  cli_flags.run(main)
