"""Ingests raw image-text data into an mmscale record folder with an Apache Beam job.

  python tools/ingest.py --source=webdataset --input='shards/*.tar' --out=data/cc3m --num_shards=64
  python tools/ingest.py --source=llava --input=llava_v1_5_mix665k.json --image_root=images \
      --out=data/llava --num_shards=32 --direct_num_workers=2
  python tools/ingest.py --source=tfds --input=coco_captions --split=train --data_dir=~/tfds \
      --text_key=captions/text --out=data/coco
  # any Beam runner: --runner=DataflowRunner --project=... --region=... --temp_location=gs://...

Sources: webdataset, llava, interleaved, tfds, jsonl (docs/data_format.md, "Ingestion"). Flags
this tool does not know are Beam pipeline options and pass through unchanged; without them the
job runs on the DirectRunner with 2 local worker processes. Rerunning the same command resumes
(finished shards are kept). Exit status 1 with a message when more than --max_skip_fraction of
the inputs were bad; the reasons are in OUT/skip_report.json.
"""
import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from mmscale import cli_flags, extras  # noqa: E402

extras.require_or_exit("apache_beam", "tools/ingest.py")
from mmscale.data import ingest  # noqa: E402
from mmscale.data.ingest import beam_job, common  # noqa: E402
from mmscale.errors import DataError  # noqa: E402


def define_flags(fv: flags.FlagValues) -> None:
  """Flags on `fv`, a holder of this tool's own (mmscale/cli_flags.py)."""
  d = common.IngestOptions()
  flags.DEFINE_enum("source", None, sorted(ingest.SOURCES), None, flag_values=fv)
  flags.DEFINE_string("input", None, "paths or globs, comma separated (tfds: the dataset name)",
                      flag_values=fv)
  flags.DEFINE_string("out", None, "output record folder", flag_values=fv)
  flags.DEFINE_integer("num_shards", 8, None, flag_values=fv)
  flags.DEFINE_float("max_skip_fraction", 0.01, None, flag_values=fv)
  flags.DEFINE_string("image_root", d.image_root, "folder of relative image paths (default: the "
                      "input file's folder)", flag_values=fv)
  flags.DEFINE_string("image_key", d.image_key, "image key (default per source)", flag_values=fv)
  flags.DEFINE_string("text_key", d.text_key, "text key (default per source)", flag_values=fv)
  flags.DEFINE_string("split", d.split, "tfds split", flag_values=fv)
  flags.DEFINE_string("data_dir", d.data_dir, "tfds data_dir", flag_values=fv)
  flags.DEFINE_integer("max_image_pixels", d.max_image_pixels, None, flag_values=fv)
  flags.mark_flags_as_required(["source", "input", "out"], flag_values=fv)


def parse_args(argv: list[str]) -> tuple[flags.FlagValues, list[str]]:
  """argv = [program, *flags] -> (this tool's flags, the other arguments: Beam's options)."""
  return beam_job.parse_tool_args(define_flags, argv, __doc__)


def main(argv: list[str]) -> int:
  """argv = [program, *flags, *beam options] (module docstring)."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  args, beam_args = parse_args(argv)
  options = common.IngestOptions(
      image_root=args.image_root, image_key=args.image_key, text_key=args.text_key,
      split=args.split, data_dir=os.path.expanduser(args.data_dir),
      max_image_pixels=args.max_image_pixels)
  try:
    manifest = beam_job.run_ingest(args.source, args.input, args.out,
                                   num_shards=args.num_shards, options=options,
                                   beam_args=beam_args,
                                   max_skip_fraction=args.max_skip_fraction)
  except DataError as e:
    print(f"ingest failed: {e}", file=sys.stderr)
    return 1
  print(f"wrote {manifest['num_records']} records {manifest['counts']} in "
        f"{len(manifest['shards'])} shards to {args.out}")
  return 0


if __name__ == "__main__":
  cli_flags.run(main)
