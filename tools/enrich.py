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
import argparse
import json
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mmscale.knowledge import jobs, stages  # noqa: E402

STAGES = sorted(list(stages.MAP_STAGES) + list(stages.GROUP_STAGES))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--stage", required=True, choices=STAGES)
  p.add_argument("--input", required=True, help="input record directory")
  p.add_argument("--out", required=True, help="output record directory")
  p.add_argument("--backend", default="offline", choices=["offline", "openai"])
  p.add_argument("--endpoint", default="http://localhost:8000/v1",
                 help="OpenAI-compatible API base URL (openai backend)")
  p.add_argument("--model", default="", help="model name sent to the server (openai backend)")
  p.add_argument("--concurrency", type=int, default=16, help="requests in flight per worker")
  p.add_argument("--timeout_s", type=float, default=120.0, help="per-request timeout")
  p.add_argument("--max_retries", type=int, default=6)
  p.add_argument("--max_reasks", type=int, default=2, help="re-asks on invalid JSON answers")
  p.add_argument("--api_key_env", default="OPENAI_API_KEY",
                 help="name of the environment variable holding the API key (never logged)")
  p.add_argument("--response_format", default="json_schema",
                 choices=["json_schema", "json_object", "none"])
  p.add_argument("--cache_dir", default=None, help="LLM response cache (default OUT/_llm_cache)")
  p.add_argument("--vocab", default=None,
                 help="world.json / world dir / vocabulary JSON (default: world.json above input)")
  p.add_argument("--kb", default=None, help="knowledge base JSONL (default: kb.jsonl by world)")
  p.add_argument("--no_facts", action="store_true", help="enrich: do not inject KB facts")
  p.add_argument("--band", default="0.6,0.9", help="pair: similarity band lower,upper")
  p.add_argument("--max_pairs", type=int, default=1, help="pair: max pairs per image")
  p.add_argument("--max_block", type=int, default=512, help="pair: max items per similarity block")
  p.add_argument("--num_shards", type=int, default=0, help="output shards (0: auto)")
  p.add_argument("--batch_size", type=int, default=64, help="records per backend batch")
  return p.parse_known_args(argv)


def config_from_args(args) -> jobs.JobConfig:
  backend_kwargs = {}
  if args.backend == "openai":
    backend_kwargs = {"endpoint": args.endpoint, "model": args.model,
                      "concurrency": args.concurrency, "timeout_s": args.timeout_s,
                      "max_retries": args.max_retries, "max_reasks": args.max_reasks,
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


def main(argv=None) -> int:
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
  args, beam_args = parse_args(argv)
  summary = jobs.run(config_from_args(args), beam_args)
  print(json.dumps(summary, indent=1, sort_keys=True))
  return 0 if summary["complete"] else 1


if __name__ == "__main__":
  sys.exit(main())
